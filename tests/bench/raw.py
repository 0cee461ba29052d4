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


@contextmanager
def bench_exchange(amqp_uri: str) -> Iterator[Exchange]:
    """A durable topic exchange and catch-all queue of the run's own, like a service's
    `<svc>.events` and its event log, deleted afterwards."""
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    exchange = Exchange(name, type="topic", durable=True)
    queue = Queue(f"{name}.log", exchange, routing_key="#", durable=True)
    with Connection(amqp_uri) as connection:
        queue(connection.channel()).declare()
        try:
            yield exchange
        finally:
            channel = connection.channel()
            queue(channel).delete()
            exchange(channel).delete()


def confirmed_publisher(amqp_uri: str, exchange: Exchange) -> Callable[[dict], None]:
    """Publishes persistent messages and returns once the broker has confirmed each."""
    connection = Connection(amqp_uri, transport_options={"confirm_publish": True})
    producer = Producer(connection.channel(), exchange=exchange)

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
    with bench_exchange(amqp_uri) as exchange:

        def make_client(n: int) -> Callable[[], None]:
            publish = confirmed_publisher(amqp_uri, exchange)

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
    with bench_exchange(amqp_uri) as exchange:
        return closed_loop(
            clients, seconds, lambda n: partial(confirmed_publisher(amqp_uri, exchange), event)
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
