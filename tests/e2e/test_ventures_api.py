"""Ventures through the gateway, against the real services, broker and wire server."""

import json
import time

from kombu import Connection, Consumer, Queue
from support import venture_body

from shared.messaging import events_exchange


def test_registry_health_is_ok(ops):
    response = ops.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) >= {
        "mongo",
        "rabbitmq",
        "ventures",
        "facilities",
        "licensing",
        "investments",
    }


def test_registration_publishes_a_cloud_event(registry, investor):
    received = []
    with Connection(registry["amqp_uri"]) as connection:
        queue = Queue(
            "e2e-regulator-ventures",
            exchange=events_exchange("ventures"),
            routing_key="venture.#",
            durable=True,
        )
        queue(connection.channel()).declare()
        response = investor.post("/v1/ventures", json=venture_body())
        assert response.status_code == 201, response.text
        venture = response.json()

        def on_message(body, message):
            received.append((body, message.properties))
            message.ack()

        with Consumer(connection, [queue], callbacks=[on_message], accept=["json"]):
            deadline = time.monotonic() + 15
            while not any(b["subject"] == venture["id"] for b, _ in received):
                assert time.monotonic() < deadline, "no venture.registered event arrived"
                connection.drain_events(timeout=deadline - time.monotonic())

    event, properties = next((b, p) for b, p in received if b["subject"] == venture["id"])
    assert event["specversion"] == "1.0"
    assert event["type"] == "jvreg.venture.registered"
    assert event["source"] == "/jvreg/ventures"
    assert event["datacontenttype"] == "application/json"
    assert event["sequence"] == 1
    assert event["id"] and event["time"].endswith("Z")
    assert event["data"]["venture"]["name"] == venture["name"]
    assert event["data"]["change"]["to"] == "registered"
    assert properties["delivery_mode"] == 2
    json.dumps(event)  # the whole envelope is plain JSON
