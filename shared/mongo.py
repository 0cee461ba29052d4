"""MongoDB access: one client per service container, a repository per worker."""

import itertools
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import eventlet
from bson.codec_options import TypeCodec, TypeRegistry
from bson.decimal128 import Decimal128
from nameko.extensions import DependencyProvider
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.clock import utcnow
from shared.contract import EventPayload
from shared.envelope import CloudEvent, aggregate_event
from shared.errors import Conflict
from shared.faults import crash_point
from shared.outbox import Outbox, wake_relays
from shared.pruning import EVERY, PRUNE_HOUR, Pruning, due_hour
from shared.settings import Settings

log = logging.getLogger(__name__)

# Backoff between a transaction's tries after a write conflict (MongoDB drivers' spec,
# DRIVERS-1934): up to 5 ms x 1.5^(retry - 1), at most 500 ms, times a random jitter.
BACKOFF_FIRST_SECONDS = 0.005
BACKOFF_GROWTH = 1.5
BACKOFF_MOST_SECONDS = 0.5
# Retries after which a committed transaction is worth a line in the log (contention).
SLOW_TRANSACTION_RETRIES = 10


def transaction_backoff(retry: int, jitter: Callable[[], float] = random.random) -> float:
    """Seconds to wait before try `retry` + 1 of a transaction (retry >= 1)."""
    ceiling = BACKOFF_FIRST_SECONDS * BACKOFF_GROWTH ** (retry - 1)
    return jitter() * min(BACKOFF_MOST_SECONDS, ceiling)


T = TypeVar("T")


class DecimalCodec(TypeCodec):
    """Store Decimal as BSON Decimal128 and read it back as Decimal: money and
    equity stay exact all the way to disk and back."""

    python_type = Decimal
    bson_type = Decimal128

    def transform_python(self, value: Decimal) -> Decimal128:
        return Decimal128(value)

    def transform_bson(self, value: Decimal128) -> Decimal:
        return value.to_decimal()


def connect(uri: str, **options: Any) -> MongoClient:
    return MongoClient(
        uri,
        tz_aware=True,
        type_registry=TypeRegistry([DecimalCodec()]),
        serverSelectionTimeoutMS=options.pop("serverSelectionTimeoutMS", 5000),
        appname=options.pop("appname", "jvreg"),
        **options,
    )


# The context key under which the gateway names a command (one HTTP request, or the
# client's Idempotency-Key); it travels with the RPC as nameko context data.
COMMAND_KEY = "command_key"
COMMANDS = "commands"
# How long a command's key is remembered: far beyond any redelivery or client retry.
COMMAND_KEY_LIFETIME = timedelta(days=7)


class UnitOfWork:
    """One transaction of a repository: the session its writes go through, and the
    events the change implies, which the repository writes to its outbox in the same
    transaction when the work is done."""

    def __init__(self, session: ClientSession):
        self.session = session
        self.events: list[CloudEvent] = []

    def publish(self, event: EventPayload | None) -> None:
        """Publish `event` (a payload of the service's contract) once the transaction
        commits; None when the change implied no event."""
        if event is not None:
            self.events.append(aggregate_event(event))


class Repository:
    """Base of each service's repository: its database, and transactions over it.
    Subclasses add the queries and writes of their own aggregate.

    A repository given a `command_key` records it in the first transaction it commits:
    the same command delivered again (an RPC redelivered after a crash, or a client
    retrying with the same Idempotency-Key) then conflicts instead of applying twice."""

    def __init__(self, client: MongoClient, db: Database, command_key: str | None = None):
        self.client = client
        self.db = db
        self.command_key = command_key

    # Bookkeeping collections whose records carry the hour they are deleted in
    # (shared.pruning), pruned by the service's store.
    PRUNED = (Outbox.COLLECTION, COMMANDS)

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        Outbox.ensure_indexes(db)
        Pruning.ensure_index(db[COMMANDS])
        # Command keys used to expire by a TTL index, which SecantusDB serves by walking
        # the whole collection every minute (shared.pruning): gone from older databases.
        if "at_1" in db[COMMANDS].index_information():
            db[COMMANDS].drop_index("at_1")

    def transaction(self, work: Callable[[ClientSession], T]) -> T:
        """Run `work(session)` in one transaction, retried on transient errors."""
        key = self.command_key
        tries = itertools.count()
        started = time.monotonic()

        def keyed_work(session: ClientSession) -> T:
            if retry := next(tries):
                # A write conflict: pymongo (< 4.16, the last with eventlet) tries again at
                # once, so transactions on one document would retry in a storm and starve
                # the one holding it. Back off first, as the drivers' spec now does.
                time.sleep(transaction_backoff(retry))
            if key is not None:
                now = utcnow()
                self.db[COMMANDS].insert_one(
                    {"_id": key, "at": now, PRUNE_HOUR: due_hour(now + COMMAND_KEY_LIFETIME)},
                    session=session,
                )
            return work(session)

        try:
            with self.client.start_session() as session:
                result = session.with_transaction(keyed_work)
        except DuplicateKeyError as error:
            if key is not None and f"{self.db.name}.{COMMANDS}" in str(error):
                raise Conflict(
                    "this request was already carried out (same command or Idempotency-Key); "
                    "read the resource to see its result",
                    extra={"command_key": key.rpartition(":")[2]},
                ) from None
            raise
        if (retries := next(tries) - 1) >= SLOW_TRANSACTION_RETRIES:
            log.warning(
                "a transaction of %s committed after %d retries on write conflicts (%.1f s)",
                self.db.name,
                retries,
                time.monotonic() - started,
            )
        self.command_key = None  # one command, one committed change
        crash_point("after_commit")
        return result

    def unit_of_work(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run `work` in one transaction with the events it publishes, written to the
        outbox, and the command's key: state, events and key commit together or not at
        all (and the whole is retried on transient errors, `transaction`)."""

        def work_and_events(session: ClientSession) -> tuple[T, bool]:
            unit = UnitOfWork(session)
            result = work(unit)
            outbox = Outbox(self.db)
            for event in unit.events:
                outbox.add(event, session)
            self.keep_versions(unit.events, session)
            return result, bool(unit.events)

        result, wrote_events = self.transaction(work_and_events)
        if wrote_events:
            wake_relays(self.db)  # publish now, not at the relay's next poll
        return result

    def keep_versions(self, events: list[CloudEvent], session: ClientSession) -> None:
        """Keep, in the transaction of a change, what its events say of the aggregates:
        nothing, unless the repository keeps versions for reads as of an instant
        (shared.as_of.KeepsVersions)."""

    def ping(self) -> bool:
        self.db.command("ping")
        return True


class MongoStore(DependencyProvider):
    """The service's own database. Creates the client once in setup and gives each
    worker a `repository_cls` bound to it; prunes its bookkeeping once a minute."""

    def __init__(self, repository_cls: type[Repository], **kwargs):
        self.repository_cls = repository_cls
        super().__init__(**kwargs)

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.client = connect(settings.mongo_uri, appname=self.container.service_name)
        self.db = self.client[settings.database_name(self.container.service_name)]
        self.repository_cls.ensure_indexes(self.db)

    def start(self):
        self.container.spawn_managed_thread(self._prune, identifier="prune bookkeeping")

    def _prune(self):
        prunings = [Pruning(self.db[name]) for name in self.repository_cls.PRUNED]
        while True:
            for pruning in prunings:
                try:
                    if pruned := pruning.prune_all():
                        log.info("pruned %d record(s) of %s", pruned, pruning.collection.name)
                except PyMongoError as error:  # e.g. the database restarting: next time
                    log.warning("pruning %s failed: %r", pruning.collection.name, error)
            eventlet.sleep(EVERY.total_seconds())

    def stop(self):
        self.client.close()

    def kill(self):
        self.client.close()

    def repository(self, command_key: str | None = None) -> Repository:
        return self.repository_cls(self.client, self.db, command_key)

    def get_dependency(self, worker_ctx):
        return self.repository(worker_ctx.data.get(COMMAND_KEY))
