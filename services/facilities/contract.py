"""The facilities service's wire contract: the plants investors register, what the
registry answers about them, the events it publishes to `facilities.events`, and what it
consumes (every venture event, every licence event). Wire models only; the rules that
decide a plant's status live in `domain.py`."""

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.licensing import contract as licensing
from services.ventures import contract as ventures
from shared.contract import EventPayload, StatusChange, Strict, Subscription, events_of
from shared.input_types import PartyName, number_or_decimal_text
from shared.vocabulary import Province

SERVICE = "facilities"

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


# Built at run time; to the type checker it is the Decimal it validates to.
if TYPE_CHECKING:
    CapacityValue = Decimal
else:
    CapacityValue = number_or_decimal_text(gt=0)


FACILITY_EXAMPLE: dict[str, Any] = {
    "id": "fac_6651a0d4b7e2f93c1d2e3f40",
    "venture_id": ventures.VENTURE_EXAMPLE["id"],
    "owner": "Indus Pharma Holdings",
    "name": "Rashakai Formulation Plant 1",
    "kind": "formulation_plant",
    "address": "Plot 14, Rashakai Special Economic Zone",
    "city": "Nowshera",
    "province": "khyber_pakhtunkhwa",
    "sez": "Rashakai SEZ",
    "capacity": {"value": "250000000", "unit": "tablets/year"},
    "status": "planned",
    "licenses_in_force": [],
    "version": 1,
    "created_at": "2025-05-20T10:00:00.000Z",
    "updated_at": "2025-05-20T10:00:00.000Z",
}


class Capacity(Strict):
    value: CapacityValue = Field(description="a decimal, e.g. '120000000'")
    unit: Unit = Field(description="e.g. 'tablets/year', 'kg API/year', 'beds'")


class RegisterFacility(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    field: FACILITY_EXAMPLE[field]
                    for field in ("name", "kind", "address", "city", "province", "sez", "capacity")
                }
            ]
        }
    )

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

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [FACILITY_EXAMPLE]})

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


# --- events on facilities.events: subject = facility id, sequence = its version -------

FACILITY_REGISTERED = "facility.registered"
FACILITY_STATUS_CHANGED = "facility.status_changed"


class FacilityStatusChange(StatusChange):
    from_: FacilityStatus | None = Field(alias="from")
    to: FacilityStatus


class FacilityEvent(EventPayload):
    """`data` of every `facility.*` event: the facility after the change, and the change."""

    service = SERVICE
    aggregate = "facility"

    facility: Facility
    change: FacilityStatusChange


class FacilityRegistered(FacilityEvent):
    """The venture's owner (or ops) registered a plant of a venture that was not
    dissolved: the plant is `planned`, at version 1, with no licence in force yet."""

    routing_key = FACILITY_REGISTERED
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "facility": FACILITY_EXAMPLE,
                    "change": {
                        "from": None,
                        "to": "planned",
                        "reason": "registered",
                        "actor": ventures.INVESTOR,
                    },
                }
            ]
        }
    )


class FacilityStatusChanged(FacilityEvent):
    """The plant's status followed its manufacturing licences or its venture, never a
    request: `operational` once a DML (`dml_*`) is in force, `halted` when none is any
    more, `decommissioned` (final) when its venture was dissolved. `change.reason` names
    the licence or venture event that caused it, and `change.actor` is who decided
    that."""

    routing_key = FACILITY_STATUS_CHANGED
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "facility": {
                        **FACILITY_EXAMPLE,
                        "status": "operational",
                        "licenses_in_force": ["lic_6652b1e5c8f3a04d2e3f4051"],
                        "version": 2,
                        "updated_at": "2026-12-21T08:15:00.000Z",
                    },
                    "change": {
                        "from": "planned",
                        "to": "operational",
                        "reason": "license.granted lic_6652b1e5c8f3a04d2e3f4051 "
                        "(dml_formulation): inspection satisfactory",
                        "actor": ventures.REGULATOR,
                    },
                }
            ]
        }
    )


EVENTS: dict[str, type[BaseModel]] = events_of(FacilityRegistered, FacilityStatusChanged)

# --- what it consumes ---------------------------------------------------------------

# A plant follows its venture's fate (the plants of a dissolved venture are decommissioned).
FOLLOWS_VENTURES = Subscription(
    "facilities.follow_venture", ventures.SERVICE, "venture.#", lambda: ventures.EVENTS
)
# A plant operates while one of its manufacturing licences is in force.
FOLLOWS_LICENCES = Subscription(
    "facilities.follow_licence", "licensing", "license.#", lambda: licensing.EVENTS
)
SUBSCRIPTIONS: list[Subscription] = [FOLLOWS_VENTURES, FOLLOWS_LICENCES]
