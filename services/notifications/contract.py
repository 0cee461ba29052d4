"""The notifications service's wire contract: regulators' webhook subscriptions, what the
registry answers about them and their deliveries, and what it consumes (every licensing
event, which it delivers to the subscriptions that want it). It publishes no events of
its own. Wire models only; the delivery rules live in `domain.py`."""

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from services.licensing import contract as licensing
from services.notifications.webhook_urls import MAX_URL_LENGTH, check_webhook_url
from shared.contract import Strict
from shared.contract import Subscription as EventSubscription

SERVICE = "notifications"

SubscriptionStatus = Literal["active", "disabled"]
# pending: waiting for its (next) attempt; delivered: a 2xx came back; failed: the
# retries ran out or the receiver answered 410; cancelled: the subscription was
# disabled before the event could be delivered.
DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]
AttemptOutcome = Literal["delivered", "retry", "failed", "gone"]
# What happened on an attempt, in the registry's own words (never a socket's error
# text, which would turn the delivery log into a port scanner's report).
AttemptCategory = Literal[
    "http_status",  # the receiver answered; see status_code
    "refused_url",  # the URL breaks the URL rules: not sent
    "refused_destination",  # the host resolves to a non-public address: not sent
    "unresolvable",  # the host does not resolve: not sent
    "connect_failed",
    "tls_failed",  # no TLS handshake, or a certificate not valid for the host
    "timeout",
    "no_response",  # the connection closed without an HTTP answer
]

# AMQP topic patterns over routing keys: dot-separated words, where `*` stands for
# exactly one word and `#` for zero or more.
TOPIC_WORD = r"(?:[a-z_]+|\*|#)"
TOPIC_PATTERN = re.compile(rf"^{TOPIC_WORD}(?:\.{TOPIC_WORD})*$")
# Webhooks carry the licensing events (docs/architecture.md §4.1): routing keys
# license.<status>.
SUBSCRIBABLE_EVENTS = "license"
# What check_topic_pattern takes, as the OpenAPI document states it.
SUBSCRIBABLE_PATTERN = rf"^(?:{SUBSCRIBABLE_EVENTS}|\*|#)(?:\.{TOPIC_WORD})*$"


def check_topic_pattern(pattern: str) -> str:
    if not TOPIC_PATTERN.match(pattern):
        raise ValueError(
            "not a topic pattern: use words of a-z and _, `*` (one word) or `#` (any "
            "number of words), separated by dots, e.g. license.* or license.#"
        )
    if pattern.split(".")[0] not in (SUBSCRIBABLE_EVENTS, "*", "#"):
        raise ValueError(
            f"webhooks deliver licensing events only: start the pattern with "
            f"{SUBSCRIBABLE_EVENTS}. (or * or #), e.g. {SUBSCRIBABLE_EVENTS}.granted"
        )
    return pattern


EventPattern = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(check_topic_pattern),
    Field(json_schema_extra={"pattern": SUBSCRIBABLE_PATTERN}),
]
WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH),
    AfterValidator(check_webhook_url),
    # parse_url reads the scheme in any case
    Field(json_schema_extra={"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}),
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class CreateSubscription(Strict):
    url: WebhookUrl = Field(description="where to POST each event, https:// (or http://)")
    event_types: list[EventPattern] = Field(
        min_length=1,
        description="routing-key patterns, e.g. license.granted, license.*, license.# "
        "(at most JVREG_WEBHOOK_MAX_EVENT_TYPES, 20 unless set)",
    )
    description: Description | None = None

    @field_validator("event_types")
    @classmethod
    def without_repeats(cls, patterns: list[str]) -> list[str]:
        return list(dict.fromkeys(patterns))


class SubscriptionFilters(Strict):
    owner: str | None = None
    status: SubscriptionStatus | None = None


class Subscription(BaseModel):
    """A subscription as the registry shows it: never with its secret."""

    model_config = ConfigDict(extra="ignore")

    id: str
    url: str
    event_types: list[str]
    description: str | None = None
    status: SubscriptionStatus
    owner: str = Field(description="the organisation whose key created the subscription")
    created_by: str = Field(description="id of the API key that created it")
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


class SubscriptionCreated(Subscription):
    secret: str = Field(
        description="whsec_ signing secret; shown only in this response. Verify each "
        "delivery's webhook-signature with it (Standard Webhooks)."
    )


class DeliveryFilters(Strict):
    status: DeliveryStatus | None = None


class DeliveryAttempt(BaseModel):
    attempt: int = Field(ge=1)
    at: datetime
    category: AttemptCategory | None = Field(
        None, description="what happened (absent on attempts logged by earlier versions)"
    )
    status_code: int | None = Field(None, description="the receiver's HTTP status, if any")
    error: str | None = Field(None, description="why no status came back, or what it meant")
    latency_ms: int = Field(ge=0)
    outcome: AttemptOutcome
    next_retry_at: datetime | None = None


class Delivery(BaseModel):
    """One event on its way to one subscription, with every attempt so far."""

    model_config = ConfigDict(extra="ignore")

    id: str
    subscription_id: str
    event_id: str
    event_type: str
    subject: str
    sequence: int
    status: DeliveryStatus
    attempt_count: int = Field(ge=0)
    next_attempt_at: datetime | None = Field(None, description="while pending")
    created_at: datetime
    completed_at: datetime | None = None
    attempts: list[DeliveryAttempt] = Field(default_factory=list)


# It publishes nothing: its outbox is the deliveries, drained over HTTP.
EVENTS: dict[str, type[BaseModel]] = {}
# Every licensing decision, fanned out to the subscriptions whose patterns match it.
DELIVERS_LICENSING = EventSubscription(
    "notifications.queue_webhook_deliveries",
    licensing.SERVICE,
    "license.#",
    lambda: licensing.EVENTS,
)
SUBSCRIPTIONS: list[EventSubscription] = [DELIVERS_LICENSING]
