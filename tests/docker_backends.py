"""MongoDB and RabbitMQ from docker-compose.yml for the Docker test path (JVREG_TEST_DOCKER=1).

Uses pytest-docker 3.x. In a conftest::

    from docker_backends import docker_compose_file, docker_setup  # noqa: F401  (overrides)
    from docker_backends import docker_backends

    @pytest.fixture(scope="session")
    def backends(docker_ip, docker_services):
        return docker_backends(docker_ip, docker_services)

Only `mongo` and `rabbitmq` are started: RabbitMQ as the production compose file
defines it, MongoDB from its image as a single-member replica set without
authentication (production's three members with keyfile and users are checked by
tests/unit/test_deploy_compose.py), both on ephemeral host ports, so a developer's own
RabbitMQ on 5672 does not clash. Nothing here imports
eventlet or nameko; pymongo and requests are imported only when waiting.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
BACKENDS = ("mongo", "rabbitmq")
# Container ports the tests reach from the host.
BACKEND_PORTS = {"mongo": (27017,), "rabbitmq": (5672, 15672)}

# The broker's administrator in the test containers (production's password comes from
# .env): the tests make a vhost per test and the services' users through it.
TEST_ADMIN = ("jvreg-admin", "jvreg-test-admin-password")
WAIT_TIMEOUT_SECONDS = 180.0
WAIT_PAUSE_SECONDS = 1.0


def mongo_for_tests(base: dict[str, Any]) -> dict[str, Any]:
    """Production's MongoDB image as a single-member replica set without authentication
    (transactions need a set; the tests' clients log in as no one), initiated by its
    healthcheck, which is healthy only once the member is primary."""
    return {
        "image": base["services"]["mongo1"]["image"],
        "command": ["mongod", "--replSet", "rs0", "--bind_ip_all"],
        "healthcheck": {
            "test": [
                "CMD",
                "mongosh",
                "--quiet",
                "--eval",
                "var ok = 0; try { ok = rs.status().ok } catch (e) {}"
                " if (!ok) { rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'mongo:27017'}]}) }"
                " quit(db.hello().isWritablePrimary ? 0 : 1)",
            ],
            "interval": "5s",
            "timeout": "10s",
            "retries": 30,
            "start_period": "20s",
        },
    }


def backends_compose(base: dict[str, Any], docker_ip: str) -> dict[str, Any]:
    """A compose document with only the backends of `base`, on ephemeral host ports.

    RabbitMQ is derived rather than written twice, so the tests run what production
    runs; MongoDB is production's image without the keyfile and users (mongo_for_tests).
    Named volumes are dropped: the test data is thrown away by `down -v`.
    """
    # Loopback when Docker is local; a remote DOCKER_HOST is reached on its own address.
    bind = "127.0.0.1::" if docker_ip == "127.0.0.1" else ""
    services = {"mongo": mongo_for_tests(base), "rabbitmq": dict(base["services"]["rabbitmq"])}
    for name, service in services.items():
        service.pop("volumes", None)
        service.pop("container_name", None)
        # "127.0.0.1::port" or a bare "port": Docker chooses the host port.
        service["ports"] = [f"{bind}{port}" for port in BACKEND_PORTS[name]]
    user, password = TEST_ADMIN
    services["rabbitmq"]["environment"] = {
        "RABBITMQ_DEFAULT_USER": user,
        "RABBITMQ_DEFAULT_PASS": password,
    }
    return {"services": services}


@pytest.fixture(scope="session")
def docker_compose_file(docker_ip: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Override of pytest-docker's fixture: the backends of the repo's docker-compose.yml."""
    base = yaml.safe_load(COMPOSE_FILE.read_text())
    path = tmp_path_factory.mktemp("compose") / "docker-compose.backends.yml"
    path.write_text(yaml.safe_dump(backends_compose(base, docker_ip), sort_keys=False))
    return str(path)


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    """Override of pytest-docker's fixture: start only the backends, wait for healthy."""
    return ["up -d --wait " + " ".join(BACKENDS)]


def _host(docker_ip: str) -> str:
    return f"[{docker_ip}]" if ":" in docker_ip else docker_ip


def _mongo_ready(mongo_uri: str) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client = None
    try:
        client = MongoClient(mongo_uri, serverSelectionTimeoutMS=2000)
        client.admin.command("ping")
        # Transactions need the primary; the healthcheck initiates the set.
        return bool(client.admin.command("hello").get("isWritablePrimary"))
    except PyMongoError:
        return False
    finally:
        if client is not None:
            client.close()


def _rabbitmq_ready(management_url: str, host: str, amqp_port: int) -> bool:
    import requests

    try:
        response = requests.get(f"{management_url}/api/overview", timeout=2)
        if response.status_code != 200:
            return False
        # The management API can answer before the published AMQP port does.
        with socket.create_connection((host, amqp_port), timeout=2):
            return True
    except (requests.RequestException, OSError):
        return False


def docker_backends(docker_ip: str, docker_services: Any) -> dict[str, str]:
    """Wait for the compose backends and return how to reach them from the host.

    `directConnection=true`: the replica set advertises its member as `mongo:27017`,
    a name only the compose network resolves, so discovery must not follow it.
    """
    host = _host(docker_ip)
    mongo_port = docker_services.port_for("mongo", 27017)
    amqp_port = docker_services.port_for("rabbitmq", 5672)
    management_port = docker_services.port_for("rabbitmq", 15672)

    mongo_uri = f"mongodb://{host}:{mongo_port}/?directConnection=true"
    user, password = TEST_ADMIN
    amqp_uri = f"amqp://{user}:{password}@{host}:{amqp_port}/"
    management_url = f"http://{user}:{password}@{host}:{management_port}"

    docker_services.wait_until_responsive(
        check=lambda: _mongo_ready(mongo_uri),
        timeout=WAIT_TIMEOUT_SECONDS,
        pause=WAIT_PAUSE_SECONDS,
    )
    docker_services.wait_until_responsive(
        check=lambda: _rabbitmq_ready(management_url, docker_ip, amqp_port),
        timeout=WAIT_TIMEOUT_SECONDS,
        pause=WAIT_PAUSE_SECONDS,
    )
    return {"mongo_uri": mongo_uri, "amqp_uri": amqp_uri, "management_url": management_url}
