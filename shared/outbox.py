"""Transactional outbox: an event is written in the same MongoDB transaction as the
state change it describes, and a relay publishes it afterwards with publisher
confirms and `mandatory`, marking it sent only once the broker has confirmed.

A crash between commit and publish leaves the record pending; the next relay pass
(this process after restart, or another instance) publishes it. A crash between
confirm and marking leaves it pending too, so it is published again: delivery is at
least once, and consumers skip what they applied before by the aggregate's
`sequence` (see shared.inbox).

Every query here selects by equality or `$in` on an index: the embedded database
answers a range or an unfiltered sort by scanning the whole collection, and the
collection holds the sent records of the retention period besides the few pending.
"""

import contextlib
import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kombu import Connection, Exchange, Producer
from nameko.amqp.publish import UndeliverableMessage
from pymongo.client_session import ClientSession
from pymongo.database import Database

from shared import messaging
from shared.background import BackgroundLoop
from shared.dead_letters import broker_user
from shared.envelope import CloudEvent
from shared.faults import crash_point
from shared.logs import correlated
from shared.pruning import PRUNE_HOUR, Pruning, due_hour

log = logging.getLogger(__name__)

PENDING, SENT = "pending", "sent"
# How long a relay may hold a claimed record before another relay may take it over.
LEASE = timedelta(seconds=10)
# After a failed publish the record waits this long before the next attempt.
RETRY_AFTER = timedelta(seconds=2)
# Records published per pass before the relay checks whether it should stop.
RELAY_BATCH = 1000
# Records claimed (and marked sent) with one write each, and published pipelined on one
# channel: the database's and the broker's round trips are paid per batch, not per event.
CLAIM_BATCH = 200
# Pending records a relay reads whole at a look (the rest only to keep aggregates' order):
# what it holds in memory, however long the backlog.
LOOK_AHEAD = 5000
# How long a record waits, before it is looked at again, while an earlier event of its
# aggregate is still pending (in flight at another relay, or leased by one that died).
WAIT_FOR_PREDECESSOR = timedelta(milliseconds=300)
# How long the broker may take to confirm a batch before the relay gives up on the
# connection (well within LEASE, so that no other relay takes the batch over meanwhile).
CONFIRM_TIMEOUT_SECONDS = 5.0
# Sent records are kept this long, then deleted (shared.pruning): the event log (each
# service's catch-all queue, consumed into its log) is the audit trail, so the outbox
# only keeps what helps to look into a recent delivery.
RETENTION = timedelta(hours=24)


class Outbox:
    COLLECTION = "outbox"

    def __init__(self, db: Database):
        self.records = db[self.COLLECTION]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[cls.COLLECTION].create_index("status")
        db[cls.COLLECTION].create_index("claim", sparse=True)
        Pruning.ensure_index(db[cls.COLLECTION])

    def add(self, event: CloudEvent, session: ClientSession) -> None:
        """Record `event` for publication, inside the caller's transaction."""
        now = datetime.now(UTC)
        self.records.insert_one(
            {
                "_id": event.id,
                "routing_key": event.routing_key,
                "subject": event.subject,
                "sequence": event.sequence,
                # As published: stored and read as one string, not a document to walk.
                "envelope": event.model_dump_json(exclude_none=True),
                "status": PENDING,
                "created_at": now,
                "available_at": now,
                "claim": None,
                "attempts": 0,
            },
            session=session,
        )

    def pending_count(self) -> int:
        return self.records.count_documents({"status": PENDING})


# This process's relays by database name: a commit that wrote outbox records wakes them
# at once (relays of other processes find the records on their periodic pass).
_relays_to_wake: dict[str, set[Callable[[], None]]] = defaultdict(set)


def wake_relays(db: Database) -> None:
    """Called after a transaction that wrote outbox records to `db` committed."""
    for wake in list(_relays_to_wake[db.name]):
        wake()


def _event_of(record: dict) -> CloudEvent:
    envelope = record["envelope"]
    if isinstance(envelope, dict):  # written before envelopes were stored as JSON
        return CloudEvent.model_validate(envelope)
    return CloudEvent.model_validate_json(envelope)


def publication(event: CloudEvent, user: str) -> dict[str, Any]:
    """How an event goes out: to its routing key, `mandatory` (no queue bound is a
    misconfiguration, not success), persistent, in CloudEvents' structured mode, with
    its id and type as AMQP properties and the publishing connection's user as
    `user_id`, which the broker checks and consumers trust."""
    return {
        "routing_key": event.routing_key,
        "mandatory": True,
        "delivery_mode": 2,
        "serializer": messaging.CLOUDEVENTS_SERIALIZER,
        "message_id": event.id,
        "type": event.type,
        "user_id": user,
    }


class Unroutable(UndeliverableMessage):
    """The broker returned the event: no queue is bound for its routing key."""


@dataclass
class BatchOutcome:
    """What the broker made of a batch: ids confirmed, ids returned as unroutable (with
    why), and the failure that left the rest unconfirmed (None when none)."""

    confirmed: list[str] = field(default_factory=list)
    unroutable: dict[str, str] = field(default_factory=dict)
    failure: Exception | None = None


class EventPublisher:
    """Publishes events to one exchange in CloudEvents' structured mode, persistent and
    `mandatory`, on one long-lived channel in confirm mode: a batch is sent pipelined
    and its confirms are awaited together. The topology is declared once per
    connection; after a failure the next batch connects afresh. Events carry the
    connection's user as `user_id`, which the broker checks and consumers trust."""

    def __init__(self, amqp_uri: str, exchange: Exchange, declare: Iterable):
        self.amqp_uri = amqp_uri
        self.exchange = exchange
        self.declare = list(declare)
        self.user = broker_user(amqp_uri)
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._lock = threading.Lock()  # one batch on the channel at a time
        # Of the batch in flight: delivery tag -> event id, and what the broker said.
        self._in_flight: dict[int, str] = {}
        self._next_tag = 1
        self._outcome = BatchOutcome()

    def __call__(self, event: CloudEvent) -> None:
        """Publish one event and wait for its confirm; raises Unroutable when no queue
        is bound for it, or the broker's error."""
        outcome = self.publish_batch([event])
        if outcome.unroutable:
            raise Unroutable(outcome.unroutable[event.id])
        if outcome.failure is not None:
            raise outcome.failure

    def publish_batch(self, events: list[CloudEvent]) -> BatchOutcome:
        """Publish `events` in order, then wait until the broker confirmed (or
        returned) every one of them. A kept connection that turns out to be gone (the
        broker restarted, or dropped it while idle) before anything was confirmed is
        replaced, and the batch sent once more on the new one."""
        with self._lock:
            while True:
                kept = self._producer is not None
                self._outcome = BatchOutcome()
                try:
                    producer = self._channel()
                    for event in events:
                        self._in_flight[self._next_tag] = event.id
                        self._next_tag += 1
                        producer.publish(event.wire(), **publication(event, self.user))
                    self._await_confirms()
                    if self._outcome.failure is not None:
                        # Nacked: on a cluster, a quorum queue whose leader's node just
                        # died refuses it, and the channel that saw that may keep
                        # refusing; the next batch gets a fresh one.
                        self.close()
                except Exception as error:  # broker down, connection lost, no confirm in time
                    self.close()
                    settled = self._outcome.confirmed or self._outcome.unroutable
                    # Not after a timeout: the batch may yet be confirmed on that connection.
                    if kept and not settled and not isinstance(error, TimeoutError):
                        log.info("the kept broker connection had gone (%r); reconnecting", error)
                        continue
                    self._outcome.failure = error
                return self._outcome

    def _channel(self) -> Producer:
        if self._producer is None:
            connection = Connection(self.amqp_uri, connect_timeout=CONFIRM_TIMEOUT_SECONDS)
            channel = connection.channel()
            for entity in self.declare:
                entity(channel).declare()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
            self._connection, self._next_tag = connection, 1
            self._producer = Producer(channel, exchange=self.exchange, auto_declare=False)
        return self._producer

    def _await_confirms(self) -> None:
        assert self._connection is not None
        deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
        while self._in_flight:
            # Raises socket.timeout once the deadline has passed.
            self._connection.drain_events(timeout=max(deadline - time.monotonic(), 0.001))

    def _settled(self, delivery_tag: int, multiple: bool) -> list[str]:
        tags = [t for t in self._in_flight if t <= delivery_tag] if multiple else [delivery_tag]
        return [self._in_flight.pop(tag) for tag in tags if tag in self._in_flight]

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        # A returned message is acked too (after its return): it stays unroutable.
        self._outcome.confirmed += [
            event_id
            for event_id in self._settled(delivery_tag, multiple)
            if event_id not in self._outcome.unroutable
        ]

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        if self._settled(delivery_tag, multiple) and self._outcome.failure is None:
            self._outcome.failure = RuntimeError("the broker refused (nacked) a message")

    def _on_return(self, error, exchange, routing_key, message) -> None:
        event_id = message.properties.get("message_id")
        self._outcome.unroutable[event_id] = f"unroutable: no queue bound for {routing_key}"

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        self._in_flight.clear()
        if connection is not None:
            with contextlib.suppress(Exception):  # already broken: nothing left to close
                connection.release()


def event_publisher(amqp_uri: str, service: str) -> EventPublisher:
    """The publisher of `<service>.events`, declaring the topology its events need."""
    return EventPublisher(
        amqp_uri, messaging.events_exchange(service), messaging.publisher_topology(service)
    )


class PublishEach:
    """A batch publisher over a function that publishes one event (and raises
    UndeliverableMessage when no queue is bound for it): tests' stand-ins."""

    def __init__(self, publish: Callable[[CloudEvent], None]):
        self.publish = publish

    def publish_batch(self, events: list[CloudEvent]) -> BatchOutcome:
        outcome = BatchOutcome()
        for event in events:
            try:
                self.publish(event)
            except UndeliverableMessage as error:
                outcome.unroutable[event.id] = f"unroutable: {error}"
                continue
            except Exception as error:
                outcome.failure = error
                break
            outcome.confirmed.append(event.id)
        return outcome


class Relay:
    """Publishes pending outbox records, oldest first, a batch at a time: one write
    claims a batch with a lease, it is published pipelined, and one write marks the
    confirmed records sent. The claim is atomic per record (it holds only if the
    record's claim is still the one read), so several instances of a service never
    publish the same record at the same time.

    Per aggregate, a record is published only once every earlier one is sent: consumers
    apply in `sequence` order, and a successor that overtook a predecessor (held by a
    relay that crashed, until its lease ends) would only wait in their queues. The
    pending records are read by `status` alone (the pending few) and the aggregates'
    order is worked out from them; later records of an aggregate go out in a later wave
    of the same batch, once the broker confirmed the earlier ones."""

    def __init__(
        self,
        db: Database,
        publish: EventPublisher | PublishEach | Callable[[CloudEvent], None],
        owner: str,
    ):
        self.outbox = Outbox(db)
        self.publisher = publish if hasattr(publish, "publish_batch") else PublishEach(publish)
        self.owner = owner
        self.published = 0
        self.unroutable = 0
        self.failures = 0
        self.held_back = 0
        # Due records of the last look at the pending ones, oldest first, claimed from
        # the front; and the aggregates of which no more may go out until the next look
        # (a record failed, or another relay holds one).
        self._due: deque[dict] = deque()
        self._stopped: set[str] = set()

    def _look_at_pending(self) -> None:
        """Queue the due pending records, oldest first: of each aggregate, those before
        the first one not due (leased by another relay, or waiting for a retry). Only
        the first LOOK_AHEAD are kept whole; an aggregate's records from the first one
        beyond wait for the next look."""
        now = datetime.now(UTC)
        by_subject: dict[str, list[dict]] = defaultdict(list)
        for kept, record in enumerate(self.outbox.records.find({"status": PENDING})):
            if kept >= LOOK_AHEAD:
                del record["envelope"]
            by_subject[record["subject"]].append(record)
        due = []
        for records in by_subject.values():
            records.sort(key=lambda record: record["sequence"])
            for position, record in enumerate(records):
                if record["available_at"] > now:
                    self.held_back += sum(r["available_at"] <= now for r in records[position:])
                    break
                if "envelope" not in record:
                    break
                due.append(record)
        self._due = deque(sorted(due, key=lambda record: record["created_at"]))
        self._stopped = set()

    def _claim_batch(self) -> tuple[str, list[dict]]:
        """Claim the next due records; returns the claim and those of them to publish:
        of each aggregate, those up to the first one not claimed (another relay has it)."""
        claim = uuid.uuid4().hex
        looked = False
        while True:
            candidates: list[dict] = []
            while self._due and len(candidates) < CLAIM_BATCH:
                record = self._due.popleft()
                if record["subject"] not in self._stopped:
                    candidates.append(record)
            if not candidates:
                if looked:  # others claimed every record found due just now
                    return claim, []
                self._look_at_pending()
                looked = True
                continue
            # A record another relay claimed (or released, or marked sent) since it was
            # read has another claim now, and no longer matches. (Not by `status` too: the
            # database would then walk every pending record.)
            claimed = self.outbox.records.update_many(
                {
                    "_id": {"$in": [record["_id"] for record in candidates]},
                    "claim": {"$in": list({record.get("claim") for record in candidates})},
                },
                {
                    "$set": {
                        "available_at": datetime.now(UTC) + LEASE,
                        "lease_owner": self.owner,
                        "claim": claim,
                    },
                    "$inc": {"attempts": 1},
                },
            )
            if claimed.modified_count == len(candidates):
                return claim, candidates
            if not claimed.modified_count:  # others took them all: claim the next ones
                self._stopped.update(record["subject"] for record in candidates)
                continue
            mine = {r["_id"] for r in self.outbox.records.find({"claim": claim}, {"_id": 1})}
            batch, behind = [], []
            for record in sorted(candidates, key=lambda record: record["sequence"]):
                if record["_id"] not in mine:
                    self._stopped.add(record["subject"])
                elif record["subject"] in self._stopped:
                    behind.append(record["_id"])  # its predecessor is at another relay
                else:
                    batch.append(record)
            self.held_back += len(behind)
            self._release(claim, behind)
            return claim, sorted(batch, key=lambda record: record["created_at"])

    def _release(self, claim: str, ids: list[str], error: str | None = None) -> None:
        """Give claimed records back: after a failed publish (`error`) in RETRY_AFTER;
        otherwise (not attempted) shortly, and not counted as an attempt."""
        if not ids:
            return
        update: dict[str, dict[str, Any]] = {"$unset": {"lease_owner": ""}}
        if error is None:
            update["$set"] = {"available_at": datetime.now(UTC) + WAIT_FOR_PREDECESSOR}
            update["$inc"] = {"attempts": -1}
        else:
            update["$set"] = {"available_at": datetime.now(UTC) + RETRY_AFTER, "last_error": error}
        update["$set"]["claim"] = None
        self.outbox.records.update_many({"claim": claim, "_id": {"$in": ids}}, update)

    def _mark_sent(self, claim: str) -> None:
        """Mark the records still held by `claim` (those confirmed: the others were
        released) sent, found by their claim rather than one by one."""
        now = datetime.now(UTC)
        self.outbox.records.update_many(
            {"claim": claim},
            {
                "$set": {
                    "status": SENT,
                    "sent_at": now,
                    # The first hour in which the record is past its retention.
                    PRUNE_HOUR: due_hour(now + RETENTION),
                    # Not none: a claim matching unclaimed records never matches it.
                    "claim": SENT,
                },
                "$unset": {"lease_owner": ""},
            },
        )

    def relay_pending(self, limit: int | None = None) -> int:
        """Publish up to `limit` due records (in whole batches); returns how many were
        confirmed. Stops at the first broker failure, leaving the records pending for a
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
                self._due.clear()  # look again at the next pass
                break
        return sent

    def _publish_batch(self, claim: str, batch: list[dict]) -> tuple[int, bool]:
        """Publish a claimed batch in waves, each holding the earliest unpublished
        record of every aggregate in the batch; returns how many were confirmed and
        whether the broker failed."""
        by_subject: dict[str, list[dict]] = defaultdict(list)
        for record in sorted(batch, key=lambda record: record["sequence"]):
            by_subject[record["subject"]].append(record)
        confirmed: list[str] = []
        failed: dict[str, list[str]] = defaultdict(list)  # why -> ids, to retry later
        not_attempted: list[str] = []
        broker_down = False
        while by_subject and not broker_down:
            wave = [records.pop(0) for records in by_subject.values()]
            events = [_event_of(record) for record in wave]
            outcome = self.publisher.publish_batch(events)
            # The crash tests' point, once per confirmed event as when they went one by one.
            for _ in outcome.confirmed:
                crash_point("after_confirm")
            confirmed += outcome.confirmed
            for event in events:
                if error := outcome.unroutable.get(event.id):
                    # No queue bound for this routing key: misconfiguration, not success.
                    with correlated(event.correlationid):
                        log.error("event %s (%s) is unroutable; kept pending", event.id, event.type)
                    self.unroutable += 1
                    failed[error].append(event.id)
                    self._stopped.add(event.subject)
                    # Its aggregate's later records wait for it.
                    not_attempted += [record["_id"] for record in by_subject.pop(event.subject)]
            if outcome.failure is not None:  # broker down, connection lost: try later
                self.failures += 1
                broker_down = True
                unconfirmed = [
                    event.id
                    for event in events
                    if event.id not in outcome.confirmed and event.id not in outcome.unroutable
                ]
                log.warning(
                    "publishing %d event(s) failed: %r; kept pending",
                    len(unconfirmed),
                    outcome.failure,
                )
                failed[repr(outcome.failure)] += unconfirmed
            by_subject = {subject: records for subject, records in by_subject.items() if records}
        not_attempted += [record["_id"] for records in by_subject.values() for record in records]
        for error, ids in failed.items():
            self._release(claim, ids, error)
        self._release(claim, not_attempted)
        # Only confirmed records are marked sent; a crash before this line publishes
        # them again (consumers skip them by their sequence).
        if confirmed:
            self._mark_sent(claim)
        self.published += len(confirmed)
        return len(confirmed), broker_down


class OutboxRelay(BackgroundLoop):
    """Runs a Relay in the background of a service container, woken by every commit of
    this process that wrote outbox records."""

    identifier = "outbox-relay"

    def configure(self, settings):
        self.publisher = event_publisher(settings.amqp_uri, self.container.service_name)

    def begin(self, store):
        self.relay = Relay(store.db, self.publisher, self.owner)
        self.db_name = store.db.name
        _relays_to_wake[self.db_name].add(self.wake)

    def work(self) -> bool:
        return self.relay.relay_pending() >= RELAY_BATCH  # whole batches: it may pass it

    def stop(self):
        if hasattr(self, "db_name"):
            _relays_to_wake[self.db_name].discard(self.wake)
        super().stop()
        self.publisher.close()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self.relay
