"""Transactional outbox: an event is written in the same MongoDB transaction as the
state change it describes, and a relay publishes it afterwards with publisher
confirms and `mandatory`, marking it sent only once the broker has confirmed.

A crash between commit and publish leaves the record pending; the next relay pass
(this process after restart, or another instance) publishes it. A crash between
confirm and marking leaves it pending too, so it is published again: delivery is at
least once, and consumers dedupe by event id (see shared.inbox).
"""

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kombu import Exchange
from nameko.amqp.publish import Publisher, UndeliverableMessage
from pymongo import ASCENDING
from pymongo.client_session import ClientSession
from pymongo.database import Database

from shared import messaging
from shared.background import BackgroundLoop
from shared.dead_letters import broker_user
from shared.envelope import CloudEvent
from shared.faults import crash_point
from shared.logs import correlated

log = logging.getLogger(__name__)

PENDING, SENT = "pending", "sent"
# How long a relay may hold a claimed record before another relay may take it over.
LEASE = timedelta(seconds=10)
# After a failed publish the record waits this long before the next attempt.
RETRY_AFTER = timedelta(seconds=2)
# Records published per pass before the relay checks whether it should stop.
RELAY_BATCH = 500
# Records claimed (and marked sent) with one write each; published well within LEASE.
CLAIM_BATCH = 50
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
        db[cls.COLLECTION].create_index("claim", sparse=True)

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
    """Publishes pending outbox records, oldest first, a batch at a time: one write
    claims a batch with a lease, one marks the confirmed records sent, so the database's
    write latency is paid per batch and not per event. The claim is atomic per record,
    so several instances of a service never publish the same record at the same time.
    Per aggregate, a record is published only once every earlier one is sent: consumers
    apply in `sequence` order, and a successor that overtook a predecessor (held by a
    relay that crashed, until its lease ends) would only wait in their queues."""

    def __init__(self, db: Database, publish: Callable[[CloudEvent], None], owner: str):
        self.outbox = Outbox(db)
        self.publish = publish
        self.owner = owner
        self.published = 0
        self.unroutable = 0
        self.failures = 0
        self.held_back = 0

    def _claim_batch(self) -> tuple[str, list[dict]]:
        records = self.outbox.records
        claim = uuid.uuid4().hex
        while True:
            now = datetime.now(UTC)
            due = {"status": PENDING, "available_at": {"$lte": now}}
            oldest = records.find(due, {"_id": 1}).sort("created_at", ASCENDING)
            ids = [record["_id"] for record in oldest.limit(CLAIM_BATCH)]
            if not ids:
                return claim, []
            # Each record is updated atomically: one another relay claimed meanwhile
            # has a later `available_at` and no longer matches.
            claimed = records.update_many(
                {**due, "_id": {"$in": ids}},
                {
                    "$set": {
                        "available_at": now + LEASE,
                        "lease_owner": self.owner,
                        "claim": claim,
                    },
                    "$inc": {"attempts": 1},
                },
            )
            if claimed.modified_count:  # else another relay took them all: look again
                return claim, list(records.find({"claim": claim}).sort("created_at", ASCENDING))

    def _subjects_waiting(self, claim: str, batch: list[dict]) -> set[str]:
        """Subjects of the batch with an earlier record still pending outside it."""
        first: dict[str, int] = {}
        for record in batch:
            first.setdefault(record["subject"], record["sequence"])
        earlier = [
            {"subject": subject, "sequence": {"$lt": sequence}}
            for subject, sequence in first.items()
        ]
        pending = self.outbox.records.find(
            {"status": PENDING, "claim": {"$ne": claim}, "$or": earlier}, {"subject": 1}
        )
        return {record["subject"] for record in pending}

    def _release(self, claim: str, ids: list[str], error: str | None = None) -> None:
        """Give claimed records back: after a failed publish (`error`) in RETRY_AFTER;
        otherwise (not attempted) shortly, and not counted as an attempt."""
        if not ids:
            return
        update: dict[str, dict[str, Any]] = {"$unset": {"lease_owner": "", "claim": ""}}
        if error is None:
            update["$set"] = {"available_at": datetime.now(UTC) + WAIT_FOR_PREDECESSOR}
            update["$inc"] = {"attempts": -1}
        else:
            update["$set"] = {"available_at": datetime.now(UTC) + RETRY_AFTER, "last_error": error}
        self.outbox.records.update_many({"_id": {"$in": ids}, "claim": claim}, update)

    def _mark_sent(self, claim: str, ids: list[str]) -> None:
        if ids:
            self.outbox.records.update_many(
                {"_id": {"$in": ids}, "claim": claim},
                {
                    "$set": {"status": SENT, "sent_at": datetime.now(UTC)},
                    "$unset": {"lease_owner": "", "claim": ""},
                },
            )

    def relay_pending(self, limit: int | None = None) -> int:
        """Publish up to `limit` due records (in whole batches); returns how many were
        confirmed. Stops at the first broker failure, leaving the record pending for a
        later pass."""
        limit = limit or RELAY_BATCH
        sent = 0
        while sent < limit:
            claim, batch = self._claim_batch()
            if not batch:
                break
            confirmed, broker_down = self._publish_batch(claim, batch)
            sent += confirmed
            if broker_down:
                break
        return sent

    def _publish_batch(self, claim: str, batch: list[dict]) -> tuple[int, bool]:
        """Publish a claimed batch in order; returns how many were confirmed and
        whether the broker failed."""
        stopped = self._subjects_waiting(claim, batch)  # no record of these goes out
        confirmed, not_attempted, broker_down = [], [], False
        for position, record in enumerate(batch):
            if record["subject"] in stopped:
                self.held_back += 1
                not_attempted.append(record["_id"])
                continue
            event = CloudEvent.model_validate(record["envelope"])
            with correlated(event.correlationid):
                try:
                    self.publish(event)
                except UndeliverableMessage:
                    # No queue bound for this routing key: misconfiguration, not success.
                    self.unroutable += 1
                    log.error("event %s (%s) is unroutable; kept pending", event.id, event.type)
                    self._release(
                        claim,
                        [record["_id"]],
                        "unroutable: no queue bound for " + event.routing_key,
                    )
                    stopped.add(record["subject"])
                    continue
                except Exception as error:  # broker down, connection lost: try later
                    self.failures += 1
                    broker_down = True
                    log.warning("publishing event %s failed: %r; kept pending", event.id, error)
                    self._release(claim, [record["_id"]], repr(error))
                    not_attempted += [later["_id"] for later in batch[position + 1 :]]
                    break
            crash_point("after_confirm")
            confirmed.append(record["_id"])
        # Only confirmed records are marked sent; a crash before this line publishes
        # them again (consumers dedupe by event id).
        self._mark_sent(claim, confirmed)
        self._release(claim, not_attempted)
        self.published += len(confirmed)
        return len(confirmed), broker_down


def event_publisher(amqp_uri: str, service: str) -> Callable[[CloudEvent], None]:
    """Publish one event to `<service>.events` in CloudEvents' structured mode,
    persistent, waiting for the broker's confirm; raises UndeliverableMessage when no
    queue is bound for it. It carries the connection's user as `user_id`, which the
    broker checks and consumers trust."""
    exchange: Exchange = messaging.events_exchange(service)
    user = broker_user(amqp_uri)
    publisher = Publisher(
        amqp_uri,
        use_confirms=True,
        mandatory=True,
        delivery_mode=2,
        serializer=messaging.CLOUDEVENTS_SERIALIZER,
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
            user_id=user,
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
