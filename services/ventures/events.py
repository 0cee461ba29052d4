"""Events the ventures service publishes to `ventures.events` (routing key = type)."""

from typing import Any

from services.ventures.domain import Venture
from shared.envelope import CloudEvent, new_event

SERVICE = "ventures"
VENTURE_REGISTERED = "venture.registered"
VENTURE_UPDATED = "venture.updated"
VENTURE_STATUS_CHANGED = "venture.status_changed"


def venture_event(routing_key: str, venture: Venture, change: dict[str, Any]) -> CloudEvent:
    """`data` carries the venture after the change, and the change itself."""
    return new_event(
        SERVICE,
        routing_key,
        subject=venture.id,
        sequence=venture.version,
        data={"venture": venture.model_dump(mode="json"), "change": change},
    )
