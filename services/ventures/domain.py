"""Joint ventures: what a valid venture is, and how its status may change.
Pure rules over pydantic models; no I/O."""

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from services.ventures.contract import (
    ChangeVentureStatus,
    RegisterVenture,
    UpdateVenture,
    Venture,
    VentureEvent,
    VentureFields,
    VentureRegistered,
    VentureStatusChanged,
    VentureUpdated,
)
from shared.errors import Conflict, invalid_input
from shared.input_types import confusable_key

# What a command decided: the venture afterwards, and the event that tells of it.
VentureChange = tuple[Venture, VentureEvent]


def name_key(name: str) -> str:
    """Venture names are unique by what they look like: ignoring case, runs of spaces
    and look-alike characters (Cyrillic "А" for "A", full-width "Ａ")."""
    return confusable_key(name)


STATUS_TRANSITIONS: dict[str, set[str]] = {
    "registered": {"active", "dissolved"},
    "active": {"suspended", "dissolved"},
    "suspended": {"active", "dissolved"},
    "dissolved": set(),
}


def check_status_change(current: str, target: str) -> None:
    allowed = sorted(STATUS_TRANSITIONS[current])
    if target not in allowed:
        raise Conflict(
            f"a {current} venture cannot become {target}"
            + (f"; allowed: {', '.join(allowed)}" if allowed else "; dissolved is final"),
            extra={"current": current, "allowed": allowed},
        )


def check_editable(venture: "Venture") -> None:
    if venture.status == "dissolved":
        raise Conflict(
            f"venture {venture.id} is dissolved; it can no longer be changed",
            extra={"current": "dissolved", "allowed": []},
        )


def apply_update(
    venture: Venture, update: UpdateVenture
) -> tuple[VentureFields, dict[str, dict[str, Any]]]:
    """The venture's fields after a merge patch, validated as a whole (the equity and
    partner rules hold for the result), and what changed as {field: {from, to}}."""
    before = venture.model_dump(mode="json", include=set(VentureFields.model_fields))
    patch = update.model_dump(mode="json", include=update.model_fields_set)
    merged = VentureFields.model_validate({**before, **patch})
    after = merged.model_dump(mode="json")
    changes = {
        field: {"from": before.get(field), "to": after.get(field)}
        for field in patch
        if before.get(field) != after.get(field)
    }
    return merged, changes


def register(
    command: RegisterVenture, venture_id: str, actor: dict, now: datetime
) -> VentureChange:
    venture = Venture(
        **command.model_dump(),
        id=venture_id,
        status="registered",
        owner=actor["owner"],
        version=1,
        created_at=now,
        updated_at=now,
    )
    change = {"from": None, "to": "registered", "reason": "registered", "actor": actor}
    return venture, VentureRegistered(venture=venture, change=change)


def update(venture: Venture, command: UpdateVenture, actor: dict, now: datetime) -> VentureChange:
    """The venture after a merge patch, which must leave it valid as a whole."""
    check_editable(venture)
    try:
        fields, changes = apply_update(venture, command)
    except ValidationError as error:
        raise invalid_input(error) from None
    updated = Venture.model_validate(
        {
            **venture.model_dump(),
            **fields.model_dump(),
            "version": venture.version + 1,
            "updated_at": now,
        }
    )
    change = {"fields": changes, "reason": "updated", "actor": actor}
    return updated, VentureUpdated(venture=updated, change=change)


def change_status(
    venture: Venture, command: ChangeVentureStatus, actor: dict, now: datetime
) -> VentureChange:
    check_status_change(venture.status, command.to)
    changed = venture.model_copy(
        update={"status": command.to, "version": venture.version + 1, "updated_at": now}
    )
    change = {"from": venture.status, "to": command.to, "reason": command.reason, "actor": actor}
    return changed, VentureStatusChanged(venture=changed, change=change)
