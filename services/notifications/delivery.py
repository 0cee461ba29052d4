"""Sending webhooks: each pending delivery is POSTed with Standard Webhooks headers,
one at a time per subscription and in event order, retried on the configured
schedule, and every attempt logged on the delivery.

A background provider (like shared.outbox.OutboxRelay) drives it. Each attempt
first claims the subscription's earliest pending delivery with a lease, so several
instances of the service never send the same attempt at the same time; one that
dies mid-attempt leaves the lease to expire and another sends it again (at least
once: receivers dedupe by `webhook-id`, the event id)."""

import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import eventlet
import requests
from standardwebhooks.webhooks import Webhook

from services.notifications.domain import (
    DeliveryAttempt,
    Resolver,
    destination_problem,
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

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_SECONDS = 10
# Longer than an attempt can take, so a live attempt is never taken over.
LEASE = timedelta(seconds=6 * DELIVERY_TIMEOUT_SECONDS)
# Subscriptions served at once by one instance (each still strictly one at a time).
CONCURRENT_SUBSCRIPTIONS = 20
USER_AGENT = "jvreg-webhooks/1.0"
STATUS_AFTER = {"delivered": DELIVERED, "retry": PENDING, "failed": FAILED, "gone": FAILED}

Post = Callable[[str, str, dict[str, str]], tuple[int | None, str | None]]


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
    return [info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)]


def post_webhook(url: str, body: str, headers: dict[str, str]) -> tuple[int | None, str | None]:
    """POST `body` (the exact text that was signed); the receiver's status code, or
    why there is none. Redirects are not followed: they could lead anywhere."""
    try:
        # requests' timeout bounds each socket wait; eventlet's bounds the whole call.
        with eventlet.Timeout(DELIVERY_TIMEOUT_SECONDS):
            response = requests.post(
                url,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=DELIVERY_TIMEOUT_SECONDS,
                allow_redirects=False,
                stream=True,  # the status is all we need; do not read the body
            )
            response.close()
        return response.status_code, None
    except (eventlet.Timeout, requests.Timeout):
        return None, f"no response within {DELIVERY_TIMEOUT_SECONDS} s"
    except requests.RequestException as error:
        return None, f"{type(error).__name__}: {error}"


def attempt_error(status_code: int | None, outcome: str) -> str | None:
    if status_code is None or outcome == "delivered":
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
        post: Post = post_webhook,
        resolve: Resolver = resolve_host,
    ):
        self.store = store
        self.owner = owner
        self.schedule = schedule
        self.allow_private = allow_private
        self.post = post
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
        subscription = self.store.subscription_document(subscription_id)
        if subscription["status"] != "active":
            self.store.cancel(delivery)
            return True
        attempt = self.attempt(subscription, delivery)
        recorded = self.store.record_attempt(
            delivery, self.owner, attempt, STATUS_AFTER[attempt.outcome]
        )
        log.info(
            "webhook %s attempt %d to %s: %s (%s, %d ms)%s",
            delivery["event_id"],
            attempt.attempt,
            subscription["url"],
            attempt.outcome,
            attempt.status_code or attempt.error,
            attempt.latency_ms,
            f", next at {attempt.next_retry_at:%H:%M:%S}" if attempt.next_retry_at else "",
        )
        if recorded and attempt.outcome == "gone":
            self.store.disable(subscription_id, "the receiver answered 410 Gone")
        return True

    def attempt(self, subscription: dict, delivery: dict) -> DeliveryAttempt:
        moment = utcnow()
        started = time.monotonic()
        url = subscription["url"]
        # Checked again at each attempt: what a name resolves to can change.
        problem = None if self.allow_private else destination_problem(url, self.resolve)
        if problem:
            status_code, error = None, f"not sent: {problem}"
        else:
            headers = webhook_headers(
                subscription["secret"], delivery["event_id"], delivery["body"], moment
            )
            status_code, error = self.post(url, delivery["body"], headers)
        latency_ms = int((time.monotonic() - started) * 1000)
        outcome, next_retry_at = judge_attempt(
            delivery["attempt_count"], status_code, utcnow(), self.schedule
        )
        return DeliveryAttempt(
            attempt=delivery["attempt_count"],
            at=moment,
            status_code=status_code,
            error=error or attempt_error(status_code, outcome),
            latency_ms=latency_ms,
            outcome=outcome,
            next_retry_at=next_retry_at,
        )


class WebhookDelivery(BackgroundLoop):
    """Runs the Deliverer in the background of the notifications container: each
    subscription with pending deliveries is drained in a green thread of its own, so a
    slow receiver delays only its own events. Polling also finds retries falling due."""

    identifier = "webhook-delivery"

    def configure(self, settings):
        self.schedule = settings.webhook_retry_schedule_seconds
        self.allow_private = settings.webhook_allow_private
        self._in_flight: set[str] = set()
        self._pool = eventlet.GreenPool(CONCURRENT_SUBSCRIPTIONS)

    def begin(self, store):
        self.deliverer = Deliverer(
            store.repository(), self.owner, self.schedule, self.allow_private
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
