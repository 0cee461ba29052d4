"""End-to-end: the registry's real processes (one `nameko run` per service, as
`make dev` starts them) on a vhost and databases of their own, driven over HTTP."""

import json
import os
import uuid

import pytest

from ops.processes import free_port
from shared import messaging

from support import TEST_BROKER_PASSWORD, TEST_BROKER_USER, Api, running_registry
from webhook_receiver import WebhookReceiver


@pytest.fixture(scope="session")
def registry(backends, rabbit_management, tmp_path_factory):
    """The running registry the end-to-end tests share."""
    log_dir = tmp_path_factory.mktemp("registry-logs")
    with running_registry(backends, rabbit_management, log_dir) as registry:
        yield registry


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


@pytest.fixture
def dev_env(amqp_uri, backends, tmp_path):
    """The environment of a `jvreg dev` on this test's vhost, data in `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if k not in ("JVREG_MONGO_URI", "JVREG_OPS_KEY")}
    env.update(
        JVREG_AMQP_URI=amqp_uri,
        JVREG_GATEWAY_PORT=str(free_port()),
        JVREG_BROKER_USER=TEST_BROKER_USER,
        JVREG_BROKER_ADMIN_URL=backends["management_url"],
    )
    # The tests' broker users and password (users are global): `jvreg dev` keeps them.
    names = (*messaging.SERVICES, messaging.OPS)
    passwords = {name: TEST_BROKER_PASSWORD for name in names}
    (tmp_path / "broker-passwords.json").write_text(json.dumps(passwords))
    return env
