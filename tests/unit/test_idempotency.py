"""The rules of idempotent commands, without a broker or database: which requests are
the same, what a kept record means for a retry, and what is kept of an answer."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.gateway.idempotency import (
    IN_FLIGHT_LEASE,
    RECORD_LIFETIME,
    fingerprint,
    idempotency_key,
    replayed,
    reply_to_keep,
    verdict,
)
from services.gateway.problems import BadRequest

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VENTURE = b'{"name": "Hattar Amoxicillin Works", "partners": [{"equity_pct": "51"}]}'


def of_post(body: bytes, path="/v1/ventures", method="POST", query=b"") -> str:
    return fingerprint(method, path, query, body)


def test_a_retry_serialised_differently_is_the_same_request():
    reordered = b'{ "partners":[ {"equity_pct":"51"} ],\n "name":"Hattar Amoxicillin Works" }'
    assert of_post(reordered) == of_post(VENTURE)


@pytest.mark.parametrize(
    "other",
    [
        {"body": VENTURE.replace(b"Hattar", b"Haripur")},
        {"body": VENTURE, "path": "/v1/subscriptions"},
        {"body": VENTURE, "method": "PUT"},
        {"body": VENTURE, "query": b"dry_run=1"},
    ],
)
def test_another_body_path_method_or_query_is_another_request(other):
    assert of_post(**other) != of_post(VENTURE)


def test_numbers_keep_their_literal_text():
    assert of_post(b'{"equity_pct": 51}') != of_post(b'{"equity_pct": 51.0}')
    assert of_post(b'{"equity_pct": 51}') != of_post(b'{"equity_pct": "51"}')
    assert of_post(b'{"amount": 0.1}') == of_post(b'{"amount":0.1}')


def test_a_body_that_is_not_json_is_fingerprinted_as_it_is():
    assert of_post(b"name=x") == of_post(b"name=x")
    assert of_post(b"name=x") != of_post(b"name=y")
    assert of_post(b"\xff\xfe") != of_post(b"\xff")


def record(**changes) -> dict:
    kept = {
        "fingerprint": "f1",
        "state": "done",
        "lease_until": NOW - IN_FLIGHT_LEASE,
        "expires_at": NOW - timedelta(minutes=5) + RECORD_LIFETIME,
    }
    return kept | changes


def test_a_finished_request_sent_again_is_replayed():
    assert verdict(record(), "f1", NOW) == "replay"


def test_another_request_with_a_kept_key_is_refused():
    assert verdict(record(), "f2", NOW) == "mismatch"
    assert verdict(record(state="running", lease_until=NOW + IN_FLIGHT_LEASE), "f2", NOW) == (
        "mismatch"
    )


def test_a_request_still_running_is_in_flight_until_its_lease_runs_out():
    running = record(state="running", lease_until=NOW + timedelta(seconds=5))
    assert verdict(running, "f1", NOW) == "in_flight"
    assert verdict(running, "f1", NOW + timedelta(seconds=5)) == "take_over"


def test_a_key_older_than_a_day_is_free_for_any_request():
    day_old = record(expires_at=NOW)
    assert verdict(day_old, "f1", NOW) == "take_over"
    assert verdict(day_old, "another request", NOW) == "take_over"


def test_a_server_error_is_not_kept_so_a_retry_tries_again():
    assert reply_to_keep(500, {}, b"{}") is None
    assert reply_to_keep(503, {"Retry-After": "1"}, b"{}") is None


def test_a_client_error_is_kept_with_the_headers_that_matter():
    problem = b'{"status": 422, "title": "Invalid input"}'
    headers = {"Content-Type": "application/problem+json", "Set-Cookie": "x", "Date": "today"}
    kept = reply_to_keep(422, headers, problem)
    assert kept == {
        "status": 422,
        "headers": {"Content-Type": "application/problem+json"},
        "body": problem,
    }


def test_a_created_resource_is_kept_with_location_and_etag():
    headers = {
        "Content-Type": "application/json",
        "Location": "/v1/ventures/jv_1",
        "ETag": '"1"',
        "Content-Length": "30",
    }
    body = b'{"id":"jv_1","version":1}'
    kept = reply_to_keep(201, headers, body)
    assert kept["body"] == body
    assert set(kept["headers"]) == {"Content-Type", "Location", "ETag"}
    replay = replayed(kept)
    assert replay.status_code == 201 and replay.get_data() == body
    assert replay.headers["Location"] == "/v1/ventures/jv_1" and replay.headers["ETag"] == '"1"'
    assert replay.headers["Content-Type"] == "application/json"
    assert replay.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(
    "field, secret",
    [("key", "jvk_d2VsbC1rZXB0LXNlY3JldA"), ("secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZI=")],
)
def test_a_secret_shown_once_is_never_kept(field, secret):
    body = json.dumps({"id": "x_1", field: secret, "owner": "DRAP"}).encode()
    kept = reply_to_keep(201, {"Content-Type": "application/json"}, body)
    assert secret.encode() not in kept["body"]
    replay = json.loads(kept["body"])
    assert replay["id"] == "x_1" and replay["owner"] == "DRAP"
    assert replay[field] is None
    assert replay["replay_notice"]["fields"] == [field]
    assert replay["replay_notice"]["type"] == "/problems/secret-not-replayed"


def request_with_key(key: str | None) -> Request:
    headers = {} if key is None else {"Idempotency-Key": key}
    return Request(
        EnvironBuilder(method="POST", path="/v1/ventures", headers=headers).get_environ()
    )


def test_an_idempotency_key_is_one_to_255_printable_characters():
    assert idempotency_key(request_with_key(None)) is None
    assert idempotency_key(request_with_key("register-7f3a")) == "register-7f3a"
    assert idempotency_key(request_with_key("k" * 255)) == "k" * 255
    for bad in ("", "k" * 256, "tab\there"):
        with pytest.raises(BadRequest) as caught:
            idempotency_key(request_with_key(bad))
        assert caught.value.errors[0]["loc"] == ["header", "Idempotency-Key"]
