"""What services log, with the filters deploy/config.yaml installs, on the real broker
and wire server: an expected answer is one line without a traceback (a refusal over
RPC, an event held back until its predecessor is applied, an event tried again), and
every line of a worker carries the correlation id of the request or event it serves,
as do the lines of the background loops that publish an event (the outbox relay) and
send it to a webhook (the notifications service's deliverer)."""

import json
import logging

import pytest
from nameko.amqp.publish import Publisher
from nameko.standalone.rpc import ServiceRpcProxy

from ops.processes import wait_until
from services.licensing import contract as licensing
from services.notifications.service import NotificationsService
from shared import messaging
from shared.entrypoints import rpc
from shared.envelope import new_event
from shared.errors import NotFound
from shared.inbox import Projection, cloud_event_handler
from shared.logs import CORRELATION_ID, CorrelationIdFilter, current_correlation_id
from shared.mongo import MongoStore, Repository
from shared.outbox import Outbox, Relay, event_publisher
from shared.refusals import OneLineRefusals

from support import any_data_subscription, contract_event
from webhook_receiver import WebhookReceiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class LoggedService:
    name = "log_lines_test"
    store = MongoStore(Repository)
    failures_left = {"count": 0}
    seen_correlation_ids: list[str | None] = []

    @rpc
    def find_plant(self, plant_id):
        raise NotFound(f"no facility {plant_id}")

    @rpc
    def whose_request(self):
        return current_correlation_id.get()

    @cloud_event_handler(
        any_data_subscription("log_lines_test.project_venture", "ventures", "venture.#")
    )
    def project_venture(self, event, payload):
        self.seen_correlation_ids.append(current_correlation_id.get())
        if self.failures_left["count"] > 0:
            self.failures_left["count"] -= 1
            raise ConnectionError("database hiccup")
        Projection(self.store.db.effects).apply(self.store, event)


@pytest.fixture
def lines(caplog):
    """Log records passed through the filters deploy/config.yaml installs."""
    for installed in (CorrelationIdFilter(), OneLineRefusals()):
        caplog.handler.addFilter(installed)
    caplog.set_level(logging.INFO)
    return caplog


def correlated_container(service_config, container_factory, service_cls):
    """`service_cls` in a container of the class deploy/config.yaml names, started."""
    config = {**service_config, "SERVICE_CONTAINER_CLS": "shared.entrypoints.CorrelatedContainer"}
    container = container_factory(service_cls, config)
    container.start()
    return container


@pytest.fixture
def logged(service_config, container_factory, lines):
    LoggedService.failures_left["count"] = 0
    LoggedService.seen_correlation_ids.clear()
    container = correlated_container(service_config, container_factory, LoggedService)
    store = next(d for d in container.dependencies if d.attr_name == "store")
    return container, store.db, lines


def made_under(correlation_id: str, make):
    """What `make()` returns when called in a worker serving `correlation_id`."""
    token = current_correlation_id.set(correlation_id)
    try:
        return make()
    finally:
        current_correlation_id.reset(token)


def tracebacks(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


def test_a_refusal_over_rpc_is_one_line_under_the_callers_correlation_id(logged):
    container, _, caplog = logged
    with (
        ServiceRpcProxy(
            "log_lines_test", container.config, context_data={CORRELATION_ID: TRACE_ID}
        ) as proxy,
        pytest.raises(NotFound),
    ):
        proxy.find_plant("fac_unknown")
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused")]
    assert [r.getMessage() for r in refusals] == [
        "refused find_plant: NotFound no facility fac_unknown"
    ]
    assert refusals[0].correlation_id == TRACE_ID
    assert tracebacks(caplog) == []


def test_an_rpc_worker_runs_under_the_callers_correlation_id_and_says_it_answered(logged):
    container, _, caplog = logged
    with ServiceRpcProxy(
        "log_lines_test", container.config, context_data={CORRELATION_ID: TRACE_ID}
    ) as proxy:
        assert proxy.whose_request() == TRACE_ID
    with ServiceRpcProxy("log_lines_test", container.config) as proxy:
        assert proxy.whose_request() not in (None, TRACE_ID)  # a new one of its own

    def answered() -> list[logging.LogRecord]:
        # Logged once the worker is done, just after its reply went out.
        return [r for r in caplog.records if "whose_request answered" in r.getMessage()]

    wait_until(lambda: len(answered()) == 2, 10, "a line from each worker")
    assert answered()[0].correlation_id == TRACE_ID


def test_an_event_held_back_is_one_info_line_and_the_consumer_logs_under_its_id(logged, amqp_uri):
    container, db, caplog = logged
    publish = event_publisher(amqp_uri, "ventures")
    first, second = made_under(
        TRACE_ID,
        lambda: (
            new_event("ventures", "venture.registered", "jv_held", 1, {}),
            new_event("ventures", "venture.updated", "jv_held", 2, {}),
        ),
    )
    assert second.correlationid == TRACE_ID
    publish(second)  # before its predecessor: held back until it is applied
    wait_until(
        lambda: any(r.getMessage().startswith("held back") for r in caplog.records),
        20,
        "the early event held back",
    )
    publish(first)
    wait_until(
        lambda: (db.effects.find_one({"_id": "jv_held"}) or {}).get("sequence") == 2,
        30,
        "both events applied in order",
    )
    held = [r for r in caplog.records if r.getMessage().startswith("held back")]
    assert held[0].levelno == logging.INFO and "sequence 2 arrived before 1" in held[0].getMessage()
    assert tracebacks(caplog) == []
    assert set(LoggedService.seen_correlation_ids) == {TRACE_ID}
    handled = [r for r in caplog.records if "handled jvreg.venture" in r.getMessage()]
    assert handled and {r.correlation_id for r in handled} == {TRACE_ID}


def test_an_event_tried_again_says_so_in_one_warning(logged, amqp_uri):
    container, db, caplog = logged
    LoggedService.failures_left["count"] = 1
    publish = event_publisher(amqp_uri, "ventures")
    publish(new_event("ventures", "venture.registered", "jv_retried", 1, {}))
    wait_until(
        lambda: db.effects.find_one({"_id": "jv_retried"}) is not None,
        20,
        "the event applied after one failure",
    )
    again = [r for r in caplog.records if r.getMessage().startswith("trying a message")]
    assert len(again) == 1 and again[0].levelno == logging.WARNING
    assert "1 failure(s) of its handler: ConnectionError: database hiccup" in again[0].getMessage()
    # The failure itself was unexpected: that one has its traceback.
    assert [r.exc_info[0] for r in tracebacks(caplog)] == [ConnectionError]


def test_the_outbox_relays_line_about_an_event_carries_the_events_correlation_id(logged, amqp_uri):
    container, _, caplog = logged
    store = next(d for d in container.dependencies if d.attr_name == "store")
    repository = store.repository()
    event = made_under(
        TRACE_ID, lambda: new_event("ventures", "venture.registered", "jv_unroutable", 1, {})
    )
    repository.transaction(lambda session: Outbox(repository.db).add(event, session))
    # An exchange no queue is bound to: the relay's one line about the event is an error.
    exchange = messaging.events_exchange("nobody-listens")
    publisher = Publisher(amqp_uri, use_confirms=True, mandatory=True, declare=[exchange])
    relay = Relay(
        repository.db,
        lambda e: publisher.publish(e.wire(), exchange=exchange, routing_key=e.routing_key),
        owner="test",
    )
    own_id = current_correlation_id.get()
    assert relay.relay_pending() == 0
    [unroutable] = [r for r in caplog.records if "is unroutable" in r.getMessage()]
    assert event.id in unroutable.getMessage() and unroutable.correlation_id == TRACE_ID
    assert current_correlation_id.get() == own_id  # the relay's own id is back afterwards


def test_a_webhook_attempts_line_carries_the_events_correlation_id(
    service_config, container_factory, lines, amqp_uri
):
    config = {**service_config, "JVREG_WEBHOOK_ALLOW_PRIVATE": True}
    correlated_container(config, container_factory, NotificationsService)
    with WebhookReceiver() as receiver, ServiceRpcProxy("notifications", config) as proxy:
        subscription = {"url": receiver.answer("/hook", 204), "event_types": ["license.#"]}
        proxy.create_subscription(
            json.dumps(subscription),
            {"key_id": "key_drap1", "role": "regulator", "owner": "DRAP Licensing Division"},
        )
        # The licence's first event (sequence 1), so the consumer applies it at once.
        event = made_under(
            TRACE_ID,
            lambda: contract_event(licensing.EVENTS["license.granted"], license={"version": 1}),
        )
        event_publisher(amqp_uri, "licensing")(event)

        def attempts() -> list[logging.LogRecord]:
            return [r for r in lines.records if r.getMessage().startswith(f"webhook {event.id}")]

        wait_until(lambda: attempts(), 30, "the delivery attempted and logged")
    assert [r.correlation_id for r in attempts()] == [TRACE_ID]
    assert "delivered" in attempts()[0].getMessage()
