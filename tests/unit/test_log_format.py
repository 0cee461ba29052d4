"""Log lines as deploy/config.yaml makes them: text by default, one JSON object per
line with JVREG_LOG_FORMAT=json, each with the correlation id of its request, which
the gateway takes from the caller or makes, and the event builder passes on."""

import io
import json
import logging
import logging.config
from datetime import datetime, timedelta

import pytest

from shared.envelope import CloudEvent, new_event
from shared.logs import correlated, correlation_id_from, current_correlation_id

from support import nameko_config

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Request-Id": "drap-2026-0412"}, "drap-2026-0412"),
        ({"traceparent": TRACEPARENT}, "4bf92f3577b34da6a3ce929d0e0e4736"),
        ({"X-Request-Id": "drap-1", "traceparent": TRACEPARENT}, "drap-1"),
    ],
)
def test_the_callers_id_is_kept(headers, expected):
    assert correlation_id_from(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Request-Id": ""},
        {"X-Request-Id": "two words"},  # could forge a log line or a header
        {"X-Request-Id": "x" * 129},
        {"X-Request-Id": "line\nbreak"},
        {"traceparent": "00-short-00f067aa0ba902b7-01"},
    ],
)
def test_a_missing_or_unfit_id_is_replaced_by_a_new_one(headers):
    made = correlation_id_from(headers)
    assert len(made) == 32 and made != correlation_id_from(headers)


def log_one_line(monkeypatch, log_format: str, correlation_id: str | None) -> str:
    """One INFO line through the logging configuration of deploy/config.yaml."""
    monkeypatch.setenv("JVREG_LOG_FORMAT", log_format)
    config = nameko_config()["LOGGING"]
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    logging.config.dictConfig(config)
    token = current_correlation_id.set(correlation_id)
    try:
        logging.getLogger("services.licensing").info("licence %s granted", "lic_1")
    finally:
        current_correlation_id.reset(token)
        root.handlers[:], _ = kept
        root.setLevel(kept[1])
    return stream.getvalue()


def test_text_lines_name_their_request(monkeypatch):
    line = log_one_line(monkeypatch, "text", "drap-2026-0412")
    assert line.endswith(" INFO services.licensing [drap-2026-0412]: licence lic_1 granted\n")


def test_json_lines_are_one_object_each_with_the_correlation_id(monkeypatch):
    output = log_one_line(monkeypatch, "json", "drap-2026-0412")
    assert output.count("\n") == 1
    line = json.loads(output)
    assert {key: line[key] for key in ("level", "logger", "correlation_id", "message")} == {
        "level": "INFO",
        "logger": "services.licensing",
        "correlation_id": "drap-2026-0412",
        "message": "licence lic_1 granted",
    }
    assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)


def test_a_line_outside_any_request_says_so(monkeypatch):
    assert json.loads(log_one_line(monkeypatch, "json", None))["correlation_id"] == "-"


def test_an_event_carries_the_correlation_id_of_the_request_that_caused_it():
    token = current_correlation_id.set("drap-2026-0412")
    try:
        event = new_event("licensing", "license.granted", "lic_1", 4, {})
    finally:
        current_correlation_id.reset(token)
    assert event.wire()["correlationid"] == "drap-2026-0412"
    assert CloudEvent.model_validate(event.wire()) == event


def test_an_event_made_outside_any_request_has_no_correlationid_attribute():
    token = current_correlation_id.set(None)
    try:
        event = new_event("licensing", "license.expired", "lic_1", 5, {})
    finally:
        current_correlation_id.reset(token)
    # CloudEvents: an extension attribute without a value is left out, not null.
    assert "correlationid" not in event.wire()


def test_a_background_loop_logs_under_an_events_id_only_while_it_handles_the_event():
    token = current_correlation_id.set("relay-pass")
    try:
        with pytest.raises(ConnectionError), correlated("drap-2026-0412"):
            assert current_correlation_id.get() == "drap-2026-0412"
            raise ConnectionError("broker down")  # a failed publish leaves the block early
        assert current_correlation_id.get() == "relay-pass"
        with correlated(None):  # an event no request caused
            assert current_correlation_id.get() is None
        assert current_correlation_id.get() == "relay-pass"
    finally:
        current_correlation_id.reset(token)
