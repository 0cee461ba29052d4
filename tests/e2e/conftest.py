"""End-to-end: the registry's real processes (one `nameko run` per service, as
`make dev` starts them) on a vhost and databases of their own, driven over HTTP."""

import secrets
import uuid

import pytest

from shared.cli.processes import Stack, free_port

from support import TEST_BROKER_USER, Api, amqp_uri_for, registry_users
from webhook_receiver import WebhookReceiver


@pytest.fixture(scope="session")
def registry(backends, rabbit_management, tmp_path_factory):
    """The running registry: its gateway URL, AMQP URI (the test's own, as `guest`),
    each service's (`amqp_uris`, as its own broker user) and bootstrap ops key."""
    vhost = f"jvreg-e2e-{uuid.uuid4().hex[:10]}"
    rabbit_management.create_vhost(vhost)
    amqp_uri = amqp_uri_for(backends["amqp_uri"], vhost)
    amqp_uris = registry_users(rabbit_management, amqp_uri)
    ops_key = "jvk_ops_" + secrets.token_urlsafe(24)
    env = {
        "JVREG_MONGO_URI": backends["mongo_uri"],
        "JVREG_AMQP_URI": amqp_uri,
        "JVREG_BROKER_USER": TEST_BROKER_USER,
        "JVREG_DB_PREFIX": f"e2e{uuid.uuid4().hex[:8]}",
        "JVREG_GATEWAY_PORT": str(free_port()),
        "JVREG_OPS_KEY": ops_key,
        "JVREG_EXPIRY_SWEEP_SECONDS": "1",
        "JVREG_WEBHOOK_ALLOW_PRIVATE": "true",
        "JVREG_RELAY_POLL_SECONDS": "0.2",
        "JVREG_RPC_TIMEOUT_SECONDS": "5",
    }
    log_dir = tmp_path_factory.mktemp("registry-logs")
    stack = Stack(env, log_dir=log_dir, amqp_uris=amqp_uris)
    stack.start()
    try:
        stack.wait_healthy(90)
    except Exception:
        stack.stop()
        for log in sorted(log_dir.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
        raise
    yield {
        "url": stack.gateway_url,
        "amqp_uri": amqp_uri,
        "amqp_uris": amqp_uris,
        "vhost": vhost,
        "ops_key": ops_key,
        "stack": stack,
        "env": env,
        "log_dir": log_dir,
    }
    stack.stop()
    rabbit_management.delete_vhost(vhost)


@pytest.fixture(scope="session")
def ops(registry) -> Api:
    return Api(registry["url"], registry["ops_key"])


@pytest.fixture(scope="session")
def new_key(registry, ops):
    """Create an API key: new_key("investor", "Lahore Pharma Holdings") -> Api."""

    def create(role: str, owner: str) -> Api:
        response = ops.post("/v1/api-keys", json={"role": role, "owner": owner})
        assert response.status_code == 201, response.text
        return Api(registry["url"], response.json()["key"])

    return create


@pytest.fixture
def investor(new_key) -> Api:
    return new_key("investor", f"Investor {uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="session")
def regulator(new_key) -> Api:
    return new_key("regulator", "DRAP Licensing Division")


@pytest.fixture
def receiver():
    """A real HTTP server on loopback that records the webhooks it receives."""
    with WebhookReceiver() as server:
        yield server
