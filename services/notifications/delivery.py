"""Sending webhooks: each pending delivery is POSTed with Standard Webhooks headers,
one at a time per subscription and in event order, retried on the configured
schedule, and every attempt logged on the delivery.

A background provider (like shared.outbox.OutboxRelay) drives it. Each attempt
first claims the subscription's earliest pending delivery with a lease, so several
instances of the service never send the same attempt at the same time; one that
dies mid-attempt leaves the lease to expire and another sends it again (at least
once: receivers dedupe by `webhook-id`, the event id)."""

import json
import logging
import socket
import ssl
import time
from datetime import datetime, timedelta
from http.client import HTTPException

import certifi
import eventlet
from nameko.extensions import DependencyProvider
from standardwebhooks.webhooks import Webhook
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, SSLError

from services.notifications.contract import AttemptCategory, DeliveryAttempt
from services.notifications.domain import (
    Destination,
    DestinationRefused,
    Resolver,
    choose_destination,
    judge_attempt,
)
from services.notifications.store import (
    DELIVERED,
    FAILED,
    PENDING,
    NotificationStore,
    is_due,
)
from shared.background import BackgroundLoop
from shared.clock import utcnow
from shared.logs import correlated
from shared.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_SECONDS = 10
# Longer than an attempt can take, so a live attempt is never taken over.
LEASE = timedelta(seconds=6 * DELIVERY_TIMEOUT_SECONDS)
# Subscriptions served at once by one instance (each still strictly one at a time).
CONCURRENT_SUBSCRIPTIONS = 20
USER_AGENT = "jvreg-webhooks/1.0"
STATUS_AFTER = {"delivered": DELIVERED, "retry": PENDING, "failed": FAILED, "gone": FAILED}
# The delivery log's words for an attempt that got no HTTP answer.
NO_ANSWER = {
    "connect_failed": "could not connect to the receiver",
    "tls_failed": "TLS failed: no handshake, or a certificate not valid for the host",
    "timeout": f"no response within {DELIVERY_TIMEOUT_SECONDS} s",
    "no_response": "the connection closed without an HTTP response",
}


def webhook_headers(secret: str, event_id: str, body: str, moment: datetime) -> dict[str, str]:
    """Standard Webhooks headers for `body`: the signature is a base64 HMAC-SHA256
    of "{id}.{timestamp}.{body}" with the subscription's secret."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, moment, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


def resolve_host(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)]


class HostResolver(DependencyProvider):
    """DNS: what a webhook's host name resolves to, the one outside fact the address
    check needs. Tests give it a resolver of their own: HostResolver(resolve)."""

    def __init__(self, resolve: Resolver = resolve_host, **kwargs):
        self.resolve = resolve
        super().__init__(**kwargs)

    def get_dependency(self, worker_ctx) -> Resolver:
        return self.resolve


def open_connection(destination: Destination) -> HTTPConnection:
    """A connection to the checked address itself (no second lookup for a rebinding
    DNS server to answer differently); TLS names and verifies the original host."""
    if destination.url.scheme == "https":
        return HTTPSConnection(
            destination.address,
            destination.port,
            timeout=DELIVERY_TIMEOUT_SECONDS,
            server_hostname=destination.host,
            cert_reqs=ssl.CERT_REQUIRED,
            ca_certs=certifi.where(),
        )
    return HTTPConnection(destination.address, destination.port, timeout=DELIVERY_TIMEOUT_SECONDS)


def post_webhook(
    destination: Destination, body: str, headers: dict[str, str]
) -> tuple[AttemptCategory, int | None]:
    """POST `body` (the exact text that was signed); what happened, and the
    receiver's status code if it answered. Redirects are not followed: they could
    lead anywhere."""
    connection = open_connection(destination)
    try:
        # The socket timeout bounds each wait; eventlet's bounds the whole attempt.
        with eventlet.Timeout(DELIVERY_TIMEOUT_SECONDS):
            connection.request(
                "POST",
                destination.url.request_uri,
                body=body.encode("utf-8"),
                headers={**headers, "Host": destination.url.netloc or destination.host},
                preload_content=False,  # the status is all we need; do not read the body
            )
            return "http_status", connection.getresponse().status
    except eventlet.Timeout:
        return "timeout", None
    except (ssl.SSLError, SSLError):
        return "tls_failed", None
    except NewConnectionError:  # before ConnectTimeoutError, which it subclasses
        return "connect_failed", None
    except (ConnectTimeoutError, TimeoutError):
        return "timeout", None
    except (OSError, HTTPException, HTTPError):
        return "no_response", None
    finally:
        connection.close()


def attempt_error(category: AttemptCategory, status_code: int | None, outcome: str) -> str | None:
    if category != "http_status":
        return NO_ANSWER[category]
    if outcome == "delivered":
        return None
    if outcome == "gone":
        return "410 Gone: the receiver asked to stop; subscription disabled"
    return f"HTTP {status_code}"


class Deliverer:
    """Attempts a subscription's earliest pending delivery, if it is due."""

    def __init__(
        self,
        store: NotificationStore,
        owner: str,
        schedule: list[float],
        allow_private: bool,
        resolve: Resolver,
    ):
        self.store = store
        self.owner = owner
        self.schedule = schedule
        self.allow_private = allow_private
        self.resolve = resolve

    def deliver_next(self, subscription_id: str) -> bool:
        """One attempt at the subscription's next delivery; False when there is none
        to make now (nothing pending, the next one waits for its retry time, or
        another instance holds it). A later event never overtakes an earlier one."""
        head = self.store.next_pending(subscription_id)
        if head is None or not is_due(head, utcnow()):
            return False
        delivery = self.store.claim(head, self.owner, LEASE)
        if delivery is None:
            return False
        with correlated(json.loads(delivery["body"]).get("correlationid")):
            self.attempt_claimed(subscription_id, delivery)
        return True

    def attempt_claimed(self, subscription_id: str, delivery: dict) -> None:
        """Send a claimed delivery (or cancel it, its subscription no longer active),
        record the attempt and log it."""
        subscription = self.store.subscription_document(subscription_id)
        if subscription["status"] != "active":
            self.store.cancel(delivery)
            return
        attempt = self.attempt(subscription, delivery)
        recorded = self.store.record_attempt(
            delivery, self.owner, attempt, STATUS_AFTER[attempt.outcome]
        )
        # Not the URL: one stored before the URL rules could carry a password.
        log.info(
            "webhook %s attempt %d to %s: %s (%s, %d ms)%s",
            delivery["event_id"],
            attempt.attempt,
            subscription_id,
            attempt.outcome,
            attempt.status_code or attempt.category,
            attempt.latency_ms,
            f", next at {attempt.next_retry_at:%H:%M:%S}" if attempt.next_retry_at else "",
        )
        if recorded and attempt.outcome == "gone":
            self.store.disable(subscription_id, "the receiver answered 410 Gone")

    def attempt(self, subscription: dict, delivery: dict) -> DeliveryAttempt:
        moment = utcnow()
        started = time.monotonic()
        status_code, refusal = None, None
        try:
            # Checked again at each attempt (what a name resolves to can change), and
            # resolved only here: the request goes to the address that was checked.
            destination = choose_destination(subscription["url"], self.resolve, self.allow_private)
        except DestinationRefused as refused:
            category, refusal = refused.category, f"not sent: {refused.message}"
        else:
            headers = webhook_headers(
                subscription["secret"], delivery["event_id"], delivery["body"], moment
            )
            category, status_code = post_webhook(destination, delivery["body"], headers)
        latency_ms = int((time.monotonic() - started) * 1000)
        outcome, next_retry_at = judge_attempt(
            delivery["attempt_count"], status_code, utcnow(), self.schedule
        )
        return DeliveryAttempt(
            attempt=delivery["attempt_count"],
            at=moment,
            category=category,
            status_code=status_code,
            error=refusal or attempt_error(category, status_code, outcome),
            latency_ms=latency_ms,
            outcome=outcome,
            next_retry_at=next_retry_at,
        )


class WebhookDelivery(BackgroundLoop):
    """Runs the Deliverer in the background of the notifications container: each
    subscription with pending deliveries is drained in a green thread of its own, so a
    slow receiver delays only its own events. Polling also finds retries falling due."""

    identifier = "webhook-delivery"

    def configure(self, settings: Settings) -> None:
        self.schedule = settings.webhook_retry_schedule_seconds
        self.allow_private = settings.webhook_allow_private
        self._in_flight: set[str] = set()
        self._pool = eventlet.GreenPool(CONCURRENT_SUBSCRIPTIONS)

    def begin(self, store):
        resolver = next(dep for dep in self.container.dependencies if isinstance(dep, HostResolver))
        self.deliverer = Deliverer(
            store.repository(), self.owner, self.schedule, self.allow_private, resolver.resolve
        )

    def stop(self):
        super().stop()
        self._pool.waitall()  # let attempts in progress finish and be logged

    def kill(self):
        super().kill()
        for green_thread in list(self._pool.coroutines_running):
            eventlet.kill(green_thread)

    def work(self) -> bool:
        for subscription_id in self.deliverer.store.subscriptions_with_pending():
            if subscription_id not in self._in_flight and self.running:
                self._in_flight.add(subscription_id)
                self._pool.spawn_n(self._drain, subscription_id)
        return False

    def _drain(self, subscription_id: str):
        try:
            while self.running and self.deliverer.deliver_next(subscription_id):
                pass
        except Exception:
            log.exception("delivering to subscription %s failed", subscription_id)
        finally:
            self._in_flight.discard(subscription_id)
