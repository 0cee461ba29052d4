"""Facilities: the plants a joint venture builds, and how their status follows the
venture's fate and the plant's manufacturing licences. Pure rules; no I/O."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.errors import Conflict, NotFound
from shared.input_types import PartyName, number_or_decimal_text
from shared.vocabulary import Province

FacilityKind = Literal[
    "api_plant",
    "formulation_plant",
    "device_plant",
    "vaccine_plant",
    "tcm_plant",
    "telemedicine_hub",
    "warehouse",
    "qc_lab",
]
FacilityStatus = Literal["planned", "operational", "halted", "decommissioned"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]
Unit = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]

# Licence types that permit manufacturing (Drug Manufacturing Licences).
DML_PREFIX = "dml_"
# The status of a licence that is in force.
IN_FORCE = "granted"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Capacity(Strict):
    value: number_or_decimal_text(gt=0) = Field(description="a decimal, e.g. '120000000'")
    unit: Unit = Field(description="e.g. 'tablets/year', 'kg API/year', 'beds'")


class RegisterFacility(Strict):
    name: PartyName
    kind: FacilityKind
    address: Line
    city: Name
    province: Province
    sez: Name | None = Field(None, description="special economic zone, e.g. Rashakai SEZ")
    capacity: Capacity | None = None


class FacilityFilters(Strict):
    """Query parameters of the facility list."""

    owner: str | None = None
    venture_id: str | None = None
    province: Province | None = None
    kind: FacilityKind | None = None
    status: FacilityStatus | None = None


class Facility(RegisterFacility):
    """A facility as the registry holds and shows it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    venture_id: str
    owner: str = Field(description="the organisation that registered the venture")
    status: FacilityStatus
    licenses_in_force: list[str] = Field(
        default_factory=list, description="ids of the manufacturing licences now granted"
    )
    version: int = Field(ge=1)
    created_at: datetime
    updated_at: datetime


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


def check_venture_accepts_facilities(venture: VentureView | None, venture_id: str) -> None:
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


def change_status(
    facility: Facility, status: str, reason: str, actor: dict, now: datetime
) -> tuple[Facility, dict]:
    """The facility with its new status, and the change as events describe it."""
    changed = facility.model_copy(
        update={"status": status, "version": facility.version + 1, "updated_at": now}
    )
    return changed, {"from": facility.status, "to": status, "reason": reason, "actor": actor}


def follow_licence(
    facility: Facility,
    licence_id: str,
    licence_status: str,
    reason: str,
    actor: dict,
    now: datetime,
) -> tuple[Facility, dict | None]:
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
) -> tuple[Facility, dict | None]:
    """The facility after its venture reached `venture_status`: the facilities of a
    dissolved venture are decommissioned, for good."""
    if venture_status != "dissolved" or facility.status == "decommissioned":
        return facility, None
    return change_status(facility, "decommissioned", reason, actor, now)
