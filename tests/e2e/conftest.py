"""End-to-end: the registry's real processes (one `nameko run` per service, as
`make dev` starts them) on a vhost and databases of their own, driven over HTTP."""

import uuid

import pytest

from support import Api, dev_environment, running_registry
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
    return dev_environment(amqp_uri, backends["management_url"], tmp_path)
