"""What the regulators' pages show, as plain rules: the applications awaiting a step,
grouped by how long they have waited; the decisions of the live feed; and the decision
form, turned into the same request body the API takes and its refusal back onto the
form's fields."""

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import get_args

from services.licensing.contract import TransitionTarget
from shared.errors import RegistryError

# The statuses an application waits in for a regulator's next step, in lifecycle order.
AWAITING = ("submitted", "under_review", "deferred", "inspection_scheduled")
# How long an application has waited in its status, as the workbench groups them.
AGES = (
    (timedelta(days=7), "less than a week"),
    (timedelta(days=30), "1 to 4 weeks"),
    (timedelta.max, "more than 4 weeks"),
)
# The statuses a regulator's decision leaves a licence in, which the feed shows.
DECIDED = ("granted", "rejected", "deferred", "suspended", "revoked", "expired")
FEED_LENGTH = 15
# The decision form's fields: the API's (RequestTransition), in the form's order.
DECISION_FIELDS = (
    "to",
    "reason",
    "decision_ref",
    "inspection_date",
    "valid_until",
    "registration_number",
)
TARGETS = get_args(TransitionTarget)


def age_group(waiting_since: str, now: datetime) -> str:
    waited = now - datetime.fromisoformat(waiting_since)
    return next(name for bound, name in AGES if waited < bound)


def by_age(applications: list[dict], now: datetime) -> list[tuple[str, list[dict]]]:
    """Applications (oldest change first) in the AGES groups that have any, oldest
    group first: what has waited longest is seen first."""
    groups: dict[str, list[dict]] = {}
    for application in applications:
        groups.setdefault(age_group(application["updated_at"], now), []).append(application)
    return [(name, groups[name]) for _, name in reversed(AGES) if name in groups]


def decisions(licences: list[dict]) -> list[dict]:
    """The latest decisions among licences listed latest change first."""
    return [licence for licence in licences if licence["status"] in DECIDED][:FEED_LENGTH]


def decision_body(form: Mapping[str, str]) -> str:
    """The form as the API's request body: the fields filled in, and only those."""
    body = {name: form.get(name, "").strip() for name in DECISION_FIELDS}
    return json.dumps({name: value for name, value in body.items() if value})


def field_errors(error: RegistryError) -> dict[str, str]:
    """A refusal of the decision, placed next to the fields it names; a transition not
    allowed from the licence's status (409 with `allowed`) is about `to`."""
    placed: dict[str, str] = {}
    for item in error.errors:
        location = item.get("loc") or []
        field = str(location[0]) if location else ""
        if field in DECISION_FIELDS:
            placed.setdefault(field, item.get("msg", error.detail))
    if "allowed" in error.extra and "to" not in placed:
        placed["to"] = error.detail
    return placed
