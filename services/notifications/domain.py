"""Webhook subscriptions: which URLs may receive the registry's events, which events
each one wants, and what happens after each delivery attempt. Pure rules; the one
outside fact they need (what a host name resolves to) is passed in."""

import base64
import ipaddress
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from shared.errors import field_error

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

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64 random bytes
MAX_URL_LENGTH = 2000

# AMQP topic patterns over routing keys: dot-separated words, where `*` stands for
# exactly one word and `#` for zero or more.
TOPIC_WORD = r"(?:[a-z_]+|\*|#)"
TOPIC_PATTERN = re.compile(rf"^{TOPIC_WORD}(?:\.{TOPIC_WORD})*$")
# Webhooks carry the licensing events (docs/architecture.md §4.1): routing keys license.<status>.
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


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether `routing_key` matches `pattern` as a RabbitMQ topic binding would.

    One pass over the key's words, carrying the set of pattern positions reached so
    far: at most (pattern words x key words) steps, whatever the pattern. (Trying
    every split of the key at each `#` instead takes exponential time on patterns
    like `#.#.#.#.x`.)"""
    pattern_words = pattern.split(".")
    reached = _past_hashes({0}, pattern_words)
    for word in routing_key.split("."):
        advanced = set()
        for position in reached:
            if position == len(pattern_words):
                continue  # the pattern is used up, yet words remain
            expected = pattern_words[position]
            if expected == "#":
                advanced.add(position)  # `#` takes this word and may take more
            elif expected in ("*", word):
                advanced.add(position + 1)
        reached = _past_hashes(advanced, pattern_words)
        if not reached:
            return False
    return len(pattern_words) in reached


def _past_hashes(positions: set[int], pattern_words: list[str]) -> set[int]:
    """`positions` and those reached from them by letting `#` stand for no word."""
    reached = set()
    for position in positions:
        reached.add(position)
        while position < len(pattern_words) and pattern_words[position] == "#":
            position += 1
            reached.add(position)
    return reached


# --- what a webhook URL may be ------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_webhook_url(url: str) -> Url:
    """`url` as the HTTP client reads it. Deliveries are sent from this very result
    (urllib3's parser), so the address check and the request cannot disagree about
    the host; what other parsers read differently (a backslash, user@host, control
    characters) is refused rather than interpreted."""
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError("a URL may not contain spaces or control characters")
    if "\\" in url:
        raise ValueError("a URL may not contain a backslash")
    try:
        parts = parse_url(url)
    except LocationParseError:
        raise ValueError("not a URL (is its port a number from 1 to 65535?)") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError("the URL must start with https:// or http://")
    if parts.auth is not None:
        raise ValueError(
            "a URL may not carry a user name or password (user@host): deliveries are "
            "authenticated by their signature"
        )
    if not parts.host:
        raise ValueError("the URL names no host")
    if parts.port == 0:
        raise ValueError("the URL's port must be from 1 to 65535")
    check_host_form(bare_host(parts.host))
    return parts


def bare_host(host: str) -> str:
    """The host without the brackets of an IPv6 literal."""
    return host[1:-1] if host.startswith("[") else host


def check_host_form(host: str) -> None:
    """An IP address is written the standard way: resolvers also read 2130706433,
    0177.0.0.1 or 0x7f.1 as 127.0.0.1, which hides what the URL points at."""
    if "%" in host:
        raise ValueError("a URL may not name a network interface (an IPv6 %zone)")
    if is_ip_literal(host):
        return
    last_label = host.rstrip(".").rpartition(".")[2].lower()
    if last_label.isdigit() or last_label.startswith("0x"):
        raise ValueError(
            "write an IP address as four decimal numbers (e.g. 196.1.100.17) or an IPv6 "
            "address in brackets; other numeric forms are refused"
        )


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_webhook_url(url: str) -> str:
    parse_webhook_url(url)
    return url


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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


def check_event_type_count(command: CreateSubscription, most: int) -> None:
    if len(command.event_types) > most:
        raise field_error(
            ["body", "event_types"],
            f"at most {most} patterns per subscription (license.# covers every licensing event)",
            "too_long",
        )


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


class DestinationRefused(Exception):
    """A webhook URL the registry will not send to: why (`category`, as the delivery
    log records it) and what to tell the subscriber."""

    def __init__(self, category: str, message: str):
        super().__init__(message)
        self.category = category
        self.message = message


@dataclass(frozen=True)
class Destination:
    """Where one delivery goes: the URL as the client parsed it, and the address,
    checked, that the connection is made to (never looked up a second time)."""

    url: Url
    address: str

    @property
    def host(self) -> str:
        """The name the receiver knows itself by: for the Host header, TLS SNI and the
        certificate check."""
        return bare_host(self.url.host)

    @property
    def port(self) -> int:
        return self.url.port or DEFAULT_PORTS[self.url.scheme]


def choose_destination(url: str, resolve: Resolver, allow_private: bool) -> Destination:
    """Parse `url`, resolve its host once and check every address it resolves to: a
    webhook must not become a way into the registry's own network (loopback, private,
    link-local, multicast, reserved). `allow_private` is for development and tests."""
    try:
        parts = parse_webhook_url(url)
    except ValueError as error:
        raise DestinationRefused("refused_url", str(error)) from None
    host = bare_host(parts.host)
    if is_ip_literal(host):
        addresses = [host]
    else:
        try:
            addresses = list(
                dict.fromkeys(resolve(host, parts.port or DEFAULT_PORTS[parts.scheme]))
            )
        except OSError:
            raise DestinationRefused("unresolvable", f"{host} does not resolve") from None
        if not addresses:
            raise DestinationRefused("unresolvable", f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if kind := address_kind(address):
                raise DestinationRefused(
                    "refused_destination",
                    f"{host} resolves to {address}, a {kind} address; webhooks may only "
                    "target public addresses",
                )
    return Destination(parts, addresses[0])


def check_destination(url: str, resolve: Resolver, allow_private: bool) -> None:
    """Refuse a subscription to a non-public address. With `allow_private` nothing is
    looked up: development and tests subscribe names that may not resolve yet."""
    if allow_private:
        return
    try:
        choose_destination(url, resolve, allow_private)
    except DestinationRefused as refused:
        raise field_error(["body", "url"], refused.message, refused.category) from None


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
