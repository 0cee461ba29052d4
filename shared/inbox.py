"""The consuming side: events arrive as CloudEvents and are applied, per aggregate,
in `sequence` order and at most once. The consumer's projection of each aggregate keeps
the sequence of the last event it applied, written in the same transaction as the
effect: since events apply strictly in order, that one number says which events were
applied (exactly 1..last), so a redelivered one is known without a record per event id.
A handler that fails has its message requeued, never acknowledged-and-dropped; after the
delivery limit it is dead-lettered."""

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import eventlet
from nameko.events import EventHandler
from pydantic import BaseModel, ValidationError
from pymongo.collection import Collection
from pymongo.database import Database

from shared import messaging
from shared.contract import EVENT_TYPES, PayloadRefused, Subscription
from shared.dead_letters import (
    FAILURES_HEADER,
    RETURNS_HEADER,
    broker_returns,
    broker_user,
    dead_letter,
    delivery_attempts,
    publisher_of,
    requeue_copy,
    returns_in_all,
)
from shared.entrypoints import BROKER_GONE, QueueConsumer
from shared.envelope import CloudEvent
from shared.faults import crash_point
from shared.logs import current_correlation_id
from shared.settings import Settings

log = logging.getLogger(__name__)

# An early event goes back to the tail of its queue, as a new message, until its
# predecessor has been applied: its waits do not count as failures of its handler,
# and hold no worker. It is dead-lettered
# only after waiting this long, far longer than what legitimately holds a predecessor
# back: a crashed relay's lease (shared.outbox.LEASE), or the open transaction of a
# crashed consumer, which the database keeps for 60 s (MongoDB's
# transactionLifetimeLimitSeconds) and which blocks the predecessor's redelivery.
EARLY_EVENT_LIMIT_SECONDS = 300
# Seconds an early event waits (after its retries in place) before going back.
EARLY_EVENT_PAUSE_SECONDS = 1
# When the event was first found early (epoch seconds), carried by its copies.
EARLY_SINCE_HEADER = "x-jvreg-early-since"
# How long applying an event may wait on conflicting transactions before it is held
# back: a worker waiting out a crashed consumer's lock would keep the message unacked,
# and each further crash would count as one of its deliveries.
APPLY_WAIT_SECONDS = 5
# How long, and how often, a handler retries an early event in place before pausing.
EARLY_EVENT_PATIENCE_SECONDS = 2
EARLY_EVENT_RETRY_SECONDS = 0.05
T = TypeVar("T")

if TYPE_CHECKING:
    from shared.mongo import Repository, UnitOfWork


class EventNotYetApplicable(Exception):
    """An event that cannot be applied yet but will be: it is held back (sent to the
    tail of its queue) instead of counting as a failed delivery."""


class EventOutOfOrder(EventNotYetApplicable):
    """An event arrived before its predecessor; it is held back until the gap fills."""


class EventBlocked(EventNotYetApplicable):
    """Applying the event kept conflicting with another transaction, e.g. the one a
    crashed consumer left open, which the database keeps for up to 60 s."""


class InvalidCloudEvent(Exception):
    """A message that is not a CloudEvent of our contract: retrying cannot help."""


def is_next(event: CloudEvent, last_applied: int) -> bool:
    """True when `event` is the next one to apply for its aggregate, False for a
    duplicate (its sequence was applied already); raises EventOutOfOrder when it
    arrived early."""
    if event.sequence <= last_applied:
        return False
    if event.sequence > last_applied + 1:
        raise EventOutOfOrder(
            f"{event.type} {event.subject} sequence {event.sequence} "
            f"arrived before {last_applied + 1}"
        )
    return True


def fields_kept(view: type[BaseModel], resource: BaseModel) -> dict[str, Any]:
    """What a projection whose documents read as `view` keeps of another service's
    `resource` (from its event): the fields they share, but the id (the document's
    `_id`) and the sequence (the projection's own)."""
    return resource.model_dump(include=set(view.model_fields) - {"id", "sequence"})


class Projection:
    """Another service's aggregates as this one has heard of them: one document per
    aggregate in `collection` (keyed by the event's subject, or by `key_of(event)`),
    holding what the consumer keeps of it and the sequence of the last event applied
    (in `sequence_field`). Events are applied in per-aggregate sequence order, so that
    sequence is also the de-duplication: an event at or below it was applied before
    and changes nothing; an early one is held back until its predecessor is applied."""

    def __init__(
        self,
        collection: Collection,
        sequence_field: str = "sequence",
        key_of: Callable[[CloudEvent], str] = lambda event: event.subject,
    ):
        self.collection = collection
        self.sequence_field = sequence_field
        self.key_of = key_of

    def apply(
        self,
        repository: "Repository",
        event: CloudEvent,
        fields: Mapping[str, Any] | None = None,
        then: Callable[["UnitOfWork"], None] | None = None,
    ) -> bool:
        """Keep `fields` of the aggregate as `event` left it, its sequence, and run
        `then` (what else the event changes in the consumer), all in one unit of work
        with the events they publish, if `event` is the next one of its aggregate.
        Returns whether it was applied: False for a duplicate, which changes nothing."""
        key = {"_id": self.key_of(event)}
        deadline = time.monotonic() + APPLY_WAIT_SECONDS

        def work(unit: "UnitOfWork") -> bool:
            # Called again after each write conflict; past the deadline, give up (the
            # transaction is aborted properly) and hold the event back.
            if time.monotonic() > deadline:
                raise EventBlocked(
                    f"{event.type} {event.subject} sequence {event.sequence}: "
                    f"still conflicting after {APPLY_WAIT_SECONDS} s"
                )
            current = self.collection.find_one(key, {self.sequence_field: 1}, session=unit.session)
            if not is_next(event, current[self.sequence_field] if current else 0):
                return False
            # A concurrent delivery of the same event writes this document too: only
            # one of the two commits; the other, tried again, finds the event applied.
            self.collection.update_one(
                key,
                {"$set": {**(fields or {}), self.sequence_field: event.sequence}},
                upsert=True,
                session=unit.session,
            )
            if then is not None:
                then(unit)
            return True

        applied = repository.unit_of_work(work)
        crash_point("after_apply")
        if not applied:
            log.info(
                "%s %s sequence %d was applied before; skipped (event %s)",
                event.type,
                event.subject,
                event.sequence,
                event.id,
            )
        return applied


class DeadLetteringQueueConsumer(QueueConsumer):
    """The registry's queue consumer, except that a message it cannot even decode (not JSON,
    a foreign content type) is dead-lettered with the reason, instead of the exception
    stopping the consumer for every message behind it."""

    @property
    def accept(self):
        return messaging.EVENT_CONTENT_TYPES

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = lambda message, exc, p=provider: p.dead_letter(
                message, f"undecodable message: {exc!r}"
            )
        return consumers


class CloudEventHandler(EventHandler):
    """nameko's event handler on a quorum queue with a delivery limit and a
    dead-letter exchange. A message whose handler raised is tried again (never
    dropped); after DELIVERY_LIMIT failures, or at once when it is not a valid
    CloudEvent, it is dead-lettered with the error. An event that cannot be applied
    yet is held back without counting as a failure. An event that the source
    service's broker user did not publish is dead-lettered before any handler sees it:
    whoever else can publish on the broker cannot forge a service's facts."""

    queue_consumer = DeadLetteringQueueConsumer()

    def __init__(self, source_service: str, pattern: str, queue_name: str | None = None, **kwargs):
        self.pattern = pattern
        self.queue_name = queue_name
        # An early event is expected: nameko logs it as such (shared.refusals: one line).
        kwargs.setdefault("expected_exceptions", EventNotYetApplicable)
        super().__init__(source_service, pattern, requeue_on_error=True, **kwargs)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is not None and issubclass(exc_info[0], EventNotYetApplicable):
            # Sent back at once, an early event would come round again within
            # milliseconds; pausing first gives its predecessor time to arrive.
            eventlet.sleep(EARLY_EVENT_PAUSE_SECONDS)
        return super().handle_result(message, worker_ctx, result, exc_info)

    def handle_message(self, body, message):
        publisher = publisher_of(message, self.forwarders)
        if publisher != self.producer:
            return self.dead_letter(
                message,
                f"not published by the {self.source_service} service: broker user "
                f"{publisher or '(none given)'}, expected {self.producer}",
            )
        if broker_returns(message) >= messaging.RETURNS_BEFORE_REFRESH:
            return self.refresh(message)
        return super().handle_message(body, message)

    def refresh(self, message) -> None:
        """Send a message its consumers kept stopping on to the tail of its queue as a
        fresh copy, before the broker's delivery limit dead-letters a healthy message for
        other messages' crashes; dead-letter it once its returns in all reach RETURN_LIMIT."""
        returns = returns_in_all(message)
        if returns >= messaging.RETURN_LIMIT:
            return self.dead_letter(
                message,
                f"returned {returns} times by consumers that stopped while holding it; "
                "it may be what stops them",
            )
        log.warning(
            "a message of %s came back %d times from consumers that stopped holding it; "
            "sending it to the tail of the queue",
            self.queue.name,
            broker_returns(message),
        )
        self.try_again(message, {RETURNS_HEADER: returns})

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            return super().handle_message_processed(message, result, exc_info)
        error_type, error = exc_info[0], exc_info[1]
        if issubclass(error_type, EventNotYetApplicable):
            return self.hold_back(message, f"{error_type.__name__}: {error}")
        final = (
            issubclass(error_type, InvalidCloudEvent)
            or delivery_attempts(message) >= messaging.DELIVERY_LIMIT
        )
        if not final:
            attempts = delivery_attempts(message)
            log.warning(
                "trying a message from %s again after %d failure(s) of its handler: %s: %s",
                self.queue.name,
                attempts,
                error_type.__name__,
                error,
            )
            return self.try_again(message, {FAILURES_HEADER: attempts})
        self.dead_letter(message, f"{error_type.__name__}: {error}")

    def try_again(self, message, headers: dict) -> None:
        """Send `message` to the tail of its queue as a new message carrying `headers`
        (acking this one once the broker confirmed the copy), not requeue it: a requeue
        counts against the broker's delivery limit, which a copy starts afresh."""
        try:
            requeue_copy(
                self.container.config["AMQP_URI"],
                message,
                self.queue.name,
                headers,
                self.forwarders,
            )
        except Exception:
            log.exception("could not send the message back; requeueing it")
            return self.queue_consumer.requeue_message(message)
        self.queue_consumer.ack_message(message)

    def hold_back(self, message, error: str) -> None:
        """Send an event that cannot be applied yet to the tail of its queue as a new
        message (acking this one once the broker confirmed the copy); dead-letter it
        once it has waited EARLY_EVENT_LIMIT_SECONDS."""
        since = float((message.headers or {}).get(EARLY_SINCE_HEADER) or time.time())
        if time.time() - since > EARLY_EVENT_LIMIT_SECONDS:
            return self.dead_letter(message, f"{error} (waited {time.time() - since:.0f} s)")
        self.try_again(message, {EARLY_SINCE_HEADER: since})

    def dead_letter(self, message, error: str) -> None:
        """Move `message` to the dead-letter queue with `error`; if even that fails,
        reject it so the broker dead-letters it (without our error text)."""
        log.error("dead-lettering a message from %s: %s", self.queue.name, error)
        try:
            dead_letter(
                self.container.config["AMQP_URI"], message, self.queue.name, error, self.forwarders
            )
        except Exception:
            log.exception("could not publish the dead letter; rejecting it to the broker")
            try:
                message.reject(requeue=False)
            except BROKER_GONE:
                log.warning("could not reject it either; the broker will deliver it again")
            return
        self.queue_consumer.ack_message(message)

    def setup(self):
        super().setup()
        name = self.queue_name or (f"{self.container.service_name}.{self.method_name}")
        self.queue = messaging.consumer_queue(name, self.source_service, self.pattern)
        settings = Settings.from_config(self.container.config)
        self.producer = settings.broker_user_of(self.source_service)
        # Copies of an event come back from this service itself (to the tail of its
        # queue) or from ops (out of the dead letters); they say who published it.
        self.forwarders = {
            broker_user(self.container.config["AMQP_URI"]),
            settings.broker_user_of(messaging.OPS),
        }
        self._declare_dead_letter_path()

    def _declare_dead_letter_path(self):
        # Dead-lettered messages to an undeclared exchange would be dropped silently.
        from kombu import Connection

        with Connection(self.container.config["AMQP_URI"]) as connection:
            channel = connection.channel()
            messaging.dead_letter_exchange()(channel).declare()
            messaging.dead_letter_queue()(channel).declare()


def problems_of(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
        for e in error.errors(include_url=False)
    )


def parse_cloud_event(body) -> CloudEvent:
    try:
        event = CloudEvent.model_validate(body)
    except ValidationError as error:
        raise InvalidCloudEvent(f"not a valid CloudEvent: {problems_of(error)}") from None
    if event.routing_key not in EVENT_TYPES:
        raise InvalidCloudEvent(f"unknown event type {event.type}")
    return event


def when_in_order(apply: Callable[[], T]) -> T:
    """Run `apply`, retrying it for a moment while it finds its event early: in a burst
    of events of one aggregate, the predecessor is usually being applied by another
    worker right then. After that it is held back (CloudEventHandler.hold_back)."""
    deadline = time.monotonic() + EARLY_EVENT_PATIENCE_SECONDS
    while True:
        try:
            return apply()
        except EventOutOfOrder:
            if time.monotonic() >= deadline:
                raise
            eventlet.sleep(EARLY_EVENT_RETRY_SECONDS)


def payload_of(subscription: Subscription, event: CloudEvent) -> BaseModel:
    """The event's `data` as its producer's contract declares it; an event the contract
    does not accept can never be applied, so it is dead-lettered at once."""
    try:
        return subscription.payload_of(event.routing_key, event.data)
    except PayloadRefused as error:
        raise InvalidCloudEvent(str(error)) from None
    except ValidationError as error:
        raise InvalidCloudEvent(
            f"{event.type} {event.id}: data breaks {subscription.source}'s contract: "
            + problems_of(error)
        ) from None


def cloud_event_handler(
    subscription: Subscription, entrypoint: type[CloudEventHandler] = CloudEventHandler
):
    """Decorate `method(self, event: CloudEvent, payload)`, the consumer of
    `subscription` (its queue, bound with its pattern to its source's exchange): the
    message body is validated as a CloudEvent of a known type, and its data as the
    producer's payload model of that type, before the method sees it; an invalid one is
    dead-lettered at once instead of reaching domain code. `entrypoint`: a subclass that
    consumes from another queue (the search service's per-instance ones)."""

    def decorator(method):
        @wraps(method)
        def handle(self, body):
            event = parse_cloud_event(body)
            if event.correlationid:
                # The rest of this worker logs under the id of the request behind the event.
                current_correlation_id.set(event.correlationid)
            payload = payload_of(subscription, event)
            return when_in_order(lambda: method(self, event, payload))

        return entrypoint.decorator(subscription.source, subscription.pattern, subscription.queue)(
            handle
        )

    return decorator


class EventLog:
    """Every event a service published, as consumed back from its catch-all queue:
    the audit trail and the source for replays."""

    COLLECTION = "event_log"

    def __init__(self, db: Database):
        self.records = db[self.COLLECTION]

    def keep(self, event: CloudEvent) -> None:
        self.records.update_one(
            {"_id": event.id},
            {"$setOnInsert": {**event.wire(), "logged_at": datetime.now(UTC)}},
            upsert=True,
        )


def event_log_handler(service: str):
    """Decorate `method(self, event: CloudEvent)`, the consumer of a publishing service's
    own catch-all queue: every valid CloudEvent it published, whatever its data."""

    def decorator(method):
        @wraps(method)
        def handle(self, body):
            return method(self, parse_cloud_event(body))

        queue = messaging.event_log_queue(service).name
        return CloudEventHandler.decorator(service, "#", queue)(handle)

    return decorator
