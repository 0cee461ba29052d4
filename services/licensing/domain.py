"""DRAP licences for the plants of joint ventures: who may apply, and the lifecycle of a
licence as an explicit state machine (Drugs (Licensing, Registering and Advertising)
Rules 1976). Pure rules over pydantic models; no I/O."""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from shared.codec import rfc3339
from shared.errors import Conflict, InvalidInput, NotFound
from shared.input_types import ISO_TEXT_ONLY, date_bounds

LicenceType = Literal[
    "dml_formulation",
    "dml_basic",
    "dml_semi_basic",
    "dml_repacking",
    "dml_experimental",
    "product_registration",
    "gmp_certificate",
]
LicenceStatus = Literal[
    "submitted",
    "under_review",
    "deferred",
    "inspection_scheduled",
    "granted",
    "rejected",
    "suspended",
    "revoked",
    "expired",
]
# What a transition request may ask for: a status, or `renewed` (granted → granted).
TransitionTarget = Literal[LicenceStatus, "renewed"]

VALIDITY_YEARS = 5
# How far ahead a decision may reach: an inspection is scheduled within two years, a
# licence is granted or renewed for at most ten (DRAP grants five); a filter on expiry
# dates beyond the furthest valid_until could select nothing more.
INSPECTION_YEARS_AHEAD = 2
VALID_UNTIL_YEARS_AHEAD = 10
LOCKOUT_AFTER_REJECTION = timedelta(days=90)
# Who changes a licence when nobody does: the expiry sweep.
SYSTEM_ACTOR = {"key_id": "system:expiry-sweep", "role": "system", "owner": "jvreg"}

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]
DecisionRef = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=100, pattern=r"^[A-Za-z0-9][\w/.\- ]*$"
    ),
]
# Stored and sent as "YYYY-MM-DD" (BSON has no date-only type).
IsoDate = Annotated[date, PlainSerializer(lambda day: day.isoformat(), return_type=str)]
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def to_bson_precision(moment: datetime) -> datetime:
    """UTC to the millisecond, as BSON stores it, so what is returned equals what is read."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def end_of_day(day: date) -> datetime:
    """A licence valid until a date is valid through that whole day (UTC)."""
    return datetime.combine(day, time(23, 59, 59, 999000), UTC)


class ApplyForLicence(Strict):
    facility_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    type: LicenceType
    product: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
        | None
    ) = Field(
        None,
        validate_default=True,
        description="the product to register, e.g. 'Amoxicillin 500 mg capsules'; "
        "required for product_registration and only for it",
    )

    @field_validator("product")
    @classmethod
    def product_only_for_product_registration(cls, product, info: ValidationInfo):
        licence_type = info.data.get("type")
        if licence_type == "product_registration" and product is None:
            raise ValueError("a product registration names its product")
        if licence_type is not None and licence_type != "product_registration" and product:
            raise ValueError(f"a {licence_type} licence is for the plant, not for a product")
        return product


class RequestTransition(Strict):
    """`{"to", "reason", ...}` plus the fields of that transition (see TRANSITIONS)."""

    to: TransitionTarget
    reason: Reason
    inspection_date: (
        Annotated[IsoDate, ISO_TEXT_ONLY, date_bounds(INSPECTION_YEARS_AHEAD)] | None
    ) = Field(
        None, description="when scheduling the inspection; from 1990-01-01, at most 2 years ahead"
    )
    valid_until: (
        Annotated[AwareDatetime, ISO_TEXT_ONLY, date_bounds(VALID_UNTIL_YEARS_AHEAD)] | None
    ) = Field(
        None,
        description="on grant (default 5 years) and renewal: a date (valid through that "
        "day, UTC) or an RFC 3339 time; at most 10 years ahead",
    )
    decision_ref: DecisionRef | None = Field(
        None, description="DRAP's reference of the decision, e.g. DRAP/LIC/2026/0412"
    )

    @field_validator("valid_until", mode="before")
    @classmethod
    def date_means_through_that_day(cls, value: Any) -> Any:
        if isinstance(value, str) and DATE_ONLY.match(value):
            return end_of_day(date.fromisoformat(value))
        return value

    @field_validator("valid_until")
    @classmethod
    def stored_precision(cls, value: datetime | None) -> datetime | None:
        return to_bson_precision(value) if value else None


class LicenceFilters(Strict):
    """Query parameters of the licence list."""

    owner: str | None = None
    status: LicenceStatus | None = None
    type: LicenceType | None = None
    facility_id: str | None = None
    venture_id: str | None = None
    expiring_before: Annotated[date, date_bounds(VALID_UNTIL_YEARS_AHEAD + 1)] | None = Field(
        None, description="valid_until before this date (combine with status=granted)"
    )


class Licence(BaseModel):
    """A licence as the registry holds and shows it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    facility_id: str
    venture_id: str
    owner: str = Field(description="the organisation that registered the venture")
    type: LicenceType
    product: str | None = None
    status: LicenceStatus
    valid_until: datetime | None = None
    decision_ref: str | None = Field(None, description="the reference of the latest decision")
    inspection_date: IsoDate | None = None
    version: int = Field(ge=1, description="+1 per transition; the events' sequence")
    created_at: datetime
    updated_at: datetime


class HistoryEntry(BaseModel):
    """One transition of a licence, as the history shows it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str
    license_id: str
    sequence: int
    from_: LicenceStatus | None = Field(alias="from")
    to: LicenceStatus
    event: str = Field(description="the event it emitted, e.g. license.reinstated")
    actor: dict[str, Any]
    role: str
    reason: str
    time: datetime
    fields: dict[str, Any]


class FacilityView(BaseModel):
    """What licensing knows of a facility, from `facilities.events`."""

    model_config = ConfigDict(extra="ignore")

    id: str
    venture_id: str
    owner: str
    kind: str
    status: str
    sequence: int = Field(ge=1, description="the last facility event applied")


@dataclass(frozen=True)
class Transition:
    """One edge of the lifecycle: from `source`, a request for `to` leaves the licence
    `status` and emits `license.<event>`, taking the fields named here."""

    source: str
    to: str
    event: str
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    automatic: bool = False

    @property
    def status(self) -> str:
        return "granted" if self.to == "renewed" else self.to


DECISION = frozenset({"decision_ref"})
TRANSITIONS: tuple[Transition, ...] = (
    Transition("submitted", "under_review", "under_review"),
    Transition("under_review", "deferred", "deferred"),
    Transition("deferred", "under_review", "under_review"),
    Transition(
        "under_review",
        "inspection_scheduled",
        "inspection_scheduled",
        required=frozenset({"inspection_date"}),
    ),
    Transition(
        "inspection_scheduled",
        "granted",
        "granted",
        required=DECISION,
        optional=frozenset({"valid_until"}),
    ),
    Transition("inspection_scheduled", "rejected", "rejected", required=DECISION),
    Transition("granted", "suspended", "suspended", required=DECISION),
    Transition("suspended", "granted", "reinstated", required=DECISION),
    Transition("granted", "revoked", "revoked", required=DECISION),
    Transition("suspended", "revoked", "revoked", required=DECISION),
    Transition("granted", "renewed", "renewed", required=DECISION | {"valid_until"}),
    Transition("granted", "expired", "expired", automatic=True),
)
TRANSITION_FIELDS = ("inspection_date", "valid_until", "decision_ref")


def allowed_requests(status: str) -> list[str]:
    """What a person may ask for next from `status` (expiry is never asked for)."""
    return sorted(t.to for t in TRANSITIONS if t.source == status and not t.automatic)


def find_transition(status: str, to: str) -> Transition:
    """The transition a person asks for, or 409 naming the allowed next states."""
    for transition in TRANSITIONS:
        if transition.source == status and transition.to == to and not transition.automatic:
            return transition
    allowed = allowed_requests(status)
    if to == "expired":
        why = "a licence expires by itself at its valid_until; it cannot be expired by request"
    elif not allowed:
        why = f"a {status} licence is final"
    else:
        why = f"a {status} licence cannot become {to}"
    raise Conflict(
        why + (f"; allowed: {', '.join(allowed)}" if allowed else ""),
        extra={"current": status, "allowed": allowed},
    )


def default_valid_until(now: datetime) -> datetime:
    """Five years on (28 February when the grant is on 29 February)."""
    try:
        return now.replace(year=now.year + VALIDITY_YEARS)
    except ValueError:
        return now.replace(year=now.year + VALIDITY_YEARS, day=28)


def transition_fields(
    licence: Licence, transition: Transition, request: RequestTransition, now: datetime
) -> dict[str, Any]:
    """The fields the transition records, checked: each required one present, none
    that the transition does not take, and a valid_until that makes sense."""
    given = {
        name: getattr(request, name)
        for name in TRANSITION_FIELDS
        if getattr(request, name) is not None
    }
    errors = [
        {"loc": ["body", name], "msg": f"required to move to {request.to}", "type": "missing"}
        for name in sorted(transition.required - given.keys())
    ] + [
        {
            "loc": ["body", name],
            "msg": f"not used when moving to {request.to}",
            "type": "extra_forbidden",
        }
        for name in sorted(given.keys() - transition.required - transition.optional)
    ]
    if not errors and "valid_until" in transition.required | transition.optional:
        valid_until = given.get("valid_until") or default_valid_until(now)
        if valid_until <= now:
            errors.append(_valid_until_error("must be in the future"))
        elif transition.to == "renewed" and valid_until <= licence.valid_until:
            errors.append(
                _valid_until_error(
                    f"a renewal must extend the licence beyond {rfc3339(licence.valid_until)}"
                )
            )
        given["valid_until"] = valid_until
    if errors:
        fields = ", ".join(error["loc"][-1] for error in errors)
        raise InvalidInput(f"{len(errors)} invalid field(s): {fields}", errors)
    return given


def _valid_until_error(msg: str) -> dict:
    return {"loc": ["body", "valid_until"], "msg": msg, "type": "value_error"}


def change_licence(
    licence: Licence,
    transition: Transition,
    fields: dict[str, Any],
    reason: str,
    actor: dict,
    now: datetime,
) -> tuple[Licence, dict]:
    """The licence after `transition`, and the change as events and history record it."""
    changed = licence.model_copy(
        update={
            **fields,
            "status": transition.status,
            "version": licence.version + 1,
            "updated_at": now,
        }
    )
    return changed, {
        "from": licence.status,
        "to": transition.status,
        "event": f"license.{transition.event}",
        "reason": reason,
        "actor": actor,
        "role": actor.get("role"),
        "fields": fields,
        "time": now,
    }


def decide(
    licence: Licence, request: RequestTransition, actor: dict, now: datetime
) -> tuple[Licence, dict]:
    """Apply a regulator's (or ops') request to the licence."""
    transition = find_transition(licence.status, request.to)
    fields = transition_fields(licence, transition, request, now)
    return change_licence(licence, transition, fields, request.reason, actor, now)


EXPIRY = next(t for t in TRANSITIONS if t.automatic)


def expire(licence: Licence, now: datetime) -> tuple[Licence, dict]:
    """A granted licence expires once its valid_until has passed, and only then."""
    if licence.status != EXPIRY.source or licence.valid_until >= now:
        raise ValueError(f"licence {licence.id} is not due to expire")
    reason = f"valid_until {rfc3339(licence.valid_until)} passed"
    return change_licence(licence, EXPIRY, {}, reason, SYSTEM_ACTOR, now)


def submission(licence: Licence, actor: dict) -> dict:
    """The first entry of every licence's history."""
    return {
        "from": None,
        "to": "submitted",
        "event": "license.submitted",
        "reason": "application submitted",
        "actor": actor,
        "role": actor.get("role"),
        "fields": {},
        "time": licence.created_at,
    }


def check_facility_accepts_applications(facility: FacilityView | None, facility_id: str) -> None:
    if facility is None:
        raise NotFound(
            f"no facility {facility_id}",
            errors=[
                {"loc": ["body", "facility_id"], "msg": "unknown facility", "type": "not_found"}
            ],
        )
    if facility.status == "decommissioned":
        raise Conflict(
            f"facility {facility_id} is decommissioned; it can be licensed no more",
            errors=[
                {
                    "loc": ["body", "facility_id"],
                    "msg": "facility decommissioned",
                    "type": "decommissioned",
                }
            ],
        )


def lockout_ends(rejected_at: datetime) -> datetime:
    return rejected_at + LOCKOUT_AFTER_REJECTION


def check_lockout(licence_type: str, last_rejected_at: datetime | None, now: datetime) -> None:
    """A rejected applicant waits 90 days before applying again for the same facility
    and licence type."""
    if last_rejected_at is None:
        return
    ends = lockout_ends(last_rejected_at)
    if now < ends:
        raise Conflict(
            f"a {licence_type} application for this facility was rejected on "
            f"{last_rejected_at.date().isoformat()}; a new one may be made from "
            f"{rfc3339(ends)} ({ends.date().isoformat()})",
            extra={"locked_until": rfc3339(ends)},
        )
