"""What the chaos scenarios found, pinned down one fault at a time (real RabbitMQ and
SecantusDB): an event never overtakes its predecessor at the relay, and a consumer holds
back an event it cannot apply yet (early, or blocked by a crashed consumer's open
transaction) for as long as that takes, instead of dead-lettering it."""

from datetime import UTC, datetime

import pytest

from ops.processes import wait_until
from shared import inbox
from shared.dead_letters import DeadLetterQueue
from shared.envelope import new_event
from shared.inbox import Projection, cloud_event_handler
from shared.messaging import DELIVERY_LIMIT
from shared.mongo import MongoStore, Repository, connect
from shared.outbox import LEASE, WAIT_FOR_PREDECESSOR, Outbox, Relay, event_publisher

from support import any_data_subscription


def test_a_relay_never_publishes_past_a_predecessor_another_relay_holds(service_config):
    client = connect(service_config["JVREG_MONGO_URI"])
    db = client[f"{service_config['JVREG_DB_PREFIX']}_relay"]
    Outbox.ensure_indexes(db)
    repository = Repository(client, db)
    events = [new_event("licensing", "license.under_review", "lic_1", n, {}) for n in (1, 2)]
    for event in events:
        repository.transaction(lambda session, event=event: Outbox(db).add(event, session))
    # What a relay that died while publishing sequence 1 leaves behind: its lease.
    db.outbox.update_one(
        {"_id": events[0].id},
        {"$set": {"available_at": datetime.now(UTC) + LEASE, "lease_owner": "a dead relay"}},
    )
    published = []
    relay = Relay(db, lambda event: published.append(event.sequence), "a live relay")

    assert relay.relay_pending() == 0
    # Held back (again, if the pass outlasted WAIT_FOR_PREDECESSOR), never published.
    assert published == [] and relay.held_back >= 1
    assert db.outbox.find_one({"_id": events[1].id})["attempts"] == 0  # not an attempt

    db.outbox.update_one({"_id": events[0].id}, {"$set": {"available_at": datetime.now(UTC)}})
    wait_until(
        lambda: relay.relay_pending() and published == [1, 2],
        5,
        "both published once the lease ended",
        pause=WAIT_FOR_PREDECESSOR.total_seconds(),
    )
    assert [doc["status"] for doc in db.outbox.find().sort("sequence")] == ["sent", "sent"]
    client.close()


class OrderedConsumer:
    """Applies venture events per venture in sequence order, once."""

    name = "hold_back_test"
    store = MongoStore(Repository)
    attempts: list[int] = []

    @cloud_event_handler(any_data_subscription("hold_back_test.apply", "ventures", "venture.#"))
    def apply(self, event, data):
        OrderedConsumer.attempts.append(event.sequence)
        db = self.store.db

        def effect(unit):
            db.applied.update_one(
                {"_id": event.subject}, {"$push": {"order": event.sequence}}, session=unit.session
            )

        Projection(db.applied).apply(self.store, event, then=effect)


@pytest.fixture
def consumer(service_config, container_factory, monkeypatch):
    # Short waits, so that the event goes round more often than the delivery limit.
    monkeypatch.setattr(inbox, "EARLY_EVENT_PATIENCE_SECONDS", 0.05)
    monkeypatch.setattr(inbox, "EARLY_EVENT_PAUSE_SECONDS", 0.05)
    monkeypatch.setattr(inbox, "APPLY_WAIT_SECONDS", 0.3)
    OrderedConsumer.attempts = []
    container = container_factory(OrderedConsumer, service_config)
    container.start()
    return next(d for d in container.dependencies if d.attr_name == "store")


def queue_drained(rabbit_management, vhost) -> bool:
    stats = rabbit_management.queue(vhost, "hold_back_test.apply")
    return (stats.get("messages_ready"), stats.get("messages_unacknowledged")) == (0, 0)


def test_an_early_event_waits_for_its_predecessor_beyond_the_delivery_limit(
    consumer, amqp_uri, vhost, rabbit_management
):
    publish = event_publisher(amqp_uri, "ventures")
    first, second = (new_event("ventures", "venture.updated", "jv_1", n, {}) for n in (1, 2))
    publish(second)
    wait_until(
        lambda: OrderedConsumer.attempts.count(2) > 2 * DELIVERY_LIMIT,
        30,
        "the early event held back, again and again",
    )
    publish(first)
    wait_until(
        lambda: consumer.db.applied.find_one({"_id": "jv_1", "sequence": 2}), 30, "both applied"
    )
    assert consumer.db.applied.find_one({"_id": "jv_1"})["order"] == [1, 2]
    assert DeadLetterQueue(amqp_uri).list() == []
    wait_until(lambda: queue_drained(rabbit_management, vhost), 15, "the queue drained")


def test_an_event_blocked_by_a_crashed_consumers_transaction_is_held_back_not_dead_lettered(
    consumer, amqp_uri, vhost, rabbit_management
):
    # A consumer that crashed mid-transaction leaves it open (the database reaps it
    # after 60 s): here one that wrote the same document and never finished.
    session = consumer.client.start_session()
    session.start_transaction()
    consumer.db.applied.insert_one({"_id": "jv_2", "sequence": 0, "order": []}, session=session)
    event = new_event("ventures", "venture.registered", "jv_2", 1, {})
    event_publisher(amqp_uri, "ventures")(event)
    wait_until(
        lambda: OrderedConsumer.attempts.count(1) > DELIVERY_LIMIT,
        60,
        "the blocked event held back more often than the delivery limit allows",
    )
    session.abort_transaction()  # the database reaps it
    session.end_session()
    wait_until(
        lambda: consumer.db.applied.find_one({"_id": "jv_2", "sequence": 1}),
        30,
        "applied once the lock is gone",
    )
    assert DeadLetterQueue(amqp_uri).list() == []
    wait_until(lambda: queue_drained(rabbit_management, vhost), 15, "the queue drained")
