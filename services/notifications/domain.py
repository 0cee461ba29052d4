"""Webhook subscriptions: which URLs may receive the registry's events, which events
each one wants, and what happens after each delivery attempt. Pure rules; the one
outside fact they need (what a host name resolves to) is passed in."""

import base64
import ipaddress
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from shared.errors import field_error

SubscriptionStatus = Literal["active", "disabled"]
# pending: waiting for its (next) attempt; delivered: a 2xx came back; failed: the
# retries ran out or the receiver answered 410; cancelled: the subscription was
# disabled before the event could be delivered.
DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]
AttemptOutcome = Literal["delivered", "retry", "failed", "gone"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64 random bytes
MAX_URL_LENGTH = 2000

# AMQP topic patterns over routing keys: dot-separated words, where `*` stands for
# exactly one word and `#` for zero or more.
TOPIC_WORD = r"(?:[a-z_]+|\*|#)"
TOPIC_PATTERN = re.compile(rf"^{TOPIC_WORD}(?:\.{TOPIC_WORD})*$")
# Webhooks carry the licensing events (DESIGN.md §3): routing keys license.<status>.
SUBSCRIBABLE_EVENTS = "license"


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


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether `routing_key` matches `pattern` as a RabbitMQ topic binding would."""
    return _words_match(pattern.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        # `#` swallows zero, one, two... of the remaining words.
        return any(_words_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _words_match(rest, words[1:])


def check_webhook_url(url: str) -> str:
    if any(char.isspace() for char in url):
        raise ValueError("a URL may not contain spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with https:// or http://")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as error:
        raise ValueError(f"the URL's port is invalid: {error}") from None
    return url


EventPattern = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(check_topic_pattern),
]
WebhookUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH),
    AfterValidator(check_webhook_url),
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSubscription(Strict):
    url: WebhookUrl = Field(description="where to POST each event, https:// (or http://)")
    event_types: list[EventPattern] = Field(
        min_length=1,
        max_length=20,
        description="routing-key patterns, e.g. license.granted, license.*, license.#",
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

    def wants(self, routing_key: str) -> bool:
        return self.status == "active" and any(
            topic_matches(pattern, routing_key) for pattern in self.event_types
        )


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


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


# --- where a webhook may point ----------------------------------------------------

Resolver = Callable[[str, int], Iterable[str]]


def address_kind(address: str) -> str | None:
    """What kind of non-public address `address` is (loopback, private...), or None
    for a public unicast address, the only kind the registry sends webhooks to."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 hidden in IPv6 (::ffff:127.0.0.1, 2002::/16 6to4) is judged as IPv4.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return address_kind(str(embedded))
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),
    ):
        if flag:
            return kind
    return None


def destination_problem(url: str, resolve: Resolver) -> str | None:
    """Why the registry must not send requests to `url`, or None when its host
    resolves only to public addresses. A webhook must not become a way to reach the
    registry's own network (loopback, private, link-local, multicast, reserved)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = sorted(set(resolve(parts.hostname, port)))
    except OSError as error:
        return f"cannot resolve {parts.hostname}: {error}"
    if not addresses:
        return f"{parts.hostname} resolves to no address"
    for address in addresses:
        if kind := address_kind(address):
            return (
                f"{parts.hostname} resolves to {address}, a {kind} address; webhooks may "
                "only target public addresses"
            )
    return None


def check_destination(url: str, resolve: Resolver, allow_private: bool) -> None:
    """Refuse a subscription to a non-public address; `allow_private` is for development."""
    if allow_private:
        return
    if problem := destination_problem(url, resolve):
        raise field_error(["body", "url"], problem, "url_not_public")


# --- after an attempt ---------------------------------------------------------------


def retry_delay(attempt: int, schedule: list[float]) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (1-based), or None when
    that was the last: there is one retry per entry of `schedule`."""
    return schedule[attempt - 1] if attempt <= len(schedule) else None


def judge_attempt(
    attempt: int, status_code: int | None, now: datetime, schedule: list[float]
) -> tuple[AttemptOutcome, datetime | None]:
    """The outcome of an attempt that got `status_code` (None: timeout or connection
    error), and when to try again."""
    if status_code is not None and 200 <= status_code < 300:
        return "delivered", None
    if status_code == 410:
        return "gone", None  # the receiver asks us to stop: disable the subscription
    delay = retry_delay(attempt, schedule)
    if delay is None:
        return "failed", None
    return "retry", now + timedelta(seconds=delay)
