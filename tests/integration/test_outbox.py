"""The transactional outbox and its relay against the real broker and wire server."""

import uuid

import eventlet
import pytest
from kombu import Connection, Queue
from nameko.amqp.publish import Publisher

from ops.processes import wait_until
from shared import messaging
from shared.envelope import new_event
from shared.mongo import Repository, connect
from shared.outbox import PENDING, SENT, Outbox, Relay, event_publisher

SERVICE = "ventures"


@pytest.fixture
def repository(backends):
    client = connect(backends["mongo_uri"])
    db = client[f"outbox_test_{uuid.uuid4().hex[:10]}"]
    Repository.ensure_indexes(db)
    yield Repository(client, db)
    client.drop_database(db.name)
    client.close()


@pytest.fixture
def regulator_queue(amqp_uri):
    """A queue bound to ventures.events, as a subscriber would have."""
    queue = Queue(
        "test-subscriber",
        exchange=messaging.events_exchange(SERVICE),
        routing_key="venture.#",
        durable=True,
    )
    with Connection(amqp_uri) as connection:
        queue(connection.channel()).declare()
    return queue


def drain(amqp_uri, queue) -> list[dict]:
    bodies = []
    with Connection(amqp_uri) as connection:
        bound = queue(connection.channel())
        while (message := bound.get(no_ack=True, accept=messaging.EVENT_CONTENT_TYPES)) is not None:
            bodies.append(message.payload)
    return bodies


def commit_events(repository, count: int) -> list[str]:
    ids = []
    for n in range(count):
        event = new_event(SERVICE, "venture.updated", f"jv_{n}", 1, {"n": n})
        repository.transaction(lambda session, e=event: Outbox(repository.db).add(e, session))
        ids.append(event.id)
    return ids


def test_a_committed_event_is_published_and_then_marked_sent(repository, amqp_uri, regulator_queue):
    [event_id] = commit_events(repository, 1)
    relay = Relay(repository.db, event_publisher(amqp_uri, SERVICE), owner="test")
    assert relay.relay_pending() == 1
    [body] = drain(amqp_uri, regulator_queue)
    assert body["id"] == event_id and body["specversion"] == "1.0"
    assert repository.db.outbox.find_one({"_id": event_id})["status"] == SENT


def test_an_event_is_published_in_cloudevents_structured_mode(
    repository, amqp_uri, regulator_queue
):
    """The content type tells any CloudEvents reader the body is the whole event."""
    [event_id] = commit_events(repository, 1)
    Relay(repository.db, event_publisher(amqp_uri, SERVICE), owner="test").relay_pending()
    with Connection(amqp_uri) as connection:
        message = regulator_queue(connection.channel()).get(no_ack=True, accept=["cloudevents"])
    assert message.content_type == "application/cloudevents+json"
    assert message.payload["id"] == event_id
    assert message.properties["message_id"] == event_id


def test_an_event_whose_publish_failed_is_published_by_a_later_pass(
    repository, amqp_uri, regulator_queue
):
    [event_id] = commit_events(repository, 1)
    broker_down = event_publisher("amqp://guest:guest@127.0.0.1:1//", SERVICE)
    assert Relay(repository.db, broker_down, owner="crashed").relay_pending() == 0
    record = repository.db.outbox.find_one({"_id": event_id})
    assert record["status"] == PENDING and record["last_error"]
    assert drain(amqp_uri, regulator_queue) == []

    relay = Relay(repository.db, event_publisher(amqp_uri, SERVICE), owner="restarted")
    wait_until(lambda: relay.relay_pending() == 1, 15, "the retried publish")
    assert [body["id"] for body in drain(amqp_uri, regulator_queue)] == [event_id]


def test_a_rolled_back_change_publishes_nothing(repository, amqp_uri, regulator_queue):
    event = new_event(SERVICE, "venture.registered", "jv_rolled_back", 1, {})

    def change_that_fails(session):
        repository.db.ventures.insert_one({"_id": "jv_rolled_back"}, session=session)
        Outbox(repository.db).add(event, session)
        raise RuntimeError("validation failed after the writes")

    with pytest.raises(RuntimeError):
        repository.transaction(change_that_fails)
    assert repository.db.outbox.count_documents({}) == 0
    assert repository.db.ventures.count_documents({}) == 0
    assert Relay(repository.db, event_publisher(amqp_uri, SERVICE), "t").relay_pending() == 0
    assert drain(amqp_uri, regulator_queue) == []


def test_two_relays_never_publish_the_same_record(repository, amqp_uri, regulator_queue):
    ids = commit_events(repository, 120)
    relays = [
        Relay(repository.db, event_publisher(amqp_uri, SERVICE), owner=f"relay-{n}")
        for n in range(2)
    ]
    pool = eventlet.GreenPool()
    sent = sum(pool.imap(lambda relay: relay.relay_pending(), relays))
    assert sent == 120
    assert all(relay.published > 0 for relay in relays), "both relays should have worked"
    published = [body["id"] for body in drain(amqp_uri, regulator_queue)]
    assert sorted(published) == sorted(ids)  # each exactly once
    assert repository.db.outbox.count_documents({"status": SENT}) == 120


def test_an_unroutable_event_stays_pending_and_is_counted(repository, amqp_uri):
    exchange = messaging.events_exchange("nobody-listens")
    publisher = Publisher(amqp_uri, use_confirms=True, mandatory=True, declare=[exchange])

    def publish(event):
        publisher.publish(event.wire(), exchange=exchange, routing_key=event.routing_key)

    [event_id] = commit_events(repository, 1)
    relay = Relay(repository.db, publish, owner="test")
    assert relay.relay_pending() == 0
    assert relay.unroutable == 1
    record = repository.db.outbox.find_one({"_id": event_id})
    assert record["status"] == PENDING and record["last_error"].startswith("unroutable")
