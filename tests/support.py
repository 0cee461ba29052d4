"""Helpers for the tests (not fixtures): a RabbitMQ management client, an HTTP client
for the gateway, a registry of its own, and example request bodies."""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import requests
import yaml
from nameko.cli.main import setup_yaml_parser
from nameko.testing.services import entrypoint_waiter
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict

from ops.processes import NAMEKO_CONFIG, Stack, free_port, wait_until
from ops.signing_keys import ensure_key_ring
from services.facilities.contract import RegisterFacility
from services.ventures.contract import RegisterVenture
from shared import messaging
from shared.broker_users import (
    RabbitAdmin,
    create_registry_users,
    registry_amqp_uris,
    vhost_of,
)
from shared.contract import EVENT_TYPES, EventPayload, Subscription, example, topic_matches
from shared.envelope import CloudEvent, aggregate_event
from shared.settings import each_amqp_address

# The registry's broker users in tests. Users are global in RabbitMQ (permissions are
# per vhost), so every test run, even one running beside another, sets the same
# password; the names differ from `make dev`'s so a test run leaves those alone.
TEST_BROKER_USER = "jvreg-test-{service}"
TEST_BROKER_PASSWORD = "jvreg-test-password"
JVREG = str(Path(sys.executable).parent / "jvreg")


def nameko_config() -> dict:
    """deploy/config.yaml as `nameko run` loads it: `${JVREG_…:default}` filled in from
    the environment."""
    setup_yaml_parser()
    return yaml.safe_load(NAMEKO_CONFIG.read_text())


def amqp_uri_for(base: str, vhost: str) -> str:
    """`base` (each of its addresses, for a cluster) on `vhost`."""
    return each_amqp_address(
        base, lambda address: address.rstrip("/") + "/" + quote(vhost, safe="")
    )


class RabbitManagement(RabbitAdmin):
    """The few calls of RabbitMQ's management API the tests need."""

    def create_vhost(self, vhost: str) -> None:
        """A throw-away vhost, where the administrator (`guest` here) may do anything."""
        self.call("PUT", f"vhosts/{quote(vhost, safe='')}")
        self.call(
            "PUT",
            f"permissions/{quote(vhost, safe='')}/{quote(self.auth[0], safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )

    def delete_vhost(self, vhost: str) -> None:
        self.call("DELETE", f"vhosts/{quote(vhost, safe='')}")

    def queue(self, vhost: str, name: str) -> dict:
        return self.call("GET", f"queues/{quote(vhost, safe='')}/{quote(name, safe='')}")


def registry_users(management: RabbitAdmin, amqp_uri: str) -> dict[str, str]:
    """Give the vhost of `amqp_uri` the registry's broker users; returns each
    service's (and ops') AMQP URI logging in as its own user."""
    passwords = {name: TEST_BROKER_PASSWORD for name in (*messaging.SERVICES, messaging.OPS)}
    create_registry_users(management, vhost_of(amqp_uri), TEST_BROKER_USER, passwords)
    return registry_amqp_uris(amqp_uri, TEST_BROKER_USER, passwords)


@contextmanager
def running_registry(backends, rabbit_management, log_dir, **settings):
    """A registry of its own (vhost, databases, processes): its gateway URL, AMQP URI
    (the test's own, as `guest`), each service's (`amqp_uris`, as its own broker user)
    and bootstrap ops key. `settings` are JVREG_* variables over the tests' defaults."""
    vhost = f"jvreg-e2e-{uuid.uuid4().hex[:10]}"
    rabbit_management.create_vhost(vhost)
    amqp_uri = amqp_uri_for(backends["amqp_uri"], vhost)
    amqp_uris = registry_users(rabbit_management, amqp_uri)
    ops_key = "jvk_ops_" + secrets.token_urlsafe(24)
    signing_keys = log_dir / "signing-keys.json"
    ensure_key_ring(signing_keys)
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
        "JVREG_SEARCH_DATA_DIR": str(log_dir / "search"),
        "JVREG_SIGNING_KEYS_FILE": str(signing_keys),
        **settings,
    }
    stack = Stack(env, log_dir=log_dir, amqp_uris=amqp_uris)
    stack.start()
    try:
        stack.wait_healthy(90)
    except Exception:
        stack.stop()
        for log in sorted(log_dir.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
        raise
    try:
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
    finally:
        stack.stop()
        rabbit_management.delete_vhost(vhost)


def dev_environment(amqp_uri: str, management_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of a `jvreg dev` on the broker address `amqp_uri` (a test's vhost),
    its data in `data_dir`, on a free gateway port."""
    env = {k: v for k, v in os.environ.items() if k not in ("JVREG_MONGO_URI", "JVREG_OPS_KEY")}
    env.update(
        JVREG_AMQP_URI=amqp_uri,
        JVREG_GATEWAY_PORT=str(free_port()),
        JVREG_BROKER_USER=TEST_BROKER_USER,
        JVREG_BROKER_ADMIN_URL=management_url,
    )
    # The tests' broker users and password (users are global): `jvreg dev` keeps them.
    names = (*messaging.SERVICES, messaging.OPS)
    passwords = {name: TEST_BROKER_PASSWORD for name in names}
    (data_dir / "broker-passwords.json").write_text(json.dumps(passwords))
    return env


class DevProcess:
    """`jvreg dev` (what `make dev` runs) with `env` and `options` (`--scale 2`), its
    output (every service's log lines, each prefixed with `[service]`, or
    `[service.N]` for instance N of several) collected as it comes."""

    def __init__(self, env: dict, data_dir: Path, mongo_port: int, *options: str):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [JVREG, "dev", "--data-dir", str(data_dir), "--mongo-port", str(mongo_port), *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120):
        def seen():
            if self.process.poll() is not None and text not in self.output():
                raise RuntimeError(f"jvreg dev exited:\n{self.output()[-3000:]}")
            return text in self.output()

        wait_until(seen, timeout, f"'{text}' from jvreg dev")

    def value_after(self, label: str) -> str:
        line = next(line for line in self.lines if label in line)
        return line.split(label, 1)[1].strip()

    def interrupt(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)


class Api:
    """A thin HTTP client for the gateway, authenticated with one API key."""

    def __init__(self, base_url: str, key: str | None):
        self.base_url = base_url
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, self.base_url + path, timeout=30, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)


def created(api, path: str, body: dict) -> dict:
    """POST that creates, answered 201 at once: what the body names was just created
    or read through the gateway, and the services wait for what they learn of it
    (read-your-writes, docs/architecture.md §5.7)."""
    response = api.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


# A formulation plant in the Rashakai SEZ, as an investor registers it: the contract's
# own example, so the tests send what the documents show.
PLANT = example(RegisterFacility)


def venture_body(name: str | None = None, **overrides) -> dict:
    """A valid registration, modelled on the ventures the 2025 health accord calls for
    (the contract's example), under a name of its own: names are unique."""
    body = example(RegisterVenture)
    body["name"] = name or f"{body['name']} {uuid.uuid4().hex[:6]}"
    body.update(overrides)
    return body


def inspection_date(days_ahead: int = 30) -> str:
    """An inspection date within the registry's bounds (at most two years ahead)."""
    return (date.today() + timedelta(days=days_ahead)).isoformat()


class AnyData(BaseModel):
    """Event data of any shape."""

    model_config = ConfigDict(extra="allow")


def any_data_subscription(queue: str, source: str, pattern: str) -> Subscription:
    """A subscription to `source`'s events that `pattern` matches, taking their data
    whatever its shape: for consumers that test the consuming mechanism itself (order,
    dedup, retries), not a producer's contract."""
    return Subscription(
        queue,
        source,
        pattern,
        lambda: {key: AnyData for key in EVENT_TYPES if topic_matches(pattern, key)},
    )


def handled(container, entrypoint: str, event: CloudEvent, times: int = 1, timeout: float = 30):
    """A context that, on leaving, waits until the consumer `entrypoint` of `container`
    has handled deliveries of `event` (its id) `times` times without raising: applied or
    skipped as a duplicate, not held back or failed."""
    finished = []

    def counted(worker_ctx, result, exc_info) -> bool:
        body = worker_ctx.args[0]
        if exc_info is None and isinstance(body, dict) and body.get("id") == event.id:
            finished.append(worker_ctx)
        return len(finished) >= times

    return entrypoint_waiter(container, entrypoint, timeout=timeout, callback=counted)


def contract_event(payload: type[EventPayload], **parts: dict) -> CloudEvent:
    """An event as its producer publishes it: the example of its contract's payload
    model, with `parts` merged into the data's parts (venture={...}, change={...})."""
    data = example(payload)
    for part, fields in parts.items():
        data[part] = {**data[part], **fields}
    return aggregate_event(payload.model_validate(data))


def scrape(ops: Api) -> dict[tuple[str, frozenset], float]:
    """Every sample of the gateway's /metrics (as ops): (name, labels) -> value."""
    response = ops.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample_value(samples: dict, name: str, **labels) -> float | None:
    """The value of the sample `name` with exactly `labels` in a scrape, if there is one."""
    return samples.get((name, frozenset(labels.items())))
