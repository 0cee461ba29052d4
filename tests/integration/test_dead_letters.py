"""Poison messages among healthy ones: each poison ends in the dead-letter queue with
its error, after the delivery limit or at once when it can never be valid; every
healthy event is applied; ops can send dead letters back."""

import json

import eventlet
import pytest
from kombu import Connection

from ops.processes import wait_until
from shared import messaging
from shared.dead_letters import RETURNS_HEADER, DeadLetterQueue
from shared.envelope import new_event
from shared.inbox import Projection, cloud_event_handler
from shared.mongo import MongoStore, Repository
from shared.outbox import event_publisher

from support import any_data_subscription


class PoisonAwareService:
    name = "dlq_test"
    store = MongoStore(Repository)

    @cloud_event_handler(any_data_subscription("dlq_test.project", "ventures", "venture.#"))
    def project(self, event, data):
        if event.data.get("poison") and not self.store.db.cures.find_one({"_id": event.id}):
            raise ValueError(f"cannot apply {event.subject}")

        def effect(unit):
            session = unit.session
            self.store.db.applied.insert_one(
                {"_id": event.id, "subject": event.subject}, session=session
            )

        Projection(self.store.db.ventures).apply(self.store, event, then=effect)


@pytest.fixture
def service(service_config, container_factory):
    container = container_factory(PoisonAwareService, service_config)
    container.start()
    return next(d for d in container.dependencies if d.attr_name == "store").db


def publish_raw(amqp_uri, body: bytes, content_type: str, routing_key="venture.updated"):
    """A faulty producer's message, published as the ventures service's own user."""
    with Connection(amqp_uri) as connection:
        producer = connection.Producer()
        producer.publish(
            body,
            exchange=messaging.events_exchange("ventures"),
            routing_key=routing_key,
            content_type=content_type,
            content_encoding="utf-8",
            user_id=connection.userid,
            declare=[messaging.events_exchange("ventures")],
        )


def test_poison_messages_are_dead_lettered_and_healthy_ones_applied(
    service, amqp_uri, vhost, rabbit_management
):
    db = service
    publish = event_publisher(amqp_uri, "ventures")
    healthy = [new_event("ventures", "venture.registered", f"jv_ok_{n}", 1, {}) for n in range(6)]
    poison = new_event("ventures", "venture.registered", "jv_poison", 1, {"poison": True})
    invalid = {
        **new_event("ventures", "venture.updated", "jv_bad", 2, {}).wire(),
        "specversion": "0.3",
    }
    unknown = {
        **new_event("ventures", "venture.updated", "jv_unknown", 2, {}).wire(),
        "type": "jvreg.venture.renamed",
    }

    publish(healthy[0])
    publish(poison)
    publish(healthy[1])
    publish_raw(amqp_uri, json.dumps(invalid).encode(), "application/json")
    publish(healthy[2])
    publish_raw(amqp_uri, b"<venture>not json</venture>", "application/xml")
    publish(healthy[3])
    publish_raw(
        amqp_uri, json.dumps(unknown).encode(), "application/json", routing_key="venture.renamed"
    )
    publish_raw(amqp_uri, b"{not json", "application/json")
    for event in healthy[4:]:
        publish(event)

    dlq = DeadLetterQueue(amqp_uri)
    wait_until(lambda: len(dlq.list()) == 5, 60, "five dead letters")
    wait_until(lambda: db.applied.count_documents({}) == 6, 10, "six healthy events applied")
    letters = {letter["event_id"] or letter["error"][:30]: letter for letter in dlq.list()}
    queue = "dlq_test.project"
    assert letters[poison.id]["attempts"] == messaging.DELIVERY_LIMIT
    assert letters[poison.id]["error"] == "ValueError: cannot apply jv_poison"
    assert letters[poison.id]["queue"] == queue
    assert "specversion" in letters[invalid["id"]]["error"]
    assert letters[invalid["id"]]["attempts"] == 1  # never valid: no retries
    assert "unknown event type jvreg.venture.renamed" in letters[unknown["id"]]["error"]
    undecodable = [
        letter for letter in letters.values() if letter["error"].startswith("undecodable")
    ]
    assert len(undecodable) == 2
    assert {db_doc["subject"] for db_doc in db.applied.find()} == {e.subject for e in healthy}

    # Once the cause is fixed, ops send the poison back and it is applied once.
    db.cures.insert_one({"_id": poison.id})
    assert dlq.requeue(poison.id) == 1
    wait_until(
        lambda: db.applied.find_one({"_id": poison.id}) is not None,
        20,
        "the requeued event applied",
    )
    assert len(dlq.list()) == 4
    assert db.applied.count_documents({}) == 7

    def consumer_queue_empty():
        stats = rabbit_management.queue(vhost, queue)
        return stats.get("messages_ready") == 0 and stats.get("messages_unacknowledged") == 0

    wait_until(consumer_queue_empty, 15, "the consumer queue drained (0 ready, 0 unacked)")


def test_a_message_whose_consumers_died_holding_it_is_still_applied(
    service_config, container_factory, amqp_uri
):
    """Each consumer that dies holding a message returns it, and the broker counts
    that as a delivery: a crash loop must not dead-letter a healthy message (only
    failures of its handler count towards DELIVERY_LIMIT)."""
    container = container_factory(PoisonAwareService, service_config)
    container.start()  # declares the queue
    container.stop()
    event = new_event("ventures", "venture.registered", "jv_survivor", 1, {})
    event_publisher(amqp_uri, "ventures")(event)
    queue = messaging.consumer_queue("dlq_test.project", "ventures", "venture.#")
    crashes = messaging.DELIVERY_LIMIT + 2
    for _ in range(crashes):
        with Connection(amqp_uri) as connection:  # a consumer that dies before acking
            bound = queue(connection.channel())
            wait_until(lambda b=bound: b.get(no_ack=False, accept=None), 10, "the message")

    restarted = container_factory(PoisonAwareService, service_config)
    restarted.start()
    db = next(d for d in restarted.dependencies if d.attr_name == "store").db
    wait_until(lambda: db.applied.find_one({"_id": event.id}), 20, "the event applied")
    assert DeadLetterQueue(amqp_uri).list() == []


class StallingService:
    """Holds every event without finishing it while `stall` is on: each time its
    container is killed, the broker returns the event it was holding."""

    name = "stall_test"
    store = MongoStore(Repository)
    stall = {"on": True}
    held: list[str] = []

    @cloud_event_handler(any_data_subscription("stall_test.project", "ventures", "venture.#"))
    def project(self, event, data):
        if self.stall["on"]:
            self.held.append(event.id)
            eventlet.sleep(120)

        def effect(unit):
            self.store.db.applied.insert_one({"_id": event.id}, session=unit.session)

        Projection(self.store.db.ventures).apply(self.store, event, then=effect)


def test_a_healthy_message_outlives_more_consumer_crashes_than_the_brokers_limit(
    service_config, container_factory, amqp_uri
):
    """A consumer in a crash loop returns the message it holds at every crash, and the
    broker dead-letters a message at BROKER_DELIVERY_LIMIT returns. Before that, the
    consumer sends it to the tail as a fresh copy carrying the returns so far."""
    StallingService.stall["on"], StallingService.held[:] = True, []
    container = container_factory(StallingService, service_config)
    container.start()
    event = new_event("ventures", "venture.registered", "jv_crash_loop", 1, {})
    event_publisher(amqp_uri, "ventures")(event)
    crashes = messaging.BROKER_DELIVERY_LIMIT + 3
    for crash in range(crashes):
        wait_until(lambda n=crash: len(StallingService.held) > n, 20, f"held {crash + 1} times")
        container.kill()
        container = container_factory(StallingService, service_config)
        container.start()
    StallingService.stall["on"] = False
    container.kill()
    restarted = container_factory(StallingService, service_config)
    restarted.start()
    db = next(d for d in restarted.dependencies if d.attr_name == "store").db
    wait_until(lambda: db.applied.find_one({"_id": event.id}), 20, "the event applied")
    assert DeadLetterQueue(amqp_uri).list() == []
    assert set(StallingService.held) == {event.id}


def test_a_message_its_consumers_keep_stopping_on_is_dead_lettered_in_the_end(
    service_config, container_factory, amqp_uri
):
    """Returns add up over the copies: past RETURN_LIMIT in all the message is taken for
    what stops its consumers and dead-lettered, with the count."""
    container = container_factory(PoisonAwareService, service_config)
    container.start()  # declares the queue
    container.stop()
    earlier = messaging.RETURN_LIMIT - messaging.RETURNS_BEFORE_REFRESH
    event = new_event("ventures", "venture.registered", "jv_crasher", 1, {})
    with Connection(amqp_uri) as connection:  # a copy whose predecessors came back 40 times
        connection.Producer().publish(
            json.dumps(event.wire()).encode(),
            exchange=messaging.events_exchange("ventures"),
            routing_key=event.routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            headers={RETURNS_HEADER: earlier},
            user_id=connection.userid,
        )
    queue = messaging.consumer_queue("dlq_test.project", "ventures", "venture.#")
    for _ in range(messaging.RETURNS_BEFORE_REFRESH):
        with Connection(amqp_uri) as connection:  # a consumer that dies before acking
            bound = queue(connection.channel())
            wait_until(lambda b=bound: b.get(no_ack=False, accept=None), 10, "the message")

    restarted = container_factory(PoisonAwareService, service_config)
    restarted.start()
    dlq = DeadLetterQueue(amqp_uri)
    wait_until(lambda: dlq.list(), 20, "the message dead-lettered")
    [letter] = dlq.list()
    assert letter["event_id"] == event.id
    assert letter["error"].startswith(f"returned {messaging.RETURN_LIMIT} times by consumers")
    db = next(d for d in restarted.dependencies if d.attr_name == "store").db
    assert db.applied.find_one({"_id": event.id}) is None
