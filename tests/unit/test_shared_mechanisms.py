"""The shared package's pure parts: JSON codec, CloudEvents envelope, cursors, errors."""

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from bson import Decimal128, ObjectId
from nameko.exceptions import deserialize, serialize
from pydantic import ValidationError

import shared.rpc_errors  # noqa: F401 - the registration under test
from shared import codec, mongo
from shared.envelope import CloudEvent, new_event
from shared.errors import Conflict, InvalidInput, NotFound
from shared.pagination import decode_cursor, encode_cursor, page, parse_limit


def test_codec_writes_decimals_as_strings_and_times_as_utc():
    pakistan = timezone(timedelta(hours=5))
    text = codec.dumps(
        {
            "amount": Decimal("1250000.50"),
            "stored": Decimal128("0.10"),
            "at": datetime(2026, 1, 31, 17, 0, tzinfo=pakistan),
            "on": date(2026, 1, 31),
            "id": ObjectId("6b09ca1e45901e5f93479c31"),
        }
    )
    assert json.loads(text) == {
        "amount": "1250000.50",
        "stored": "0.10",
        "at": "2026-01-31T12:00:00.000Z",
        "on": "2026-01-31",
        "id": "6b09ca1e45901e5f93479c31",
    }


def test_codec_reads_numbers_exactly():
    assert codec.loads('{"pct": 33.33}')["pct"] == Decimal("33.33")


def test_codec_refuses_what_it_cannot_represent():
    with pytest.raises(TypeError):
        codec.dumps({"x": object()})


def test_new_event_has_every_cloudevents_attribute():
    event = new_event("ventures", "venture.registered", "jv_1", 1, {"venture": {"id": "jv_1"}})
    wire = event.wire()
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "jvreg.venture.registered"
    assert wire["source"] == "/jvreg/ventures"
    assert wire["datacontenttype"] == "application/json"
    assert wire["time"].endswith("Z")
    assert event.routing_key == "venture.registered"
    assert CloudEvent.model_validate(json.loads(json.dumps(wire))) == event


@pytest.mark.parametrize(
    "change",
    [
        {"specversion": "0.3"},
        {"time": "yesterday"},
        {"time": "2026-01-01T00:00:00"},  # no offset: ambiguous
        {"type": "venture.registered"},  # not one of ours
        {"sequence": 0},
        {"id": ""},
    ],
)
def test_invalid_envelopes_are_refused(change):
    wire = new_event("ventures", "venture.updated", "jv_1", 2, {}).wire()
    with pytest.raises(ValidationError):
        CloudEvent.model_validate({**wire, **change})


def test_a_missing_attribute_is_refused():
    wire = new_event("ventures", "venture.updated", "jv_1", 2, {}).wire()
    del wire["subject"]
    with pytest.raises(ValidationError):
        CloudEvent.model_validate(wire)


def test_cursor_round_trip_and_malformed_cursors():
    assert decode_cursor(encode_cursor("jv_6b09")) == "jv_6b09"
    assert decode_cursor(None) is None
    for bad in ("not-a-cursor", "e30", encode_cursor("x")[:-3] + "!!"):
        with pytest.raises(InvalidInput) as caught:
            decode_cursor(bad)
        assert caught.value.errors[0]["loc"] == ["cursor"]  # in the query (the edge says)


@pytest.mark.parametrize("raw, expected", [(None, 50), ("1", 1), ("200", 200)])
def test_limits_within_range(raw, expected):
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["0", "201", "ten", "-1"])
def test_limits_out_of_range_name_the_parameter(raw):
    with pytest.raises(InvalidInput) as caught:
        parse_limit(raw)
    assert caught.value.errors[0]["loc"] == ["limit"]


def test_page_links_to_the_next_only_when_there_is_more():
    items = [{"id": f"jv_{i}"} for i in range(3)]
    assert page(items, 3) == {"items": items, "next_cursor": None}
    more = page(items, 2)
    assert more["items"] == items[:2]
    assert decode_cursor(more["next_cursor"]) == "jv_1"


def test_errors_cross_rpc_as_the_same_type_with_typed_details():
    error = Conflict(
        "a registered venture cannot become suspended",
        extra={"current": "registered", "allowed": ["active", "dissolved"]},
    )
    invalid = InvalidInput(
        "1 invalid field(s)",
        [{"loc": ["partners", 0, "equity_pct"], "msg": "x", "type": "y"}],
    )
    for original in (error, invalid, NotFound("no venture jv_1")):
        wire = json.loads(json.dumps(serialize(original)))  # as nameko sends it
        received = deserialize(wire)
        assert type(received) is type(original)
        assert (received.detail, received.errors, received.extra) == (
            original.detail,
            original.errors,
            original.extra,
        )
    assert deserialize(json.loads(json.dumps(serialize(invalid)))).errors[0]["loc"][1] == 0


def test_times_are_stored_to_the_millisecond():
    from shared.clock import utcnow

    now = utcnow()
    assert now.tzinfo is UTC and now.microsecond % 1000 == 0


def test_the_backoff_grows_to_its_bound_and_is_jittered():
    at_most = [mongo.transaction_backoff(retry, jitter=lambda: 1.0) for retry in range(1, 16)]
    assert at_most[:3] == [0.005, 0.0075, 0.01125]
    assert at_most == sorted(at_most)
    assert at_most[-1] == mongo.BACKOFF_MOST_SECONDS
    assert mongo.transaction_backoff(3, jitter=lambda: 0.0) == 0.0
