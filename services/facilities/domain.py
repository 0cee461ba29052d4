"""Facilities: the plants a joint venture builds, and how their status follows the
venture's fate and the plant's manufacturing licences. Pure rules; no I/O."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.facilities.contract import (
    Facility,
    FacilityEvent,
    FacilityRegistered,
    FacilityStatusChanged,
    RegisterFacility,
)
from shared.errors import Conflict, NotFound

# Licence types that permit manufacturing (Drug Manufacturing Licences).
DML_PREFIX = "dml_"
# The status of a licence that is in force.
IN_FORCE = "granted"

# What a change decided: the facility afterwards, and its event if it has one.
FacilityChange = tuple[Facility, FacilityEvent | None]


class VentureView(BaseModel):
    """What the facilities service knows of a venture, from `ventures.events`."""

    model_config = ConfigDict(extra="ignore")

    id: str
    owner: str
    status: str
    name: str
    sector: str
    province: str
    sequence: int = Field(ge=1, description="the last venture event applied")


def check_venture_accepts_facilities(venture: VentureView | None, venture_id: str) -> VentureView:
    if venture is None:
        raise NotFound(
            f"no venture {venture_id}",
            errors=[{"loc": ["path", "venture_id"], "msg": "unknown venture", "type": "not_found"}],
        )
    if venture.status == "dissolved":
        raise Conflict(
            f"venture {venture_id} is dissolved; it can register no more facilities",
            extra={"venture_status": "dissolved"},
        )
    return venture


def is_manufacturing_licence(licence_type: str) -> bool:
    return licence_type.startswith(DML_PREFIX)


def licences_in_force_after(in_force: list[str], licence_id: str, licence_status: str) -> list[str]:
    """The manufacturing licences in force once `licence_id` has `licence_status`."""
    others = [other for other in in_force if other != licence_id]
    return sorted([*others, licence_id]) if licence_status == IN_FORCE else others


def status_from_licences(current: str, in_force: list[str]) -> str:
    """A plant operates while at least one DML is in force; one that operated before
    and has none is halted; a plant never licensed stays planned. A decommissioned
    plant stays decommissioned whatever happens to its licences."""
    if current == "decommissioned":
        return current
    if in_force:
        return "operational"
    return "planned" if current == "planned" else "halted"


def register(
    command: RegisterFacility,
    venture: VentureView | None,
    venture_id: str,
    facility_id: str,
    actor: dict,
    now: datetime,
) -> FacilityChange:
    """A new plant of `venture` (as the projection has it now), planned."""
    venture = check_venture_accepts_facilities(venture, venture_id)
    facility = Facility(
        **command.model_dump(),
        id=facility_id,
        venture_id=venture_id,
        owner=venture.owner,
        status="planned",
        version=1,
        created_at=now,
        updated_at=now,
    )
    change = {"from": None, "to": "planned", "reason": "registered", "actor": actor}
    return facility, FacilityRegistered(facility=facility, change=change)


def change_status(
    facility: Facility, status: str, reason: str, actor: dict, now: datetime
) -> tuple[Facility, FacilityStatusChanged]:
    """The facility with its new status, and the event that tells of it."""
    changed = facility.model_copy(
        update={"status": status, "version": facility.version + 1, "updated_at": now}
    )
    change = {"from": facility.status, "to": status, "reason": reason, "actor": actor}
    return changed, FacilityStatusChanged(facility=changed, change=change)


def follow_licence(
    facility: Facility,
    licence_id: str,
    licence_status: str,
    reason: str,
    actor: dict,
    now: datetime,
) -> FacilityChange:
    """The facility after one of its manufacturing licences reached `licence_status`,
    and the status change that caused, if any."""
    in_force = licences_in_force_after(facility.licenses_in_force, licence_id, licence_status)
    followed = facility.model_copy(update={"licenses_in_force": in_force})
    status = status_from_licences(facility.status, in_force)
    if status == facility.status:
        return followed, None
    return change_status(followed, status, reason, actor, now)


def follow_venture(
    facility: Facility, venture_status: str, reason: str, actor: dict, now: datetime
) -> FacilityChange:
    """The facility after its venture reached `venture_status`: the facilities of a
    dissolved venture are decommissioned, for good."""
    if venture_status != "dissolved" or facility.status == "decommissioned":
        return facility, None
    return change_status(facility, "decommissioned", reason, actor, now)
