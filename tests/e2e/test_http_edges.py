"""The gateway's edges against the real registry: slow and many clients hold no
workers, and 401, 405, 415, If-Match and secret-bearing answers follow the RFCs."""

import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from shared.settings import Settings

from support import Api, venture_body

CONFIG = Path(__file__).parents[2] / "deploy" / "config.yaml"
MARGIN_SECONDS = 5


def max_workers() -> int:
    return int(yaml.safe_load(CONFIG.read_text())["max_workers"])


def open_connection(registry, first_bytes: bytes) -> socket.socket:
    url = urlsplit(registry["url"])
    connection = socket.create_connection((url.hostname, url.port))
    connection.sendall(first_bytes)
    return connection


def answer_or_close(connection: socket.socket, within: float) -> bytes:
    """The first bytes the gateway sends back, or b"" if it closed the connection."""
    connection.settimeout(within)
    try:
        return connection.recv(4096)
    except ConnectionResetError:
        return b""
    finally:
        connection.close()


def test_slow_uploads_hold_no_workers_and_are_cut_off_at_the_deadline(registry, investor):
    key = investor.session.headers["Authorization"]
    slow_upload = (
        "POST /v1/ventures HTTP/1.1\r\nHost: jvreg\r\n"
        f"Authorization: {key}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{"
    ).encode()
    slow = [open_connection(registry, slow_upload) for _ in range(2 * max_workers())]
    try:
        assert requests.get(registry["url"] + "/health", timeout=1).status_code == 200
        assert investor.request("GET", "/v1/ventures?limit=1").status_code == 200
    finally:
        deadline = Settings.from_config(registry["env"]).http_body_timeout_seconds
        answers = [answer_or_close(c, deadline + MARGIN_SECONDS) for c in slow]
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers), answers


def test_one_client_address_may_hold_only_so_many_connections(registry):
    settings = Settings.from_config(registry["env"])
    # Request lines that never finish: each holds its connection until the header deadline.
    unfinished = b"GET /health HTTP/1.1\r\nHost: jvreg\r\n"
    held = [
        open_connection(registry, unfinished)
        for _ in range(settings.http_connections_per_client + 1)
    ]
    answers = [
        answer_or_close(c, settings.http_header_timeout_seconds + MARGIN_SECONDS) for c in held
    ]
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 429 ")]
    assert refused and all(a == b"" for a in answers if a not in refused), answers
    assert requests.get(registry["url"] + "/health", timeout=5).status_code == 200


def test_a_401_says_how_to_authenticate(registry):
    anonymous = requests.get(registry["url"] + "/v1/ventures", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="jvreg"'
    bad_key = Api(registry["url"], "jvk_made_up").get("/v1/ventures")
    assert bad_key.status_code == 401
    assert bad_key.headers["WWW-Authenticate"] == 'Bearer realm="jvreg", error="invalid_token"'


def test_a_405_lists_the_allowed_methods(ops):
    response = ops.request("DELETE", "/v1/ventures")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_raw_keys_and_webhook_secrets_are_never_cached(ops, regulator, receiver):
    created_key = ops.post("/v1/api-keys", json={"role": "investor", "owner": "Cache Test"})
    assert created_key.status_code == 201
    assert created_key.headers["Cache-Control"] == "no-store"
    subscription = regulator.post(
        "/v1/subscriptions", json={"url": receiver.url, "event_types": ["#"]}
    )
    assert subscription.status_code == 201, subscription.text
    assert subscription.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_a_command_body_that_is_not_declared_json_is_415(investor, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = investor.post("/v1/ventures", data=b'{"name": "x"}', headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["errors"][0]["loc"] == ["header", "Content-Type"]


def test_a_body_nested_100000_deep_is_a_400_naming_the_body(investor):
    response = investor.post(
        "/v1/ventures", data=b"[" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body"]


def test_if_match_star_a_list_and_weak_etags(investor):
    venture = investor.post("/v1/ventures", json=venture_body()).json()
    path = f"/v1/ventures/{venture['id']}"

    def patch(if_match: str):
        note = f"note {uuid.uuid4().hex[:6]}"
        return investor.patch(path, json={"description": note}, headers={"If-Match": if_match})

    assert patch("*").headers["ETag"] == '"2"'
    assert patch('"1", "2"').headers["ETag"] == '"3"'
    assert patch('W/"3"').status_code == 412
    assert patch('"1", "2"').status_code == 412
