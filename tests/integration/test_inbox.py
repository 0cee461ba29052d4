"""The consuming side, against the real broker and wire server: per aggregate, events
apply in `sequence` order and once, known by the last sequence applied (no record per
event id); a duplicate changes nothing and says so in one line; failures are requeued
rather than dropped."""

import json
import logging

import eventlet
import pytest
from kombu import Connection
from nameko.testing.services import entrypoint_waiter

from ops.processes import wait_until
from shared import inbox, messaging
from shared.envelope import new_event
from shared.inbox import EventOutOfOrder, Projection, cloud_event_handler, is_next
from shared.mongo import MongoStore, Repository
from shared.outbox import event_publisher

from support import any_data_subscription, handled


class ProjectionService:
    """A consumer like the facilities service's projection of ventures, whose effect
    also lists the sequences it applied per venture."""

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
            self.store.db.effects.update_one(
                {"_id": event.subject},
                {"$push": {"applied": event.sequence}},
                upsert=True,
                session=unit.session,
            )

        Projection(self.store.db.ventures).apply(self.store, event, then=effect)


def database_of(container):
    return next(d for d in container.dependencies if d.attr_name == "store").db


@pytest.fixture
def consumer(service_config, container_factory):
    ProjectionService.failures_left["count"] = 0
    container = container_factory(ProjectionService, service_config)
    container.start()
    return container, database_of(container)


def applied(db, venture_id: str) -> list[int]:
    return (db.effects.find_one({"_id": venture_id}) or {}).get("applied", [])


def skipped_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "was applied before; skipped" in r.getMessage()]


def test_a_duplicate_changes_nothing_and_says_so_in_one_line(consumer, amqp_uri, caplog):
    container, db = consumer
    caplog.set_level(logging.INFO)
    publish = event_publisher(amqp_uri, "ventures")
    first, second = (new_event("ventures", "venture.updated", "jv_1", n, {}) for n in (1, 2))
    with handled(container, "project_venture", first):
        publish(first)
    with handled(container, "project_venture", first):
        publish(first)  # at-least-once delivery: the same event again
    assert applied(db, "jv_1") == [1]
    [line] = skipped_lines(caplog)
    assert line.levelno == logging.INFO and not line.exc_info
    assert line.getMessage().startswith("jvreg.venture.updated jv_1 sequence 1 was applied")

    with handled(container, "project_venture", second):
        publish(second)
    with handled(container, "project_venture", first):
        publish(first)  # an older event redelivered after its successor
    assert applied(db, "jv_1") == [1, 2]
    assert db.ventures.find_one({"_id": "jv_1"})["sequence"] == 2
    assert len(skipped_lines(caplog)) == 2
    assert [r for r in caplog.records if r.exc_info] == []
    assert "inbox" not in db.list_collection_names()  # no record per event id


def test_an_early_event_is_held_back_until_its_predecessor_is_applied(consumer, amqp_uri):
    container, db = consumer
    publish = event_publisher(amqp_uri, "ventures")
    first, second = (new_event("ventures", "venture.updated", "jv_2", n, {}) for n in (1, 2))

    def refused_as_early(worker_ctx, result, exc_info):
        return exc_info is not None and exc_info[0] is EventOutOfOrder

    with entrypoint_waiter(container, "project_venture", callback=refused_as_early):
        publish(second)
    assert applied(db, "jv_2") == []
    publish(first)
    wait_until(lambda: applied(db, "jv_2") == [1, 2], 30, "both applied, in order")


def test_a_consumer_stopped_after_applying_applies_the_redelivered_event_once(
    consumer, service_config, container_factory, amqp_uri, monkeypatch, caplog
):
    """The crash point `after_apply`: the effect and its sequence are committed, the
    message is not acked, so the broker delivers it again to the next consumer."""
    caplog.set_level(logging.INFO)
    stopped = []

    def stop_after_applying(point):
        # Never to go on, as a process killed there: the message stays unacked.
        if point == "after_apply" and not stopped:
            stopped.append(point)
            eventlet.sleep(120)

    monkeypatch.setattr(inbox, "crash_point", stop_after_applying)
    container, db = consumer
    event = new_event("ventures", "venture.registered", "jv_3", 1, {})
    event_publisher(amqp_uri, "ventures")(event)
    wait_until(lambda: stopped, 20, "the consumer stopped after applying")
    assert applied(db, "jv_3") == [1]

    container.kill()  # its connection closes: the broker returns the unacked message
    restarted = container_factory(ProjectionService, service_config)
    with handled(restarted, "project_venture", event):
        restarted.start()
    assert applied(database_of(restarted), "jv_3") == [1]
    assert len(skipped_lines(caplog)) == 1


def test_a_failing_handler_gets_the_message_again_instead_of_dropping_it(consumer, amqp_uri):
    container, db = consumer
    ProjectionService.failures_left["count"] = 2
    publish = event_publisher(amqp_uri, "ventures")
    publish(new_event("ventures", "venture.registered", "jv_4", 1, {}))
    wait_until(lambda: applied(db, "jv_4"), 20, "the event applied after two failures")
    assert ProjectionService.failures_left["count"] == 0
    assert applied(db, "jv_4") == [1]


def test_an_event_queued_as_plain_json_before_the_upgrade_is_still_applied(consumer, amqp_uri):
    """Events were published as `application/json` until structured mode was declared
    with `application/cloudevents+json`; those still queued at an upgrade are applied."""
    container, db = consumer
    event = new_event("ventures", "venture.registered", "jv_5", 1, {})
    with entrypoint_waiter(container, "project_venture"), Connection(amqp_uri) as connection:
        connection.Producer().publish(
            json.dumps(event.wire()),
            exchange=messaging.events_exchange("ventures"),
            routing_key=event.routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            user_id=connection.userid,
        )
    assert applied(db, "jv_5") == [1]


def test_sequence_gate():
    second = new_event("ventures", "venture.updated", "jv_1", 2, {})
    assert is_next(second, last_applied=1) is True
    assert is_next(second, last_applied=2) is False  # the same event again
    assert is_next(second, last_applied=3) is False  # older than what was applied
    with pytest.raises(EventOutOfOrder):
        is_next(second, last_applied=0)  # its predecessor has not been applied
