"""The consuming side: one effect per event id, failures requeued rather than
dropped, against the real broker and wire server."""

import json

import pytest
from kombu import Connection
from nameko.testing.services import entrypoint_waiter

from ops.processes import wait_until
from shared import messaging
from shared.envelope import new_event
from shared.inbox import EventOutOfOrder, apply_once, check_order, cloud_event_handler
from shared.mongo import MongoStore, Repository
from shared.outbox import event_publisher

from support import any_data_subscription


class ProjectionService:
    """A consumer like the facilities service's projection of ventures."""

    name = "projection_test"
    store = MongoStore(Repository)
    failures_left = {"count": 0}

    @cloud_event_handler(
        any_data_subscription("projection_test.project_venture", "ventures", "venture.#")
    )
    def project_venture(self, event, data):
        if self.failures_left["count"] > 0:
            self.failures_left["count"] -= 1
            raise ConnectionError("database hiccup")

        def effect(unit):
            session = unit.session
            self.store.db.effects.update_one(
                {"_id": event.subject}, {"$inc": {"applied": 1}}, upsert=True, session=session
            )

        apply_once(self.store, event, effect)


@pytest.fixture
def consumer(service_config, container_factory):
    ProjectionService.failures_left["count"] = 0
    container = container_factory(ProjectionService, service_config)
    container.start()
    store = next(d for d in container.dependencies if d.attr_name == "store")
    return container, store.db


def test_a_redelivered_event_has_one_effect(consumer, amqp_uri):
    container, db = consumer
    publish = event_publisher(amqp_uri, "ventures")
    event = new_event("ventures", "venture.registered", "jv_1", 1, {})
    with entrypoint_waiter(container, "project_venture"):
        publish(event)
    with entrypoint_waiter(container, "project_venture"):
        publish(event)  # at-least-once delivery: the same event id again
    assert db.effects.find_one({"_id": "jv_1"})["applied"] == 1
    assert db.inbox.count_documents({"_id": event.id}) == 1


def test_a_failing_handler_gets_the_message_again_instead_of_dropping_it(consumer, amqp_uri):
    container, db = consumer
    ProjectionService.failures_left["count"] = 2
    publish = event_publisher(amqp_uri, "ventures")
    publish(new_event("ventures", "venture.registered", "jv_2", 1, {}))
    wait_until(
        lambda: db.effects.find_one({"_id": "jv_2"}) is not None,
        20,
        "the event applied after two failures",
    )
    assert ProjectionService.failures_left["count"] == 0
    assert db.effects.find_one({"_id": "jv_2"})["applied"] == 1


def test_an_event_queued_as_plain_json_before_the_upgrade_is_still_applied(consumer, amqp_uri):
    """Events were published as `application/json` until structured mode was declared
    with `application/cloudevents+json`; those still queued at an upgrade are applied."""
    container, db = consumer
    event = new_event("ventures", "venture.registered", "jv_3", 1, {})
    with entrypoint_waiter(container, "project_venture"), Connection(amqp_uri) as connection:
        connection.Producer().publish(
            json.dumps(event.wire()),
            exchange=messaging.events_exchange("ventures"),
            routing_key=event.routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            user_id=connection.userid,
        )
    assert db.effects.find_one({"_id": "jv_3"})["applied"] == 1
    assert db.inbox.count_documents({"_id": event.id}) == 1


def test_sequence_gate():
    second = new_event("ventures", "venture.updated", "jv_1", 2, {})
    assert check_order(second, last_applied=1) is True
    assert check_order(second, last_applied=2) is False  # stale duplicate
    with pytest.raises(EventOutOfOrder):
        check_order(second, last_applied=0)  # its predecessor has not been applied
