"""Static checks of docker-compose.yml, deploy/Dockerfile and the Docker test path.

No Docker engine is needed (docs/architecture.md §3): these parse the files and assert the
properties `make up` and `docker compose up --scale` depend on (docs/deploy.md): a
replica set of three with a keyfile and a user per service limited to its database,
broker users and no `guest`, no secret in the file, healthchecks and healthy
dependencies, a scalable gateway, and an image without development packages.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import socket
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ops.broker import password_variable
from shared import messaging
from shared.settings import Settings

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
MONGO_MEMBERS = ("mongo1", "mongo2", "mongo3")
ONE_SHOT = ("mongo-init", "broker-users")
OPS_TOOL = "jvreg"
MONGO_HOSTS = [f"{member}:27017" for member in MONGO_MEMBERS]


def _load(relative_path: str, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mongo_init = _load("deploy/mongo_init.py", "jvreg_mongo_init")
probe = _load("deploy/probe.py", "jvreg_probe")


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


@pytest.fixture(scope="module")
def mongo_users() -> dict:
    return {user.name: user for user in mongo_init.users(Settings())}


def published(service: dict) -> list[tuple[str, str]]:
    """(host port, container port) of each published port, short or long syntax."""
    result = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            result.append((str(port.get("published", "")), str(port["target"])))
        else:
            host, _, target = str(port).rpartition(":")
            # "127.0.0.1:8000:8000", "8000:8000", "${VAR:-8000-8009}:8000", "8000"
            host_port = host if host.startswith("${") else host.rpartition(":")[2]
            result.append((host_port, target.split("/")[0]))
    return result


def secrets_named(value: str) -> str:
    """`value` with each required variable (`${NAME:?message}`) replaced by its name."""
    return re.sub(r"\$\{(\w+):\?[^}]*\}", r"\1", value)


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def test_no_obsolete_version_key(compose):
    assert "version" not in compose


def test_all_services_present(services):
    expected = {*REGISTRY_SERVICES, *MONGO_MEMBERS, *ONE_SHOT, "rabbitmq", OPS_TOOL}
    assert set(services) == expected


# --- secrets -------------------------------------------------------------------------


def test_no_secret_is_written_in_the_file(compose):
    """Every credential in a URI, and every password or key variable, is a required
    variable of .env (`${NAME:?…}`) or a Docker secret's file, never a value."""
    for text in strings(compose):
        for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", text):
            assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", password), text
    for service in compose["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|_KEY$|SECRET|KEYFILE", name):
                assert str(value).startswith("${") or str(value).startswith("/run/secrets/"), name


def test_docker_secrets_come_from_env_variables(compose):
    for name, secret in compose["secrets"].items():
        assert set(secret) == {"environment"}, f"{name} must come from .env, not a file"


def test_make_up_generates_every_secret_compose_requires(compose, compose_text, tmp_path):
    required = set(re.findall(r"\$\{(\w+):\?", compose_text))
    required |= {secret["environment"] for secret in compose["secrets"].values()}
    env_file = tmp_path / ".env"
    env_file.write_text("JVREG_OPS_KEY=kept-as-it-is\n")
    compose_env = _load("deploy/compose_env.py", "jvreg_compose_env")
    compose_env.write_env(env_file)
    written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert required <= written.keys()
    assert written["JVREG_OPS_KEY"] == "kept-as-it-is"
    assert len(set(written.values())) == len(written), "every secret is its own"
    assert env_file.stat().st_mode & 0o777 == 0o600
    # mongod's keyfile: 6 to 1024 characters of the base64 alphabet.
    assert re.fullmatch(r"[A-Za-z0-9+/=]{6,1024}", written["JVREG_MONGO_KEYFILE"])


# --- RabbitMQ ----------------------------------------------------------------------


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
    assert (amqp.scheme, amqp.hostname, amqp.port) == ("amqp", "rabbitmq", 5672)


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


def test_rabbitmq_image_healthcheck_and_ports(services):
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["image"] == "rabbitmq:3.13-management"
    assert "rabbitmq-diagnostics" in healthcheck_text(rabbitmq)
    # Loopback only: nothing outside the host reaches the broker or its management API.
    assert rabbitmq["ports"] == ["127.0.0.1:5672:5672", "127.0.0.1:15672:15672"]
    # Node data lives under rabbit@<hostname>: a random hostname would orphan it.
    assert rabbitmq.get("hostname") == "rabbitmq"


# --- MongoDB -----------------------------------------------------------------------


@pytest.mark.parametrize("member", MONGO_MEMBERS)
def test_mongo_members_form_one_replica_set_with_a_keyfile(services, member):
    mongo = services[member]
    assert mongo["image"] == "mongo:7"
    command = mongo["command"]
    assert command[command.index("--replSet") + 1] == "rs0"
    assert "--bind_ip_all" in command
    keyfile = command[command.index("--keyFile") + 1]
    # The secret, copied private to mongod's user first (mongod refuses a readable one).
    assert "mongo-keyfile" in mongo["secrets"]
    entrypoint = " ".join(mongo["entrypoint"])
    assert f"install -m 400 -o mongodb -g mongodb /run/secrets/mongo-keyfile {keyfile}" in (
        entrypoint
    )
    assert "exec docker-entrypoint.sh" in entrypoint
    assert "ping" in healthcheck_text(mongo)
    assert mongo["restart"] == "unless-stopped"


def test_only_the_first_member_creates_the_root_user(services):
    env = services["mongo1"]["environment"]
    assert env["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo-root-password"
    assert "mongo-root-password" in services["mongo1"]["secrets"]
    for member in MONGO_MEMBERS[1:]:
        assert "environment" not in services[member]


def test_mongo_data_lives_in_named_volumes(compose, services):
    declared = set(compose["volumes"])
    names = set()
    for member in MONGO_MEMBERS:
        (volume,) = services[member]["volumes"]
        name, mount = volume.split(":")
        assert mount == "/data/db" and name in declared
        names.add(name)
    assert len(names) == len(MONGO_MEMBERS), "each member its own volume"
    assert "rabbitmq-data:/var/lib/rabbitmq" in services["rabbitmq"]["volumes"]


def test_mongo_init_initiates_the_set_and_creates_every_user(services, mongo_users):
    step = services["mongo-init"]
    assert step["command"] == ["python", "deploy/mongo_init.py"]
    assert step["restart"] == "no"
    for member in MONGO_MEMBERS:
        assert step["depends_on"][member]["condition"] == "service_healthy"
    env = step["environment"]
    assert env["JVREG_MONGO_MEMBERS"].split(",") == MONGO_HOSTS
    assert env["JVREG_MONGO_REPLICA_SET"] == "rs0"
    assert (
        env["JVREG_MONGO_ROOT_USER"]
        == services["mongo1"]["environment"]["MONGO_INITDB_ROOT_USERNAME"]
    )
    assert env["JVREG_MONGO_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo-root-password"
    for user in mongo_users.values():
        assert env[user.password_variable].startswith(f"${{{user.password_variable}:?")


def test_every_registry_process_has_a_mongo_user():
    names = {user.name for user in mongo_init.users(Settings())}
    assert names == {f"jvreg-{name}" for name in (*messaging.SERVICES, messaging.OPS)}


@pytest.mark.parametrize("name", [n for n in REGISTRY_SERVICES if n != "search"])
def test_a_service_user_may_use_its_own_database_only(mongo_users, name):
    assert mongo_users[f"jvreg-{name}"].roles == (("readWrite", f"jvreg_{name}"),)


def test_search_may_only_read_the_event_logs_it_follows(mongo_users):
    settings = Settings()
    (role,) = mongo_users["jvreg-search"].roles
    assert role == (mongo_init.SEARCH_REBUILD_ROLE, "admin")
    privileges = mongo_init.custom_roles(settings)[mongo_init.SEARCH_REBUILD_ROLE]
    assert {p["resource"]["db"] for p in privileges} == {
        "jvreg_ventures",
        "jvreg_facilities",
        "jvreg_licensing",
    }
    for privilege in privileges:
        assert privilege["resource"]["collection"] == "event_log"
        assert privilege["actions"] == ["find"]


def test_ops_reads_every_database_and_writes_only_the_gateways(mongo_users):
    roles = dict((db, role) for role, db in mongo_users["jvreg-ops"].roles)
    assert roles.pop("jvreg_gateway") == "readWrite"
    assert set(roles.values()) == {"read"}


@pytest.mark.parametrize("name", [*REGISTRY_SERVICES, OPS_TOOL])
def test_each_process_connects_to_the_replica_set_as_its_own_mongo_user(
    services, mongo_users, name
):
    user_of = "ops" if name == OPS_TOOL else name
    uri = secrets_named(services[name]["environment"]["JVREG_MONGO_URI"])
    credentials, _, rest = uri.removeprefix("mongodb://").partition("@")
    user, _, password = credentials.partition(":")
    assert user in mongo_users and user == f"jvreg-{user_of}"
    assert password == mongo_users[user].password_variable
    hosts, _, query = rest.partition("/?")
    assert hosts.split(",") == MONGO_HOSTS
    options = parse_qs(query)
    assert options["replicaSet"] == ["rs0"]
    assert options["authSource"] == ["admin"]


# --- dependencies, health, scaling -------------------------------------------------


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_registry_service_waits_for_its_backends_and_users(services, name):
    depends_on = services[name]["depends_on"]
    assert isinstance(depends_on, dict), "short depends_on syntax cannot wait for health"
    assert depends_on["rabbitmq"]["condition"] == "service_healthy"
    assert depends_on["mongo-init"]["condition"] == "service_completed_successfully"
    assert depends_on["broker-users"]["condition"] == "service_completed_successfully"


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name in ONE_SHOT or name == OPS_TOOL:
            continue
        healthcheck = service.get("healthcheck")
        assert healthcheck and healthcheck.get("test"), name
        assert not healthcheck.get("disable", False), name


@pytest.mark.parametrize("name", [n for n in REGISTRY_SERVICES if n != "gateway"])
def test_consumers_are_healthy_while_connected(services, name):
    test = services[name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "deploy/probe.py"]
    ports = set(test[3:])
    assert ports == ({"5672"} if name == "search" else {"5672", "27017"})


@pytest.mark.parametrize("name", REGISTRY_SERVICES)
def test_registry_service_is_scalable(services, name):
    service = services[name]
    assert "container_name" not in service
    if name != "gateway":
        assert not service.get("ports"), "a fixed host port breaks --scale"


def test_gateway_replicas_take_ports_of_a_range(services):
    ((host, target),) = published(services["gateway"])
    assert target == "8000"
    first, last = re.fullmatch(r"\$\{JVREG_GATEWAY_PORTS:-(\d+)-(\d+)\}", host).groups()
    assert int(last) > int(first), "a range, so that each replica gets a port"


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


@pytest.mark.parametrize("name", [*REGISTRY_SERVICES, *ONE_SHOT, OPS_TOOL])
def test_registry_image_builds_from_the_dockerfile(services, name):
    build = services[name]["build"]
    assert build["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_gateway_requires_an_ops_key(services):
    assert services["gateway"]["environment"]["JVREG_OPS_KEY"].startswith("${JVREG_OPS_KEY:?")


def test_gateway_healthcheck_probes_health_with_python(services):
    text = healthcheck_text(services["gateway"])
    assert "python" in text and "curl" not in text
    assert ":8000/health" in text


def test_the_ops_tool_runs_only_when_asked(services):
    tool = services[OPS_TOOL]
    assert tool["profiles"] == ["ops"]
    assert tool["entrypoint"] == ["jvreg"]
    amqp = urlsplit(secrets_named(tool["environment"]["JVREG_AMQP_URI"]))
    assert amqp.username == "jvreg-ops"


# --- the image -----------------------------------------------------------------------


def test_dockerfile_stages(dockerfile):
    stages = [line.split() for line in dockerfile if line.upper().startswith("FROM ")]
    assert [stage[1] for stage in stages] == ["python:3.11-slim", "python:3.11-slim"]
    assert stages[0][2:] == ["AS", "build"]


def test_dockerfile_final_stage_takes_only_the_virtualenv_and_the_configuration(dockerfile):
    final = dockerfile[max(i for i, line in enumerate(dockerfile) if line.startswith("FROM")) :]
    copies = [line for line in final if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/jvreg /opt/jvreg", "COPY deploy/ deploy/"]
    assert not [line for line in final if "pip install" in line]


def test_dockerfile_installs_runtime_dependencies_before_the_code(dockerfile):
    def index(predicate):
        return next(i for i, line in enumerate(dockerfile) if predicate(line))

    lock_copy = index(lambda line: line.startswith("COPY") and "requirements.lock" in line)
    runtime_install = index(lambda line: "-c requirements.lock -r runtime.in" in line)
    code_copy = index(lambda line: line.startswith("COPY") and "services/" in line)
    project_install = index(lambda line: "pip install" in line and "--no-deps" in line)
    assert lock_copy < runtime_install < code_copy < project_install
    install = dockerfile[runtime_install]
    assert "['project']['dependencies']" in install, "pyproject's runtime dependencies only"
    assert "dev" not in install


def _runtime_closure() -> set[str]:
    """The distributions pyproject's [project] dependencies need, transitively, without
    extras: what the image's `pip install -c requirements.lock -r runtime.in` installs."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    todo = [Requirement(text) for text in pyproject["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(requirement.name) or []:
            child = Requirement(text)
            if child.marker is None or child.marker.evaluate({"extra": ""}):
                todo.append(child)
    return seen


def test_image_runtime_requirements_hold_no_development_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    development = {
        canonicalize_name(Requirement(text).name)
        for text in pyproject["project"]["optional-dependencies"]["dev"]
    }
    runtime = _runtime_closure()
    assert "nameko" in runtime and "pymongo" in runtime
    assert not runtime & development
    assert not runtime & {"pytest", "hypothesis", "ruff", "mypy", "schemathesis", "playwright"}


def test_image_runtime_requirements_are_all_pinned_by_the_lock():
    pinned = {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    assert _runtime_closure() <= pinned


def test_dockerfile_runs_as_non_root(dockerfile):
    users = [line.split()[1] for line in dockerfile if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def test_dockerfile_defaults_to_the_gateway(dockerfile):
    cmd = [line for line in dockerfile if line.startswith("CMD")][-1]
    assert "services.gateway.service" in cmd


def test_dockerignore_keeps_local_state_out():
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", ".env", "tests"} <= entries


# --- the probe -----------------------------------------------------------------------


def test_probe_passes_only_with_an_established_connection_to_each_port(capsys):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            connection, _ = server.accept()
            with connection:
                assert probe.main([str(port)]) == 0
                with socket.socket() as unused:
                    unused.bind(("127.0.0.1", 0))
                    free = unused.getsockname()[1]
                assert probe.main([str(port), str(free)]) == 1
    assert f"no established connection to port(s) {free}" in capsys.readouterr().out


# --- the Docker test path ------------------------------------------------------------


def _load_docker_backends():
    return _load("tests/docker_backends.py", "jvreg_docker_backends")


@pytest.mark.parametrize("docker_ip", ["127.0.0.1", "192.0.2.10"])
def test_docker_test_path_runs_the_production_backends_on_free_ports(compose, docker_ip):
    derived = _load_docker_backends().backends_compose(compose, docker_ip)
    assert set(derived["services"]) == {"mongo", "rabbitmq"}
    mongo, rabbitmq = derived["services"]["mongo"], derived["services"]["rabbitmq"]
    assert mongo["image"] == compose["services"]["mongo1"]["image"]
    assert rabbitmq["image"] == compose["services"]["rabbitmq"]["image"]
    assert rabbitmq["healthcheck"] == compose["services"]["rabbitmq"]["healthcheck"]
    # A single-member set initiated by its healthcheck, primary before it is healthy.
    text = healthcheck_text(mongo)
    assert "rs.initiate(" in text and "host: 'mongo:27017'" in text
    assert "isWritablePrimary" in text
    assert "guest" not in str(rabbitmq.get("environment", ""))
    for service in (mongo, rabbitmq):
        # Docker picks every host port, so a local RabbitMQ on 5672 cannot clash.
        for host_port, _ in published(service):
            assert host_port == ""
        bound_to_loopback = all(str(p).startswith("127.0.0.1:") for p in service["ports"])
        assert bound_to_loopback == (docker_ip == "127.0.0.1")
        assert "volumes" not in service
    ports = {name: {t for _, t in published(s)} for name, s in derived["services"].items()}
    assert ports == {"mongo": {"27017"}, "rabbitmq": {"5672", "15672"}}


def test_unquoted_credentials_stay_url_safe():
    """Generated passwords go into URIs as they are: none may need quoting."""
    compose_env = _load("deploy/compose_env.py", "jvreg_compose_env_quoting")
    for name, value in compose_env.wanted().items():
        if name != "JVREG_MONGO_KEYFILE":
            assert unquote(value) == value and re.fullmatch(r"[\w-]+", value), name
