"""The CloudEvents 1.0 envelope (structured JSON mode) every registry event travels in."""

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.contract import EVENT_TYPES, EventPayload
from shared.logs import current_correlation_id

EVENT_TYPE_PREFIX = "jvreg."


class CloudEvent(BaseModel):
    """Required attributes per the CloudEvents 1.0 spec, plus our extensions: `sequence`,
    +1 per change of the aggregate named by `subject`, so consumers can apply in order;
    `correlationid`, the id of the request that caused it (shared.logs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(pattern=r"^jvreg\.[a-z_]+\.[a-z_]+$")
    subject: str = Field(min_length=1)
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    sequence: int = Field(ge=1)
    correlationid: str | None = Field(None, min_length=1)
    data: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return self.type.removeprefix(EVENT_TYPE_PREFIX)

    def wire(self) -> dict[str, Any]:
        """The JSON document as it is published (times as RFC 3339 strings)."""
        return self.model_dump(mode="json", exclude_none=True)


def new_event(
    service: str, routing_key: str, subject: str, sequence: int, data: dict[str, Any]
) -> CloudEvent:
    if routing_key not in EVENT_TYPES:
        raise ValueError(f"{routing_key} is not an event type of the contract (shared/contract.py)")
    return CloudEvent(
        specversion="1.0",
        id=str(uuid.uuid4()),
        source=f"/jvreg/{service}",
        type=f"{EVENT_TYPE_PREFIX}{routing_key}",
        subject=subject,
        time=datetime.now(UTC),
        sequence=sequence,
        correlationid=current_correlation_id.get(),
        data=data,
    )


def aggregate_event(payload: EventPayload) -> CloudEvent:
    """The event a contract's payload model describes: from its service, its type the
    payload's routing key, its subject and sequence the aggregate it is about and that
    aggregate's version, its data the payload as JSON (`from`, not `from_`)."""
    return new_event(
        payload.service,
        payload.routing_key,
        payload.subject,
        payload.sequence,
        payload.model_dump(mode="json", by_alias=True),
    )
