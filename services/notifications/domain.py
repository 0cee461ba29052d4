"""Webhook subscriptions: which URLs may receive the registry's events, which events
each one wants, and what happens after each delivery attempt. Pure rules; the one
outside fact they need (what a host name resolves to) is passed in."""

import base64
import ipaddress
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from urllib3.util import Url

from services.notifications.contract import (
    AttemptCategory,
    AttemptOutcome,
    CreateSubscription,
    Subscription,
)
from services.notifications.webhook_urls import (
    host_of,
    is_ip_literal,
    parse_webhook_url,
    port_of,
)
from shared.contract import topic_matches
from shared.errors import field_error

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64 random bytes


def wants(subscription: Subscription, routing_key: str) -> bool:
    """Whether an active subscription's patterns match the event's routing key."""
    return subscription.status == "active" and any(
        topic_matches(pattern, routing_key) for pattern in subscription.event_types
    )


def check_event_type_count(command: CreateSubscription, most: int) -> None:
    if len(command.event_types) > most:
        raise field_error(
            ["body", "event_types"],
            f"at most {most} patterns per subscription (license.# covers every licensing event)",
            "too_long",
        )


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

    def __init__(self, category: AttemptCategory, message: str):
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
        return host_of(self.url)

    @property
    def port(self) -> int:
        return port_of(self.url)


def choose_destination(url: str, resolve: Resolver, allow_private: bool) -> Destination:
    """Parse `url`, resolve its host once and check every address it resolves to: a
    webhook must not become a way into the registry's own network (loopback, private,
    link-local, multicast, reserved). `allow_private` is for development and tests."""
    try:
        parts = parse_webhook_url(url)
    except ValueError as error:
        raise DestinationRefused("refused_url", str(error)) from None
    host = host_of(parts)
    if is_ip_literal(host):
        addresses = [host]
    else:
        try:
            addresses = list(dict.fromkeys(resolve(host, port_of(parts))))
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
