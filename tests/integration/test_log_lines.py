"""What services log, with the filters deploy/config.yaml installs, on the real broker
and wire server: an expected answer is one line without a traceback (a refusal over
RPC, an event held back until its predecessor is applied, an event tried again), and
every line of a worker carries the correlation id of the request or event it serves."""

import logging

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from ops.processes import wait_until
from shared.entrypoints import rpc
from shared.envelope import new_event
from shared.errors import NotFound
from shared.inbox import apply_once, check_order, cloud_event_handler
from shared.logs import CORRELATION_ID, CorrelationIdFilter, current_correlation_id
from shared.mongo import MongoStore, Repository
from shared.outbox import event_publisher
from shared.refusals import OneLineRefusals

from support import any_data_subscription

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

        def effect(unit):
            session = unit.session
            last = self.store.db.effects.find_one({"_id": event.subject}, session=session)
            if check_order(event, last["sequence"] if last else 0):
                self.store.db.effects.replace_one(
                    {"_id": event.subject},
                    {"sequence": event.sequence},
                    upsert=True,
                    session=session,
                )

        apply_once(self.store, event, effect)


@pytest.fixture
def logged(service_config, container_factory, caplog):
    """The service in a container of the class deploy/config.yaml names, its log records
    passed through the filters the config installs."""
    LoggedService.failures_left["count"] = 0
    LoggedService.seen_correlation_ids.clear()
    config = {**service_config, "SERVICE_CONTAINER_CLS": "shared.entrypoints.CorrelatedContainer"}
    container = container_factory(LoggedService, config)
    container.start()
    for installed in (CorrelationIdFilter(), OneLineRefusals()):
        caplog.handler.addFilter(installed)
    caplog.set_level(logging.INFO)
    store = next(d for d in container.dependencies if d.attr_name == "store")
    return container, store.db, caplog


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
    assert [r.getMessage() for r in refusals] == ["refused find_plant: 404 no facility fac_unknown"]
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
    token = current_correlation_id.set(TRACE_ID)  # as in the worker that made them
    try:
        first = new_event("ventures", "venture.registered", "jv_held", 1, {})
        second = new_event("ventures", "venture.updated", "jv_held", 2, {})
    finally:
        current_correlation_id.reset(token)
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
