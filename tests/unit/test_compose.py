"""Static checks of docker-compose.yml, deploy/Dockerfile and the Docker test path.

No Docker engine is needed (docs/architecture.md §3): these parse the files and assert the
properties `make up` and `docker compose up --scale licensing=3` depend on.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from ops.broker import password_variable
from shared import messaging

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_SERVICES = (
    "gateway",
    "ventures",
    "facilities",
    "licensing",
    "investments",
    "notifications",
    "search",
)
BACKENDS = ("mongo", "rabbitmq")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    """Dockerfile instructions, comments and blank lines removed, continuations joined."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def published(service: dict) -> list[tuple[str, str]]:
    """(host port, container port) of each published port, short or long syntax."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            result.append((str(port.get("published", "")), str(port["target"])))
        else:
            *host, target = str(port).split(":")
            result.append((host[-1] if host else "", target.split("/")[0]))
    return result


def secrets_named(value: str) -> str:
    """`value` with each required variable (`${NAME:?message}`) replaced by its name."""
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"\1", value)


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_no_obsolete_version_key(compose):
    assert "version" not in compose


def test_all_services_present(services):
    assert set(services) == set(REGISTRY_SERVICES) | set(BACKENDS) | {"broker-users"}


def test_nothing_runs_as_guest(compose, services):
    assert "guest" not in yaml.safe_dump(compose)
    rabbitmq = services["rabbitmq"]["environment"]
    assert rabbitmq["RABBITMQ_DEFAULT_USER"] == "jvreg-admin"
    assert rabbitmq["RABBITMQ_DEFAULT_PASS"].startswith("${JVREG_BROKER_ADMIN_PASSWORD:?")


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_each_service_connects_as_its_own_broker_user(services, name):
    amqp = urlsplit(secrets_named(services[name]["environment"]["JVREG_AMQP_URI"]))
    assert amqp.username == f"jvreg-{name}"
    assert amqp.password == f"JVREG_BROKER_PASSWORD_{name.upper()}"


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_services_start_once_their_broker_users_exist(services, name):
    depends_on = services[name]["depends_on"]
    assert depends_on["broker-users"]["condition"] == "service_completed_successfully"


def test_the_broker_users_step_creates_every_user_with_its_password(services):
    step = services["broker-users"]
    assert step["command"] == ["jvreg", "broker-users"]
    assert step["restart"] == "no"
    assert step["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    env = step["environment"]
    admin = urlsplit(secrets_named(env["JVREG_BROKER_ADMIN_URL"]))
    assert (admin.username, admin.password) == ("jvreg-admin", "JVREG_BROKER_ADMIN_PASSWORD")
    for name in (*messaging.SERVICES, messaging.OPS):
        assert env[password_variable(name)].startswith(f"${{{password_variable(name)}:?")


def test_make_up_generates_every_secret_compose_requires(compose_text, tmp_path):
    required = set(re.findall(r"\$\{(\w+):\?", compose_text))
    env_file = tmp_path / ".env"
    env_file.write_text("JVREG_OPS_KEY=kept-as-it-is\n")
    compose_env = _load("deploy/compose_env.py", "jvreg_compose_env")
    compose_env.main(env_file)
    written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert required <= written.keys()
    assert written["JVREG_OPS_KEY"] == "kept-as-it-is"
    assert len(set(written.values())) == len(written), "every secret is its own"
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_mongo_is_a_single_node_replica_set(services):
    mongo = services["mongo"]
    assert mongo["image"] == "mongo:7"
    command = mongo["command"]
    assert "--replSet" in command
    assert "--bind_ip_all" in command
    assert command[command.index("--replSet") + 1] == "rs0"


def test_mongo_healthcheck_initiates_the_set_and_requires_primary(services):
    text = healthcheck_text(services["mongo"])
    assert "rs.initiate(" in text
    assert "_id: 'rs0'" in text
    # Registry services reach the member by this name; it must be the service name.
    assert "host: 'mongo:27017'" in text
    assert "isWritablePrimary" in text and "quit(" in text


def test_backends_have_healthchecks(services):
    for name in BACKENDS:
        healthcheck = services[name].get("healthcheck")
        assert healthcheck and healthcheck.get("test"), name
        assert not healthcheck.get("disable", False), name


def test_rabbitmq_image_healthcheck_and_ports(services):
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["image"] == "rabbitmq:3.13-management"
    assert "rabbitmq-diagnostics" in healthcheck_text(rabbitmq)
    container_ports = {target for _, target in published(rabbitmq)}
    assert {"5672", "15672"} <= container_ports
    # Node data lives under rabbit@<hostname>: a random hostname would orphan it.
    assert rabbitmq.get("hostname") == "rabbitmq"


def test_backend_data_lives_in_named_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, mount in (("mongo", "/data/db"), ("rabbitmq", "/var/lib/rabbitmq")):
        volumes = [v for v in services[name].get("volumes", []) if v.split(":")[1] == mount]
        assert volumes, f"{name} has no volume on {mount}"
        assert volumes[0].split(":")[0] in declared


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_registry_service_waits_for_healthy_backends(services, name):
    depends_on = services[name]["depends_on"]
    assert isinstance(depends_on, dict), "short depends_on syntax cannot wait for health"
    for backend in BACKENDS:
        assert depends_on[backend]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_registry_service_is_scalable(services, name):
    service = services[name]
    assert "container_name" not in service
    if name != "gateway":
        assert not service.get("ports"), "a fixed host port breaks --scale"


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_registry_service_runs_its_own_module(services, name):
    service = services[name]
    assert service["command"] == [
        "nameko",
        "run",
        "--config",
        "deploy/config.yaml",
        f"services.{name}.service",
    ]
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_registry_service_builds_from_the_dockerfile(services, name):
    build = services[name]["build"]
    assert build["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_registry_service_reaches_backends_by_service_name(services, name):
    env = services[name]["environment"]
    mongo = urlsplit(env["JVREG_MONGO_URI"])
    assert mongo.hostname == "mongo"
    replica_set = parse_qs(mongo.query)["replicaSet"]
    command = services["mongo"]["command"]
    assert replica_set == [command[command.index("--replSet") + 1]]
    amqp = urlsplit(secrets_named(env["JVREG_AMQP_URI"]))
    assert (amqp.scheme, amqp.hostname, amqp.port) == ("amqp", "rabbitmq", 5672)


def test_gateway_publishes_8000(services):
    assert ("8000", "8000") in published(services["gateway"])


def test_gateway_requires_an_ops_key(services):
    assert services["gateway"]["environment"]["JVREG_OPS_KEY"].startswith("${JVREG_OPS_KEY:?")


def test_gateway_healthcheck_probes_health_with_python(services):
    text = healthcheck_text(services["gateway"])
    assert "python" in text and "curl" not in text
    assert ":8000/health" in text


def test_dockerfile_base_image(dockerfile):
    from_lines = [line for line in dockerfile if line.upper().startswith("FROM ")]
    assert from_lines and from_lines[0].split()[1] == "python:3.11-slim"


def test_dockerfile_runs_as_non_root(dockerfile):
    users = [line.split()[1] for line in dockerfile if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def test_dockerfile_installs_the_lock_before_copying_code(dockerfile):
    def index(predicate):
        return next(i for i, line in enumerate(dockerfile) if predicate(line))

    lock_copy = index(lambda line: line.startswith("COPY") and "requirements.lock" in line)
    lock_install = index(lambda line: "pip install" in line and "-r requirements.lock" in line)
    code_copy = index(lambda line: line.startswith("COPY") and "services/" in line)
    project_install = index(
        lambda line: "pip install" in line and "--no-deps" in line and " . " in f"{line} "
    )
    assert lock_copy < lock_install < code_copy < project_install


def test_dockerfile_defaults_to_the_gateway(dockerfile):
    cmd = [line for line in dockerfile if line.startswith("CMD")][-1]
    assert "services.gateway.service" in cmd


def test_dockerignore_keeps_local_state_out():
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", ".env"} <= entries


def _load(relative_path: str, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_docker_backends():
    return _load("tests/docker_backends.py", "jvreg_docker_backends")


@pytest.mark.parametrize("docker_ip", ["127.0.0.1", "192.0.2.10"])
def test_docker_test_path_runs_the_production_backends_on_free_ports(compose, docker_ip):
    derived = _load_docker_backends().backends_compose(compose, docker_ip)
    assert set(derived["services"]) == set(BACKENDS)
    for name in BACKENDS:
        service = derived["services"][name]
        original = compose["services"][name]
        assert service["image"] == original["image"]
        assert service["healthcheck"] == original["healthcheck"]
        assert service.get("command") == original.get("command")
        assert "guest" not in str(service.get("environment", ""))
        # Docker picks every host port, so a local RabbitMQ on 5672 cannot clash.
        for host_port, _ in published(service):
            assert host_port == ""
        bound_to_loopback = all(str(p).startswith("127.0.0.1:") for p in service["ports"])
        assert bound_to_loopback == (docker_ip == "127.0.0.1")
    ports = {name: {t for _, t in published(derived["services"][name])} for name in BACKENDS}
    assert ports == {"mongo": {"27017"}, "rabbitmq": {"5672", "15672"}}
