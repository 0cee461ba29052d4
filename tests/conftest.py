"""Fixtures every test layer may use. Servers start once per session, and only when
a test asks for them: unit tests need neither a broker nor a database."""

import eventlet

# nameko runs on eventlet: patch before anything imports socket or threading.
eventlet.monkey_patch()

import os  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from ops.processes import (  # noqa: E402
    MongoServer,
    broker_reachable,
    ensure_management_api,
    free_port,
)
from shared.dead_letters import broker_user  # noqa: E402

from docker_backends import docker_backends, docker_compose_file, docker_setup  # noqa: E402,F401
from rabbit_nodes import RabbitCluster  # noqa: E402
from support import RabbitManagement, amqp_uri_for  # noqa: E402

USE_DOCKER = os.environ.get("JVREG_TEST_DOCKER") == "1"
LOCAL_AMQP = os.environ.get("JVREG_TEST_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
LOCAL_MANAGEMENT = os.environ.get(
    "JVREG_TEST_RABBIT_MANAGEMENT", "http://guest:guest@127.0.0.1:15672"
)


def _local_rabbitmq() -> dict:
    if problem := broker_reachable(LOCAL_AMQP):
        pytest.exit(
            f"RabbitMQ is not reachable at {LOCAL_AMQP} ({problem}); "
            "start it with `rabbitmq-server -detached`",
            returncode=2,
        )
    # The tests make a vhost per test through the management API.
    if problem := ensure_management_api(LOCAL_MANAGEMENT):
        pytest.exit(problem, returncode=2)
    return {"amqp_uri": LOCAL_AMQP, "management_url": LOCAL_MANAGEMENT}


@pytest.fixture(scope="session")
def backends(request, tmp_path_factory):
    """Where MongoDB and RabbitMQ are: SecantusDB started here on a free port and the
    local RabbitMQ, or (JVREG_TEST_DOCKER=1) the containers of docker-compose.yml."""
    if USE_DOCKER:
        return docker_backends(
            request.getfixturevalue("docker_ip"), request.getfixturevalue("docker_services")
        )
    rabbit = _local_rabbitmq()
    data_dir = tmp_path_factory.mktemp("secantus")
    server = MongoServer(data_dir, free_port(), log=data_dir / "server.log")
    server.start()
    request.addfinalizer(server.stop)
    return {"mongo_uri": server.uri, **rabbit}


@pytest.fixture(scope="session")
def rabbit_cluster():
    """A three-node RabbitMQ cluster of the session's own (tests/rabbit_nodes.py), for
    tests that kill broker nodes; each such test leaves every node running again."""
    cluster = RabbitCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def rabbit_management(backends):
    return RabbitManagement(backends["management_url"])


@pytest.fixture
def vhost(backends, rabbit_management):
    """A RabbitMQ vhost of this test's own, deleted afterwards."""
    name = f"jvreg-test-{uuid.uuid4().hex[:12]}"
    rabbit_management.create_vhost(name)
    yield name
    rabbit_management.delete_vhost(name)


@pytest.fixture
def amqp_uri(backends, vhost):
    return amqp_uri_for(backends["amqp_uri"], vhost)


@pytest.fixture
def service_config(backends, amqp_uri):
    """nameko config for in-process containers: this test's vhost and databases. They
    all connect as the one user of the test's broker, so its every service is that user."""
    return {
        "AMQP_URI": amqp_uri,
        "JVREG_BROKER_USER": broker_user(amqp_uri),
        "JVREG_MONGO_URI": backends["mongo_uri"],
        "JVREG_AMQP_URI": amqp_uri,
        "JVREG_DB_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "JVREG_RELAY_POLL_SECONDS": 0.2,
    }
