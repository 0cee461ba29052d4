"""The registry's own figures, on a registry started as `make dev` starts it (one
`nameko run` per service, each service its own broker user), on a vhost and databases
of the run's own: venture registrations over HTTP with real API keys, and licence
decisions timed until they reach a regulator's queue through `jvreg watch`'s consumer
on the regulator's own broker user (`jvreg regulators add`)."""

import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from kombu import Connection

from ops.processes import ensure_management_api
from ops.regulators import regulator_user
from ops.watch import EventWatcher, regulator_queue
from shared import codec
from shared.broker_users import regulator_permissions, regulator_queue_prefix, with_credentials
from shared.settings import Settings

from load import closed_loop, figures
from support import PLANT, Api, RabbitManagement, created, running_registry, venture_body

# What `make dev` runs with (tests/support.py's running_registry sets test values).
DEV_SETTINGS = {
    "JVREG_EXPIRY_SWEEP_SECONDS": "60",
    "JVREG_RELAY_POLL_SECONDS": "1.0",
    "JVREG_RPC_TIMEOUT_SECONDS": "10",
    "JVREG_WEBHOOK_ALLOW_PRIVATE": "false",
    # Every client of the benchmark comes from 127.0.0.1; the limit is per address.
    "JVREG_HTTP_CONNECTIONS_PER_CLIENT": "256",
}
REGULATOR = "bench"


@contextmanager
def registry(mongo_uri: str, amqp_uri: str, management_url: str, log_dir: Path) -> Iterator[dict]:
    # As `make dev` and the tests do: the services' broker users are made through it.
    if problem := ensure_management_api(management_url):
        raise RuntimeError(problem)
    backends = {"mongo_uri": mongo_uri, "amqp_uri": amqp_uri, "management_url": management_url}
    with running_registry(
        backends, RabbitManagement(management_url), log_dir, **DEV_SETTINGS
    ) as running:
        yield running


def api_keys(registry: dict, role: str, count: int) -> list[Api]:
    """`count` keys of `role`, each of an organisation of its own."""
    ops = Api(registry["url"], registry["ops_key"])
    keys = []
    for n in range(count):
        owner = f"Bench {role} {n} {uuid.uuid4().hex[:6]}"
        response = ops.post("/v1/api-keys", json={"role": role, "owner": owner})
        response.raise_for_status()
        keys.append(Api(registry["url"], response.json()["key"]))
    return keys


def registrations(investors: list[Api], seconds: float) -> dict:
    """Closed loop: each investor registers ventures back to back (201 or a failure)."""

    def make_client(n: int) -> Callable[[], None]:
        api = investors[n]

        def register() -> None:
            response = api.post("/v1/ventures", json=venture_body())
            if response.status_code != 201:
                raise RuntimeError(f"{response.status_code} {response.text[:200]}")

        return register

    try:
        return closed_loop(len(investors), seconds, make_client, warmup=min(1.0, seconds / 5))
    finally:
        for api in investors:
            api.session.close()


# A formulation plant's applications, one at a time per type (docs/licensing.md): its
# three DMLs, then registrations of its products.
PLANT_DMLS = ("dml_formulation", "dml_repacking", "dml_experimental")


def licence_applications(investor: Api, count: int) -> list[tuple[str, int]]:
    """`count` submitted licences on plants of one venture (a plant per 20: its DMLs and
    product registrations), each with its sequence (1, submitted): the decisions' pool."""
    venture = created(investor, "/v1/ventures", venture_body())
    licences: list[tuple[str, int]] = []
    facility_id = ""
    for n in range(count):
        if n % 20 == 0:
            facility_id = created(investor, f"/v1/ventures/{venture['id']}/facilities", PLANT)["id"]
        body: dict = {"facility_id": facility_id, "type": "product_registration"}
        if n % 20 < len(PLANT_DMLS):
            body["type"] = PLANT_DMLS[n % 20]
        else:
            # A strength of its own makes each registration another product.
            body["product_details"] = {
                "dosage_form": "tablet",
                "strength": {"value": str(n + 1), "unit": "mg"},
                "active_ingredients": [{"inn": "Paracetamol"}],
            }
        licences.append((created(investor, "/v1/licenses", body)["id"], 1))
    return licences


class RegulatorQueue:
    """A regulator's own queue on `licensing.events`, read by `jvreg watch`'s consumer
    as the regulator's broker user; notes when each (licence, sequence) arrives."""

    def __init__(self, registry: dict, management_url: str):
        management = RabbitManagement(management_url)
        user = regulator_user(Settings(broker_user=registry["env"]["JVREG_BROKER_USER"]), REGULATOR)
        password = secrets.token_urlsafe(16)
        management.put_user(user, password)
        management.permit(registry["vhost"], user, regulator_permissions(REGULATOR))
        uri = with_credentials(registry["amqp_uri"], user, password)
        queue = regulator_queue(
            f"{regulator_queue_prefix(REGULATOR)}decisions", "licensing.events", "license.#"
        )
        self.connection = Connection(uri)
        self.watcher = EventWatcher(self.connection, queue, out=self)
        self.arrived: dict[tuple[str, int], float] = {}
        self.waiters: dict[tuple[str, int], Callable[[float], None]] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)
        self.thread.start()

    def write(self, line: str) -> None:
        """EventWatcher prints each event's JSON line here before acknowledging it."""
        if not line.strip():
            return
        now = time.perf_counter()
        event = codec.loads(line)
        key = (event["subject"], int(event["sequence"]))
        with self.lock:
            waiter = self.waiters.pop(key, None)
        if waiter:
            waiter(now)

    def flush(self) -> None:
        pass

    def expect(self, licence_id: str, sequence: int, arrived: Callable[[float], None]) -> None:
        with self.lock:
            self.waiters[(licence_id, sequence)] = arrived

    def close(self) -> None:
        self.watcher.should_stop = True
        self.thread.join(5)
        self.connection.release()


def decisions(
    regulator: Api,
    queue: RegulatorQueue,
    free: list[tuple[str, int]],
    rate: float,
    seconds: float,
) -> dict:
    """Open loop at `rate` decisions a second offered for `seconds`: each decision moves
    a free licence between under_review and deferred, and is timed from its request until
    its event is on the regulator's queue. `free` holds the licences with their last
    sequence; a licence is back in it once its event arrived, so per licence one
    decision is in flight (as a regulator would make them). Returns figures with the
    offered and achieved rates."""
    latencies: list[float] = []
    refused: dict[int, int] = {}
    last_arrival = [0.0]
    lock = threading.Condition()

    def decide(licence: str, sequence: int, sent: float) -> None:
        target = "under_review" if sequence % 2 == 1 else "deferred"

        def arrived(at: float) -> None:
            with lock:
                latencies.append(at - sent)
                last_arrival[0] = at
                free.append((licence, sequence + 1))
                lock.notify()

        queue.expect(licence, sequence + 1, arrived)
        response = regulator.post(
            f"/v1/licenses/{licence}/transitions",
            json={"to": target, "reason": "benchmark decision"},
        )
        if response.status_code != 200:  # nothing changed: it never reaches the queue
            with lock:
                refused[response.status_code] = refused.get(response.status_code, 0) + 1
                free.append((licence, sequence))
                lock.notify()

    started = time.perf_counter()
    deadline = started + seconds
    sent = 0
    with ThreadPoolExecutor(max_workers=max(8, int(rate))) as pool:
        while (now := time.perf_counter()) < deadline:
            due = started + sent / rate
            if now < due:
                time.sleep(due - now)
                continue
            with lock:
                if not lock.wait_for(lambda: free, timeout=deadline - now):
                    break
                licence, sequence = free.pop(0)
            pool.submit(decide, licence, sequence, time.perf_counter())
            sent += 1
    with lock:  # the last decisions' events, a bounded wait
        lock.wait_for(lambda: len(latencies) + sum(refused.values()) >= sent, timeout=10)
        result = figures(latencies, last_arrival[0] - started, sent - len(latencies))
    return {"offered_per_s": rate, "sent": sent, **result, "refused": refused}
