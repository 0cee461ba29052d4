"""`jvreg watch` as a process of its own against the real broker, fed with valid
CloudEvents published to `licensing.events` the way the licensing service's relay
publishes them: it prints them as JSON lines, resumes after a stop without losing
what was published meanwhile, survives a dropped connection, and dead-letters
messages that are not CloudEvents."""

import uuid
from urllib.parse import quote

import pytest
import requests
from kombu import Connection, Producer, Queue

from ops.processes import wait_until
from shared import messaging
from shared.envelope import new_event
from shared.outbox import event_publisher

from watch_process import WatchProcess


@pytest.fixture
def publish(amqp_uri):
    return event_publisher(amqp_uri, "licensing")


@pytest.fixture
def watches(tmp_path, amqp_uri):
    started = []

    def watch(queue: str, *options: str) -> WatchProcess:
        process = WatchProcess(tmp_path, amqp_uri, queue, *options)
        started.append(process)
        return process

    yield watch
    for process in started:
        process.kill()


def decisions(count: int, licence_id: str | None = None, first_sequence: int = 1) -> list:
    licence_id = licence_id or f"lic_{uuid.uuid4().hex[:12]}"
    statuses = ["granted", "suspended", "reinstated", "revoked", "granted", "suspended"]
    return [
        new_event(
            "licensing",
            f"license.{statuses[n % len(statuses)]}",
            licence_id,
            first_sequence + n,
            {"license": {"id": licence_id}},
        )
        for n in range(count)
    ]


def test_a_stopped_watch_resumes_with_every_event_published_meanwhile(watches, publish):
    watch = watches("drap-licensing").start()
    before = decisions(2)
    for event in before:
        publish(event)
    assert [line["id"] for line in watch.wait_for(2)] == [e.id for e in before]
    assert watch.events()[0] == before[0].wire()
    assert watch.stop() == 0

    meanwhile = decisions(3, before[0].subject, first_sequence=3)
    for event in meanwhile:
        publish(event)
    watch.start()
    assert [line["id"] for line in watch.wait_for(3)] == [e.id for e in meanwhile]
    assert watch.stop() == 0


def test_max_events_exits_after_that_many_and_leaves_the_rest_queued(watches, publish):
    events = decisions(3)
    watch = watches("drap-max", "--max-events", "2").start()
    for event in events:
        publish(event)
    assert watch.process.wait(30) == 0
    assert [line["id"] for line in watch.events()] == [e.id for e in events[:2]]
    watch.start()
    assert [line["id"] for line in watch.wait_for(1)] == [events[2].id]


def test_only_the_bound_pattern_is_printed(watches, publish):
    watch = watches("drap-revocations", "--pattern", "license.revoked").start()
    events = decisions(4)  # granted, suspended, reinstated, revoked
    for event in events:
        publish(event)
    assert [line["type"] for line in watch.wait_for(1)] == ["jvreg.license.revoked"]


def management(backends) -> str:
    return backends["management_url"].rstrip("/") + "/api"


def test_the_watch_reconnects_when_the_broker_drops_its_connection(
    watches, publish, backends, vhost
):
    watch = watches("drap-reconnect").start()
    first, second = decisions(2)
    publish(first)
    watch.wait_for(1)

    def connections() -> list[str]:
        url = f"{management(backends)}/vhosts/{quote(vhost, safe='')}/connections"
        return [c["name"] for c in requests.get(url, timeout=10).json()]

    # The publisher keeps a connection too; drop every one, the watch's among them.
    wait_until(lambda: len(connections()) >= 2, 30, "the watch's connection listed")
    for name in connections():
        requests.delete(f"{management(backends)}/connections/{quote(name, safe='')}", timeout=10)

    wait_until(lambda: "reconnecting" in watch.errors(), 30, "the watch noticing")
    publish(second)
    assert [line["id"] for line in watch.wait_for(2)] == [first.id, second.id]
    assert watch.process.poll() is None
    assert watch.stop() == 0


def test_messages_that_are_not_cloud_events_are_dead_lettered(
    watches, publish, amqp_uri, backends, vhost
):
    watch = watches("drap-strict").start()
    exchange = messaging.events_exchange("licensing")
    with Connection(amqp_uri) as connection:
        producer = Producer(connection.default_channel)
        producer.publish(
            {"type": "license.granted", "note": "not a CloudEvent"},
            exchange=exchange,
            routing_key="license.granted",
            serializer="json",
            message_id="bad-1",
        )
        producer.publish(
            b"<xml>no</xml>",
            exchange=exchange,
            routing_key="license.granted",
            content_type="application/xml",
            content_encoding="utf-8",
            message_id="bad-2",
        )
    (event,) = decisions(1)
    publish(event)

    assert [line["id"] for line in watch.wait_for(1)] == [event.id]
    wait_until(lambda: "bad-2" in watch.errors(), 30, "both rejections reported")
    errors = watch.errors()
    assert "rejected message bad-1 (license.granted): not a valid CloudEvent" in errors
    assert "specversion: Field required" in errors

    with Connection(amqp_uri) as connection:
        dead = []
        queue = Queue(messaging.DEAD_LETTER_QUEUE, durable=True)
        channel = connection.default_channel

        def drained() -> bool:
            message = queue(channel).get(no_ack=True)
            if message is not None:
                dead.append(message.properties["message_id"])
            return len(dead) == 2

        wait_until(drained, 30, "two dead letters")
    assert sorted(dead) == ["bad-1", "bad-2"]
    assert watch.stop() == 0
