"""Transactional outbox: an event is written in the same MongoDB transaction as the
state change it describes, and a relay publishes it afterwards with publisher
confirms and `mandatory`, marking it sent only once the broker has confirmed.

A crash between commit and publish leaves the record pending; the next relay pass
(this process after restart, or another instance) publishes it. A crash between
confirm and marking leaves it pending too, so it is published again: delivery is at
least once, and consumers dedupe by event id (see shared.inbox).
"""

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kombu import Exchange
from nameko.amqp.publish import Publisher, UndeliverableMessage
from pymongo import ASCENDING, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.database import Database

from shared import messaging
from shared.background import BackgroundLoop
from shared.envelope import CloudEvent
from shared.faults import crash_point

log = logging.getLogger(__name__)

PENDING, SENT = "pending", "sent"
# How long a relay may hold a claimed record before another relay may take it over.
LEASE = timedelta(seconds=10)
# After a failed publish the record waits this long before the next attempt.
RETRY_AFTER = timedelta(seconds=2)
# Records published per pass before the relay checks whether it should stop.
RELAY_BATCH = 500
# How long a record waits, before it is looked at again, while an earlier event of its
# aggregate is still pending (in flight at another relay, or leased by one that died).
WAIT_FOR_PREDECESSOR = timedelta(milliseconds=300)


class Outbox:
    COLLECTION = "outbox"

    def __init__(self, db: Database):
        self.records = db[self.COLLECTION]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[cls.COLLECTION].create_index(
            [("status", ASCENDING), ("available_at", ASCENDING), ("created_at", ASCENDING)]
        )
        db[cls.COLLECTION].create_index([("subject", ASCENDING), ("sequence", ASCENDING)])

    def add(self, event: CloudEvent, session: ClientSession) -> None:
        """Record `event` for publication, inside the caller's transaction."""
        now = datetime.now(UTC)
        self.records.insert_one(
            {
                "_id": event.id,
                "routing_key": event.routing_key,
                "subject": event.subject,
                "sequence": event.sequence,
                "envelope": event.wire(),
                "status": PENDING,
                "created_at": now,
                "available_at": now,
                "attempts": 0,
            },
            session=session,
        )

    def pending_count(self) -> int:
        return self.records.count_documents({"status": PENDING})


class Relay:
    """Publishes pending outbox records, oldest first. Claims each record with an
    atomic lease, so several instances of a service never publish the same record
    at the same time. Per aggregate, a record is published only once every earlier
    one is sent: consumers apply in `sequence` order, and a successor that overtook
    a predecessor (held by a relay that crashed, until its lease ends) would only
    wait in their queues until the delivery limit dead-lettered it."""

    def __init__(self, db: Database, publish: Callable[[CloudEvent], None], owner: str):
        self.outbox = Outbox(db)
        self.publish = publish
        self.owner = owner
        self.published = 0
        self.unroutable = 0
        self.failures = 0
        self.held_back = 0

    def _claim_next(self) -> dict | None:
        now = datetime.now(UTC)
        return self.outbox.records.find_one_and_update(
            {"status": PENDING, "available_at": {"$lte": now}},
            {
                "$set": {"available_at": now + LEASE, "lease_owner": self.owner},
                "$inc": {"attempts": 1},
            },
            sort=[("created_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    def _predecessor_pending(self, record: dict) -> bool:
        earlier = {
            "subject": record["subject"],
            "sequence": {"$lt": record["sequence"]},
            "status": PENDING,
        }
        return self.outbox.records.find_one(earlier, {"_id": 1}) is not None

    def _hold_back(self, record: dict) -> None:
        """Give the claim back (not an attempt) and look again shortly."""
        self.outbox.records.update_one(
            {"_id": record["_id"], "lease_owner": self.owner},
            {
                "$set": {"available_at": datetime.now(UTC) + WAIT_FOR_PREDECESSOR},
                "$unset": {"lease_owner": ""},
                "$inc": {"attempts": -1},
            },
        )

    def _postpone(self, record: dict, error: str) -> None:
        self.outbox.records.update_one(
            {"_id": record["_id"], "lease_owner": self.owner},
            {"$set": {"available_at": datetime.now(UTC) + RETRY_AFTER, "last_error": error}},
        )

    def relay_pending(self, limit: int | None = None) -> int:
        """Publish up to `limit` due records; returns how many were confirmed. Stops at
        the first broker failure, leaving the record pending for a later pass."""
        limit = limit or RELAY_BATCH
        sent = 0
        while sent < limit:
            record = self._claim_next()
            if record is None:
                break
            if self._predecessor_pending(record):
                self.held_back += 1
                self._hold_back(record)
                continue
            event = CloudEvent.model_validate(record["envelope"])
            try:
                self.publish(event)
            except UndeliverableMessage:
                # No queue bound for this routing key: misconfiguration, not success.
                self.unroutable += 1
                log.error("event %s (%s) is unroutable; kept pending", event.id, event.type)
                self._postpone(record, "unroutable: no queue bound for " + event.routing_key)
                continue
            except Exception as error:  # broker down, connection lost: try later
                self.failures += 1
                log.warning("publishing event %s failed: %r; kept pending", event.id, error)
                self._postpone(record, repr(error))
                break
            crash_point("after_confirm")
            self.outbox.records.update_one(
                {"_id": record["_id"]},
                {
                    "$set": {"status": SENT, "sent_at": datetime.now(UTC)},
                    "$unset": {"lease_owner": ""},
                },
            )
            self.published += 1
            sent += 1
        return sent


def event_publisher(amqp_uri: str, service: str) -> Callable[[CloudEvent], None]:
    """Publish one event to `<service>.events`, persistent, waiting for the broker's
    confirm; raises UndeliverableMessage when no queue is bound for it."""
    exchange: Exchange = messaging.events_exchange(service)
    publisher = Publisher(
        amqp_uri,
        use_confirms=True,
        mandatory=True,
        delivery_mode=2,
        serializer="json",
        declare=messaging.publisher_topology(service),
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.5, "interval_step": 0.5},
    )

    def publish(event: CloudEvent) -> None:
        publisher.publish(
            event.wire(),
            exchange=exchange,
            routing_key=event.routing_key,
            message_id=event.id,
            type=event.type,
        )

    return publish


class OutboxRelay(BackgroundLoop):
    """Runs a Relay in the background of a service container."""

    identifier = "outbox-relay"

    def configure(self, settings):
        self.publish = event_publisher(settings.amqp_uri, self.container.service_name)

    def begin(self, store):
        self.relay = Relay(store.db, self.publish, self.owner)

    def work(self) -> bool:
        return self.relay.relay_pending() == RELAY_BATCH

    def get_dependency(self, worker_ctx):
        return self.relay
