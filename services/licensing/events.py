"""Events the licensing service publishes to `licensing.events` (routing key = type:
`license.<new status>`, `license.reinstated`, `license.renewed`), and the part of the
facilities' events it consumes."""

from typing import Any

from pydantic import BaseModel, ConfigDict

from services.licensing.domain import Licence
from shared.envelope import CloudEvent, new_event

SERVICE = "licensing"


def licence_event(licence: Licence, change: dict[str, Any]) -> CloudEvent:
    """`data` carries the licence after the change, and the change itself (from, to,
    event, reason, actor, role, the transition's fields, time); `sequence` is the
    licence's version."""
    return new_event(
        SERVICE,
        change["event"],
        subject=licence.id,
        sequence=licence.version,
        data={"license": licence.model_dump(mode="json"), "change": change},
    )


class FacilitySnapshot(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    venture_id: str
    owner: str
    kind: str
    status: str


class FacilityChanged(BaseModel):
    """`data` of every `facility.*` event."""

    model_config = ConfigDict(extra="ignore")

    facility: FacilitySnapshot
    change: dict[str, Any]
