"""MongoDB access: one client per service container, a repository per worker."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from bson.codec_options import TypeCodec, TypeRegistry
from bson.decimal128 import Decimal128
from nameko.extensions import DependencyProvider
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.contract import EventPayload
from shared.envelope import CloudEvent, aggregate_event
from shared.errors import Conflict
from shared.faults import crash_point
from shared.outbox import Outbox, wake_relays
from shared.settings import Settings

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
COMMAND_KEY_TTL_SECONDS = 7 * 24 * 3600


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

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        Outbox.ensure_indexes(db)
        db[COMMANDS].create_index("at", expireAfterSeconds=COMMAND_KEY_TTL_SECONDS)

    def transaction(self, work: Callable[[ClientSession], T]) -> T:
        """Run `work(session)` in one transaction, retried on transient errors."""
        key = self.command_key

        def keyed_work(session: ClientSession) -> T:
            if key is not None:
                self.db[COMMANDS].insert_one({"_id": key, "at": utcnow()}, session=session)
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
            return result, bool(unit.events)

        result, wrote_events = self.transaction(work_and_events)
        if wrote_events:
            wake_relays(self.db)  # publish now, not at the relay's next poll
        return result

    def ping(self) -> bool:
        self.db.command("ping")
        return True


class MongoStore(DependencyProvider):
    """The service's own database. Creates the client once in setup and gives each
    worker a `repository_cls` bound to it."""

    def __init__(self, repository_cls: type[Repository], **kwargs):
        self.repository_cls = repository_cls
        super().__init__(**kwargs)

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.client = connect(settings.mongo_uri, appname=self.container.service_name)
        self.db = self.client[settings.database_name(self.container.service_name)]
        self.repository_cls.ensure_indexes(self.db)

    def stop(self):
        self.client.close()

    def kill(self):
        self.client.close()

    def repository(self, command_key: str | None = None) -> Repository:
        return self.repository_cls(self.client, self.db, command_key)

    def get_dependency(self, worker_ctx):
        return self.repository(worker_ctx.data.get(COMMAND_KEY))
