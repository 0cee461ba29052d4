"""The raw limits the registry is measured against, on the same servers and the same
machine: the durable work of one registration done directly (a pymongo transaction
writing a venture and its outbox record, then a kombu publish waiting for its confirm),
a bare confirmed publish, and a nameko RPC round trip to a service that does nothing."""

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from kombu import Connection, Exchange, Producer, Queue
from nameko.standalone.rpc import ClusterRpcProxy

from ops.processes import NAMEKO_CONFIG, ManagedProcess, wait_until
from services.ventures.contract import VENTURE_EXAMPLE
from shared import codec
from shared.envelope import new_event
from shared.mongo import connect

from load import closed_loop

BENCH_DIR = Path(__file__).parent


class BenchExchange:
    """A durable topic exchange and catch-all queue of the run's own, like a service's
    `<svc>.events` and its event log, and the confirming publishers of its clients;
    all removed afterwards."""

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        name = f"bench-raw-{uuid.uuid4().hex[:8]}"
        self.exchange = Exchange(name, type="topic", durable=True)
        self.queue = Queue(f"{name}.log", self.exchange, routing_key="#", durable=True)
        self.connections: list[Connection] = []

    def __enter__(self) -> "BenchExchange":
        with Connection(self.amqp_uri) as connection:
            self.queue(connection.channel()).declare()
        return self

    def __exit__(self, *exc_info) -> None:
        for connection in self.connections:
            connection.release()
        with Connection(self.amqp_uri) as connection:
            channel = connection.channel()
            self.queue(channel).delete()
            self.exchange(channel).delete()

    def confirmed_publisher(self) -> Callable[[dict], None]:
        """Publishes persistent messages and returns once the broker confirmed each."""
        connection = Connection(self.amqp_uri, transport_options={"confirm_publish": True})
        self.connections.append(connection)
        producer = Producer(connection.channel(), exchange=self.exchange)

        def publish(body: dict) -> None:
            producer.publish(
                codec.dumps(body),
                routing_key="venture.registered",
                content_type="application/cloudevents+json",
                delivery_mode=2,
                mandatory=True,
            )

        return publish


def venture_event(venture_id: str) -> dict:
    venture = {**VENTURE_EXAMPLE, "id": venture_id}
    return new_event("ventures", "venture.registered", venture_id, 1, {"venture": venture}).wire()


def durable_writes(mongo_uri: str, amqp_uri: str, clients: int, seconds: float) -> dict:
    """A venture-shaped document and an outbox record in one transaction, then the event
    published with a confirm: what a registration must do at least."""
    client = connect(mongo_uri, maxPoolSize=clients + 4)
    db = client[f"bench_raw_{uuid.uuid4().hex[:8]}"]
    with BenchExchange(amqp_uri) as exchange:

        def make_client(n: int) -> Callable[[], None]:
            publish = exchange.confirmed_publisher()

            def register() -> None:
                venture_id = f"jv_{uuid.uuid4().hex[:24]}"
                event = venture_event(venture_id)
                now = datetime.now(UTC)

                def write(session):
                    db.ventures.insert_one(
                        {**VENTURE_EXAMPLE, "_id": venture_id, "version": 1}, session=session
                    )
                    db.outbox.insert_one(
                        {
                            "_id": event["id"],
                            "envelope": event,
                            "status": "pending",
                            "created_at": now,
                            "available_at": now,
                        },
                        session=session,
                    )

                with client.start_session() as session:
                    session.with_transaction(write)
                publish(event)

            return register

        try:
            return closed_loop(clients, seconds, make_client)
        finally:
            client.drop_database(db.name)
            client.close()


def confirmed_publishes(amqp_uri: str, clients: int, seconds: float) -> dict:
    """Persistent messages the size of an event, each waiting for its confirm."""
    event = venture_event("jv_bench")
    with BenchExchange(amqp_uri) as exchange:
        return closed_loop(
            clients, seconds, lambda n: partial(exchange.confirmed_publisher(), event)
        )


@contextmanager
def echo_service(amqp_uri: str, log: Path) -> Iterator[None]:
    env = {
        **os.environ,
        "JVREG_AMQP_URI": amqp_uri,
        "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    nameko = str(Path(sys.executable).parent / "nameko")
    process = ManagedProcess(
        "bench_echo", [nameko, "run", "--config", str(NAMEKO_CONFIG), "echo"], env, log
    )
    process.start()
    try:
        with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=2) as rpc:
            wait_until(lambda: rpc.bench_echo.ping() == "pong", 60, "the echo service")
        yield
    finally:
        process.stop()


def rpc_round_trips(amqp_uri: str, clients: int, seconds: float) -> dict:
    """nameko RPC calls to the echo service, one proxy (and reply queue) per client."""
    proxies: list = []

    def make_client(n: int) -> Callable[[], None]:
        proxy = ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=10)
        proxies.append(proxy)
        service = proxy.start().bench_echo
        return lambda: service.ping()

    try:
        return closed_loop(clients, seconds, make_client)
    finally:
        for proxy in proxies:
            proxy.stop()
