"""The transactional outbox and its relay against the real broker and wire server."""

import uuid
from datetime import timedelta

import eventlet
import pytest
from kombu import Connection, Producer, Queue

from ops.processes import wait_until
from services.ventures import contract as ventures
from shared import messaging, outbox
from shared.contract import example
from shared.envelope import new_event
from shared.mongo import MongoStore, Repository, connect
from shared.outbox import (
    PENDING,
    RETENTION,
    SENT,
    EventPublisher,
    Outbox,
    OutboxRelay,
    Relay,
    event_publisher,
)
from shared.pruning import PRUNE_HOUR, Pruning

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
    return commit(
        [new_event(SERVICE, "venture.updated", f"jv_{n}", 1, {"n": n}) for n in range(count)],
        repository,
    )


def commit(events, repository) -> list[str]:
    """Commit each of `events` in a transaction of its own, in order."""
    for event in events:
        repository.transaction(lambda session, e=event: Outbox(repository.db).add(e, session))
    return [event.id for event in events]


class CountingPublisher(EventPublisher):
    """The service's publisher, keeping the size of every batch it was given."""

    def __init__(self, amqp_uri, service=SERVICE):
        super().__init__(
            amqp_uri,
            messaging.events_exchange(service),
            messaging.publisher_topology(service),
        )
        self.batches: list[int] = []

    def publish_batch(self, events):
        self.batches.append(len(events))
        return super().publish_batch(events)


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


def test_two_relays_never_publish_the_same_record(
    repository, amqp_uri, regulator_queue, monkeypatch
):
    monkeypatch.setattr(outbox, "CLAIM_BATCH", 10)  # several batches for each relay
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


def test_a_batch_is_published_pipelined_and_confirmed_as_a_whole(
    repository, amqp_uri, regulator_queue
):
    ids = commit_events(repository, 30)  # 30 aggregates: one wave
    publisher = CountingPublisher(amqp_uri)
    relay = Relay(repository.db, publisher, owner="test")
    assert relay.relay_pending() == 30
    assert publisher.batches == [30]
    assert sorted(body["id"] for body in drain(amqp_uri, regulator_queue)) == sorted(ids)
    assert repository.db.outbox.count_documents({"status": SENT}) == 30
    # The channel stays open for the next batch.
    [more] = commit_events(repository, 1)
    assert relay.relay_pending() == 1 and publisher.batches == [30, 1]
    assert [body["id"] for body in drain(amqp_uri, regulator_queue)] == [more]


def test_an_aggregates_events_go_out_in_sequence_order_within_a_batch(
    repository, amqp_uri, regulator_queue
):
    events = [new_event(SERVICE, "venture.updated", "jv_a", n, {}) for n in (1, 2, 3)]
    events.append(new_event(SERVICE, "venture.updated", "jv_b", 1, {}))
    commit(events, repository)
    publisher = CountingPublisher(amqp_uri)
    assert Relay(repository.db, publisher, owner="test").relay_pending() == 4
    # One wave per event of jv_a, each waiting for the confirm of the one before.
    assert publisher.batches == [2, 1, 1]
    published = [(body["subject"], body["sequence"]) for body in drain(amqp_uri, regulator_queue)]
    assert [seq for subject, seq in published if subject == "jv_a"] == [1, 2, 3]


def test_an_unroutable_event_stays_pending_and_stops_its_aggregates_later_events(
    repository, amqp_uri
):
    # Only venture.updated is bound: venture.registered is unroutable.
    exchange = messaging.events_exchange("picky")
    queue = Queue("picky-updates", exchange=exchange, routing_key="venture.updated")
    publisher = EventPublisher(amqp_uri, exchange, [exchange, queue])
    stuck, successor, other = commit(
        [
            new_event(SERVICE, "venture.registered", "jv_a", 1, {}),
            new_event(SERVICE, "venture.updated", "jv_a", 2, {}),
            new_event(SERVICE, "venture.updated", "jv_b", 1, {}),
        ],
        repository,
    )
    relay = Relay(repository.db, publisher, owner="test")
    assert relay.relay_pending() == 1
    assert relay.unroutable == 1
    record = repository.db.outbox.find_one({"_id": stuck})
    assert record["status"] == PENDING and record["last_error"].startswith("unroutable")
    later = repository.db.outbox.find_one({"_id": successor})
    assert later["status"] == PENDING and later["attempts"] == 0  # not published, not tried
    assert repository.db.outbox.find_one({"_id": other})["status"] == SENT
    assert [body["id"] for body in drain(amqp_uri, queue)] == [other]


def test_a_broker_failure_mid_batch_leaves_the_unconfirmed_records_pending(
    repository, amqp_uri, regulator_queue, monkeypatch
):
    first, second, other = commit(
        [
            new_event(SERVICE, "venture.updated", "jv_a", 1, {}),
            new_event(SERVICE, "venture.updated", "jv_a", 2, {}),
            new_event(SERVICE, "venture.updated", "jv_b", 1, {}),
        ],
        repository,
    )
    publish = Producer.publish
    calls = []

    def connection_lost_at_the_third_publish(producer, *args, **kwargs):
        # Lost, and the broker still away when the relay reconnects at once.
        calls.append(1)
        if len(calls) in (3, 4):
            raise ConnectionResetError("connection lost")
        return publish(producer, *args, **kwargs)

    monkeypatch.setattr(Producer, "publish", connection_lost_at_the_third_publish)
    relay = Relay(repository.db, event_publisher(amqp_uri, SERVICE), owner="test")
    # The first wave (jv_a 1, jv_b 1) is confirmed; the second (jv_a 2) is lost.
    assert relay.relay_pending() == 2
    assert relay.failures == 1
    assert repository.db.outbox.find_one({"_id": first})["status"] == SENT
    assert repository.db.outbox.find_one({"_id": other})["status"] == SENT
    record = repository.db.outbox.find_one({"_id": second})
    assert record["status"] == PENDING and "connection lost" in record["last_error"]

    monkeypatch.setattr(Producer, "publish", publish)
    # The same relay connects afresh once the record is due again.
    wait_until(lambda: relay.relay_pending() == 1, 15, "the lost record published later")
    published = [body["id"] for body in drain(amqp_uri, regulator_queue)]
    assert sorted(published) == sorted([first, second, other])


def test_a_kept_connection_found_gone_is_replaced_at_once(
    repository, amqp_uri, regulator_queue, monkeypatch
):
    """The broker restarted or dropped the idle connection since the last batch: the
    next batch goes out on a new connection, not a retry later."""
    first, second = commit_events(repository, 2)
    relay = Relay(repository.db, event_publisher(amqp_uri, SERVICE), owner="test")
    publish = Producer.publish
    calls = []

    def connection_gone_at_the_third_publish(producer, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionResetError("connection reset by peer")
        return publish(producer, *args, **kwargs)

    monkeypatch.setattr(Producer, "publish", connection_gone_at_the_third_publish)
    assert relay.relay_pending() == 2
    [third] = commit_events(repository, 1)
    assert relay.relay_pending() == 1
    assert relay.failures == 0 and len(calls) == 4
    published = [body["id"] for body in drain(amqp_uri, regulator_queue)]
    assert sorted(published) == sorted([first, second, third])


class RelayingService:
    name = SERVICE
    store = MongoStore(Repository)
    relay = OutboxRelay()


def test_a_commit_with_events_wakes_the_relay_at_once(
    service_config, container_factory, amqp_uri, regulator_queue
):
    # A poll interval far beyond the test's wait: only the commit can wake the relay.
    config = {**service_config, "JVREG_RELAY_POLL_SECONDS": 3600}
    container = container_factory(RelayingService, config)
    container.start()
    store = next(dep for dep in container.dependencies if dep.attr_name == "store")
    relay = next(dep for dep in container.dependencies if dep.attr_name == "relay")
    wait_until(lambda: relay.relay.outbox.pending_count() == 0, 10, "the relay's first pass")
    payload = ventures.EVENTS["venture.registered"].model_validate(
        example(ventures.EVENTS["venture.registered"])
    )
    store.repository().unit_of_work(lambda unit: unit.publish(payload))
    wait_until(lambda: relay.relay.published == 1, 30, "the event published on commit")
    [record] = store.db.outbox.find()
    assert [body["id"] for body in drain(amqp_uri, regulator_queue)] == [record["_id"]]


def test_sent_records_are_pruned_after_their_retention(repository, amqp_uri, regulator_queue):
    old, recent = commit_events(repository, 2)
    relay = Relay(repository.db, event_publisher(amqp_uri, SERVICE), owner="test")
    assert relay.relay_pending() == 2
    record = repository.db.outbox.find_one({"_id": recent})
    assert record[PRUNE_HOUR] >= record["sent_at"] + RETENTION
    [pending] = commit_events(repository, 1)
    pruning = Pruning(repository.db.outbox)
    assert pruning.prune() == 0  # nothing past its retention yet
    assert pruning.prune(record["sent_at"] + RETENTION - timedelta(minutes=1)) == 0
    # An hour after the retention of both sent records, both go; the pending one stays.
    assert pruning.prune_all(record["sent_at"] + RETENTION + timedelta(hours=1)) == 2
    assert {doc["_id"]: doc["status"] for doc in repository.db.outbox.find()} == {pending: PENDING}


def test_a_backlog_beyond_what_a_look_keeps_is_published_over_several_looks(
    repository, amqp_uri, regulator_queue, monkeypatch
):
    monkeypatch.setattr(outbox, "LOOK_AHEAD", 2)
    events = [new_event(SERVICE, "venture.updated", "jv_a", n, {}) for n in (1, 2, 3)]
    events += [new_event(SERVICE, "venture.updated", f"jv_{n}", 1, {}) for n in "bcd"]
    commit(events, repository)
    assert (
        Relay(repository.db, event_publisher(amqp_uri, SERVICE), owner="test").relay_pending() == 6
    )
    published = [(body["subject"], body["sequence"]) for body in drain(amqp_uri, regulator_queue)]
    assert sorted(published) == sorted((event.subject, event.sequence) for event in events)
    assert [seq for subject, seq in published if subject == "jv_a"] == [1, 2, 3]
