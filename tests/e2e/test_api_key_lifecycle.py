"""API keys over HTTP: list, revoke, rotate with grace, expiry and last_used_at on the
whole registry; the bootstrap key's rules, throttling and the refusal log on a gateway
of their own (its rate limits are set low, and it locks out 127.0.0.1 when asked to)."""

import os
import secrets
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from ops.processes import Stack, free_port, wait_until

from support import Api

JVREG = str(Path(sys.executable).parent / "jvreg")
PUBLIC_FIELDS = {
    "id",
    "role",
    "owner",
    "created_at",
    "created_by",
    "expires_at",
    "revoked_at",
    "last_used_at",
}


def organisation() -> str:
    return f"Key Holder {uuid.uuid4().hex[:8]}"


def create_key(ops: Api, **body) -> dict:
    response = ops.post("/v1/api-keys", json={"role": "investor", "owner": organisation(), **body})
    assert response.status_code == 201, response.text
    return response.json()


def as_caller(registry, created: dict) -> Api:
    return Api(registry["url"], created["key"])


def works(api: Api) -> bool:
    return api.get("/v1/ventures").status_code == 200


def every_key(api: Api) -> list[dict]:
    items, cursor = [], None
    while True:
        response = api.get("/v1/api-keys", params={"limit": 200, "cursor": cursor})
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items


def test_ops_list_every_key_others_their_organisations_never_a_secret(registry, ops):
    owner = organisation()
    first = create_key(ops, owner=owner)
    second = create_key(ops, owner=owner, role="regulator")
    stranger = create_key(ops)

    own = every_key(as_caller(registry, first))
    assert {key["id"] for key in own} == {first["id"], second["id"]}
    assert all(set(key) == PUBLIC_FIELDS for key in own), own
    assert first["key"] not in str(own)

    everyone = {key["id"]: key for key in every_key(ops)}
    assert {first["id"], second["id"], stranger["id"]} <= set(everyone)
    assert everyone[stranger["id"]]["owner"] == stranger["owner"]
    assert all(set(key) == PUBLIC_FIELDS for key in everyone.values())


def test_a_revoked_key_is_refused_at_once(registry, ops):
    created = create_key(ops)
    caller = as_caller(registry, created)
    assert works(caller)
    stranger = as_caller(registry, create_key(ops))
    assert stranger.request("DELETE", f"/v1/api-keys/{created['id']}").status_code == 404

    revoked = ops.request("DELETE", f"/v1/api-keys/{created['id']}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert caller.get("/v1/ventures").status_code == 401


def test_rotation_without_grace_ends_the_old_key_at_once(registry, ops):
    created = create_key(ops)
    rotated = ops.post(f"/v1/api-keys/{created['id']}/rotate")
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert (new["role"], new["owner"]) == (created["role"], created["owner"])
    assert works(as_caller(registry, new))
    assert as_caller(registry, created).get("/v1/ventures").status_code == 401
    again = ops.post(f"/v1/api-keys/{created['id']}/rotate")
    assert again.status_code == 409, again.text


def test_rotation_with_grace_keeps_the_old_key_until_the_grace_ends(registry, ops):
    created = create_key(ops)
    old = as_caller(registry, created)
    # An organisation rotates its own key.
    rotated = old.post(f"/v1/api-keys/{created['id']}/rotate", json={"grace_seconds": 4})
    assert rotated.status_code == 201, rotated.text
    new = as_caller(registry, rotated.json())
    assert works(new) and works(old)
    ends = ops.get(f"/v1/api-keys/{created['id']}").json()["expires_at"]
    assert (
        ends is not None and ops.get(f"/v1/api-keys/{created['id']}").json()["revoked_at"] is None
    )
    wait_until(lambda: old.get("/v1/ventures").status_code == 401, 30, "the grace to end")
    assert works(new)


def test_a_key_stops_working_when_it_expires(registry, ops):
    soon = datetime.now(UTC) + timedelta(seconds=3)
    created = create_key(ops, expires_at=soon.isoformat())
    caller = as_caller(registry, created)
    assert abs(datetime.fromisoformat(created["expires_at"]) - soon) < timedelta(milliseconds=1)
    wait_until(lambda: caller.get("/v1/ventures").status_code == 401, 30, "the key to expire")

    in_days = create_key(ops, expires_in_days=90)
    assert datetime.fromisoformat(in_days["expires_at"]) > datetime.now(UTC) + timedelta(days=89)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 10_000}, "expires_in_days"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2999-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_an_expiry_out_of_bounds_is_422_naming_the_field(ops, body, field):
    response = ops.post("/v1/api-keys", json={"role": "investor", "owner": "Bounded", **body})
    assert response.status_code == 422, response.text
    errors = {tuple(error["loc"]): error["type"] for error in response.json()["errors"]}
    assert errors.get(("body", field)) not in (None, "extra_forbidden"), errors


def test_last_used_at_is_set_by_use_and_written_at_most_once_a_minute(registry, ops):
    created = create_key(ops)
    path = f"/v1/api-keys/{created['id']}"
    assert ops.get(path).json()["last_used_at"] is None
    caller = as_caller(registry, created)
    assert works(caller)
    first_use = ops.get(path).json()["last_used_at"]
    assert first_use is not None
    assert works(caller)
    assert ops.get(path).json()["last_used_at"] == first_use


# A gateway of its own: the other services are not needed to authenticate.


def start_gateway(backends, tmp_path, ops_key: str, db_prefix: str, **settings) -> Stack:
    env = {
        "JVREG_MONGO_URI": backends["mongo_uri"],
        "JVREG_AMQP_URI": backends["amqp_uri"],
        "JVREG_DB_PREFIX": db_prefix,
        "JVREG_GATEWAY_PORT": str(free_port()),
        "JVREG_OPS_KEY": ops_key,
        **settings,
    }
    stack = Stack(env, log_dir=tmp_path / uuid.uuid4().hex[:6], services=("gateway",))
    stack.start()
    return stack


def serving(stack: Stack) -> Stack:
    def answers() -> bool:
        if stack.exited():
            raise RuntimeError(log_of(stack))
        return requests.get(f"{stack.gateway_url}/openapi.json", timeout=5).ok

    wait_until(answers, 60, "the gateway")
    return stack


def log_of(stack: Stack) -> str:
    return stack.processes["gateway"].log_path.read_text()


def strong_key() -> str:
    return "jvk_ops_" + secrets.token_urlsafe(32)


@pytest.fixture
def gateway(backends, tmp_path):
    """start(ops_key=..., db_prefix=..., **JVREG settings) -> a started gateway."""
    started: list[Stack] = []

    def start(ops_key: str | None = None, db_prefix: str | None = None, **settings) -> Stack:
        prefix = db_prefix or f"keys{uuid.uuid4().hex[:8]}"
        stack = start_gateway(backends, tmp_path, ops_key or strong_key(), prefix, **settings)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def test_failed_authentications_from_one_address_are_throttled_with_retry_after(gateway):
    ops_key = strong_key()
    stack = serving(gateway(ops_key, JVREG_AUTH_FAILURE_LIMIT="3/minute"))
    guesser = Api(stack.gateway_url, "jvk_" + secrets.token_urlsafe(32))
    for _ in range(3):
        assert guesser.get("/v1/api-keys").status_code == 401
    throttled = guesser.get("/v1/api-keys")
    assert throttled.status_code == 429, throttled.text
    problem = throttled.json()
    assert problem["type"] == "/problems/too-many-requests"
    assert 1 <= problem["retry_after"] <= 60
    assert throttled.headers["Retry-After"] == str(problem["retry_after"])
    # While locked out, the address gets no answer about any key, even a good one.
    assert Api(stack.gateway_url, ops_key).get("/v1/api-keys").status_code == 429


def test_expensive_reads_are_throttled_per_key(gateway):
    ops_key = strong_key()
    stack = serving(gateway(ops_key, JVREG_EXPENSIVE_READ_LIMIT="3/minute"))
    ops = Api(stack.gateway_url, ops_key)
    assert [ops.get("/v1/api-keys").status_code for _ in range(4)] == [200, 200, 200, 429]
    other = ops.post("/v1/api-keys", json={"role": "regulator", "owner": "DRAP"}).json()
    assert Api(stack.gateway_url, other["key"]).get("/v1/api-keys").status_code == 200


def test_a_401_is_one_line_in_the_log_and_no_traceback(gateway):
    stack = serving(gateway())
    marker = f"/v1/api-keys?probe={uuid.uuid4().hex}"
    assert Api(stack.gateway_url, "jvk_wrong").get(marker).status_code == 401

    def logged() -> bool:
        return "refused GET /v1/api-keys" in log_of(stack)

    wait_until(logged, 10, "the refusal in the log")
    log = log_of(stack)
    assert "Traceback" not in log, log
    # Besides eventlet's access line, which every request has: one line of refusal.
    refusals = [line for line in log.splitlines() if "nameko.containers" in line]
    assert len(refusals) == 1 and "401" in refusals[0], log


def test_a_new_bootstrap_key_revokes_the_previous_one(gateway):
    prefix = f"keys{uuid.uuid4().hex[:8]}"
    old_key, new_key = strong_key(), strong_key()
    first = serving(gateway(old_key, prefix))
    assert Api(first.gateway_url, old_key).get("/v1/api-keys").status_code == 200
    first.stop()

    second = serving(gateway(new_key, prefix))
    assert Api(second.gateway_url, new_key).get("/v1/api-keys").status_code == 200
    assert Api(second.gateway_url, old_key).get("/v1/api-keys").status_code == 401
    keys = Api(second.gateway_url, new_key).get("/v1/api-keys").json()["items"]
    bootstrap = [key for key in keys if key["created_by"] == "bootstrap"]
    assert [key["revoked_at"] is None for key in bootstrap] == [False, True]


def test_the_gateway_refuses_to_start_with_a_weak_bootstrap_key(gateway):
    stack = gateway("jvk_ops_x")
    wait_until(lambda: stack.exited() == ["gateway"], 60, "the gateway to exit")
    assert "JVREG_OPS_KEY is too weak" in log_of(stack)


def test_jvreg_dev_refuses_a_weak_bootstrap_key_and_starts_nothing(tmp_path, amqp_uri):
    env = {**os.environ, "JVREG_OPS_KEY": "x", "JVREG_AMQP_URI": amqp_uri}
    env.pop("JVREG_MONGO_URI", None)
    mongo_port = free_port()
    dev = subprocess.Popen(
        [JVREG, "dev", "--data-dir", str(tmp_path), "--mongo-port", str(mongo_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = dev.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        dev.send_signal(signal.SIGINT)  # it started: let it stop what it started
        dev.communicate(timeout=60)
        raise
    assert dev.returncode == 2, stderr
    assert "JVREG_OPS_KEY" in stderr and "secrets.token_urlsafe" in stderr
    assert not (tmp_path / "mongo").exists()
