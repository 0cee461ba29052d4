"""Events the facilities service publishes to `facilities.events` (routing key = type),
and the parts of the ventures' and licensing's events it consumes."""

from typing import Any

from pydantic import BaseModel, ConfigDict

from services.facilities.domain import Facility
from shared.envelope import CloudEvent, new_event

SERVICE = "facilities"
FACILITY_REGISTERED = "facility.registered"
FACILITY_STATUS_CHANGED = "facility.status_changed"


def facility_event(routing_key: str, facility: Facility, change: dict[str, Any]) -> CloudEvent:
    """`data` carries the facility after the change, and the change itself."""
    return new_event(
        SERVICE,
        routing_key,
        subject=facility.id,
        sequence=facility.version,
        data={"facility": facility.model_dump(mode="json"), "change": change},
    )


class Consumed(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VentureSnapshot(Consumed):
    id: str
    owner: str
    status: str
    name: str
    sector: str
    province: str


class VentureChanged(Consumed):
    """`data` of every `venture.*` event."""

    venture: VentureSnapshot
    change: dict[str, Any]


class LicenceSnapshot(Consumed):
    id: str
    facility_id: str
    type: str
    status: str


class LicenceChanged(Consumed):
    """`data` of every `license.*` event."""

    license: LicenceSnapshot
    change: dict[str, Any]
