"""The consuming side: events arrive as CloudEvents, each applied at most once
(inbox keyed by event id, written in the same transaction as the effect) and, per
aggregate, in `sequence` order. A handler that fails has its message requeued,
never acknowledged-and-dropped; after the delivery limit it is dead-lettered."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps

from nameko.events import EventHandler
from pymongo.client_session import ClientSession
from pymongo.database import Database

from shared import messaging
from shared.envelope import CloudEvent

log = logging.getLogger(__name__)


class EventOutOfOrder(Exception):
    """An event arrived before its predecessor; it is requeued until the gap fills."""


class Inbox:
    COLLECTION = "inbox"

    def __init__(self, db: Database):
        self.records = db[self.COLLECTION]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        # `_id` is the event id: the unique index that makes applying idempotent.
        db[cls.COLLECTION].create_index("subject")

    def seen(self, event: CloudEvent, session: ClientSession) -> bool:
        return self.records.find_one({"_id": event.id}, {"_id": 1}, session=session) is not None

    def record(self, event: CloudEvent, session: ClientSession) -> None:
        """Insert the event id; a concurrent duplicate fails the whole transaction."""
        self.records.insert_one(
            {
                "_id": event.id,
                "type": event.type,
                "subject": event.subject,
                "sequence": event.sequence,
                "applied_at": datetime.now(UTC),
            },
            session=session,
        )


def check_order(event: CloudEvent, last_applied: int) -> bool:
    """True when `event` is the next one to apply for its aggregate, False for a stale
    duplicate; raises EventOutOfOrder when it arrived early."""
    if event.sequence <= last_applied:
        return False
    if event.sequence > last_applied + 1:
        raise EventOutOfOrder(
            f"{event.type} {event.subject} sequence {event.sequence} "
            f"arrived before {last_applied + 1}"
        )
    return True


def apply_once(repository, event: CloudEvent, effect: Callable[[ClientSession], None]) -> bool:
    """Run `effect` and record the event in the inbox in one transaction, unless it
    was applied before. Returns whether the effect ran."""
    inbox = Inbox(repository.db)

    def work(session: ClientSession) -> bool:
        if inbox.seen(event, session):
            return False
        effect(session)
        inbox.record(event, session)
        return True

    applied = repository.transaction(work)
    if not applied:
        log.info("event %s (%s) was applied before; skipped", event.id, event.type)
    return applied


class CloudEventHandler(EventHandler):
    """nameko's event handler on a quorum queue with a delivery limit and a
    dead-letter exchange, requeueing (never dropping) a message whose handler raised."""

    def __init__(self, source_service: str, pattern: str, queue_name: str | None = None, **kwargs):
        self.pattern = pattern
        self.queue_name = queue_name
        super().__init__(source_service, pattern, requeue_on_error=True, **kwargs)

    def setup(self):
        super().setup()
        name = self.queue_name or (f"{self.container.service_name}.{self.method_name}")
        self.queue = messaging.consumer_queue(name, self.source_service, self.pattern)
        self._declare_dead_letter_path()

    def _declare_dead_letter_path(self):
        # Dead-lettered messages to an undeclared exchange would be dropped silently.
        from kombu import Connection

        with Connection(self.container.config["AMQP_URI"]) as connection:
            channel = connection.channel()
            messaging.dead_letter_exchange()(channel).declare()
            messaging.dead_letter_queue()(channel).declare()


def cloud_event_handler(source_service: str, pattern: str, queue_name: str | None = None):
    """Decorate `method(self, event: CloudEvent)`: the message body is validated as a
    CloudEvent before the method sees it; an invalid one fails (and is retried, then
    dead-lettered) instead of reaching domain code."""

    def decorator(method):
        @wraps(method)
        def handle(self, body):
            return method(self, CloudEvent.model_validate(body))

        return CloudEventHandler.decorator(source_service, pattern, queue_name)(handle)

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
    """The entrypoint a publishing service declares to consume its own catch-all queue."""
    return cloud_event_handler(service, "#", queue_name=messaging.event_log_queue(service).name)
