"""The chaos suite's harness: the registry's real service processes (forked by
launcher.py, supervised and restarted when they die), a regulator's independent
queue, a driver that walks licences through their lifecycle over HTTP whatever
fails, and the measurements and invariants every scenario reports."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import eventlet
import requests
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from kombu import Connection, Queue
from nameko.standalone.rpc import ClusterRpcProxy
from pymongo import MongoClient

from ops.processes import ROOT, free_port, wait_until
from ops.reconcile import reconcile
from services.licensing.contract import EXPIRY_WARNING_DAYS
from services.licensing.domain import IN_FORCE_STATUSES, PLANT_ENDED_ACTOR
from shared.dead_letters import DeadLetterQueue, broker_user
from shared.messaging import DEAD_LETTER_QUEUE, events_exchange
from shared.settings import Settings

from rabbit_nodes import RabbitCluster, RabbitNode
from support import PLANT, Api, RabbitManagement, amqp_uri_for, venture_body
from webhook_receiver import WebhookReceiver

LAUNCHER = Path(__file__).with_name("launcher.py")
TALLY = "tests.chaos.tally"
# Every process a scenario runs, by service name, with its module.
MODULES = {
    "gateway": "services.gateway.service",
    "ventures": "services.ventures.service",
    "facilities": "services.facilities.service",
    "licensing": "services.licensing.service",
    "investments": "services.investments.service",
    "notifications": "services.notifications.service",
    # The gateway's lists are the search service's, and its /health asks it.
    "search": "services.search.service",
    "chaos_tally": TALLY,
}
# The consumers of licensing.events whose effects the suite checks, by queue.
LICENCE_CONSUMER_QUEUES = (
    "chaos_tally.tally",
    "facilities.follow_licence",
    "notifications.queue_webhook_deliveries",
    "search.chaos.licensing",  # the search instance's own (JVREG_SEARCH_INSTANCE=chaos)
)
WEBHOOK_PATH = "/drap"
# How long a process runs at least before a fault may kill it (its hook is armed then,
# or the random killer may pick it), so that it gets some work done between kills.
# A consumer's crash returns every message it had not acked, and the broker counts
# each return towards its delivery limit (shared.messaging.BROKER_DELIVERY_LIMIT, 20):
# a crash loop far faster than this would dead-letter messages merely in flight.
MIN_LIFE_SECONDS = 3
# The DMLs a formulation plant (the harness's PLANT) may hold (docs/licensing.md).
MANUFACTURING_LICENCES = ("dml_formulation", "dml_repacking", "dml_experimental")
PLANT_ENDED_KEY = PLANT_ENDED_ACTOR["key_id"]


# --- processes -------------------------------------------------------------------------


class Launcher:
    """Client of launcher.py: forks service processes and reports how each ended.
    Any green thread may start a process: requests share the launcher's stdin, so
    they are written one at a time (a second writer on a pipe that is full raises
    in eventlet)."""

    def __init__(self, log: Path, modules: Iterable[str] = MODULES.values()):
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        }
        env.pop("JVREG_FAULTS", None)
        self._stdin = Semaphore()
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), *modules],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(log, "ab"),  # noqa: SIM115
            cwd=ROOT,
            env=env,
        )
        self.exits: dict[int, dict] = {}
        self.started: set[int] = set()
        self.replies: dict[str, Event] = {}
        self.ready = Event()
        eventlet.spawn_n(self._read)
        with eventlet.Timeout(60):
            self.ready.wait()

    def _read(self) -> None:
        for line in self.process.stdout:
            message = json.loads(line)
            if "exited" in message:
                self.exits[message["exited"]] = message
            elif "id" in message:
                self.started.add(message["pid"])
                self.replies.pop(message["id"]).send(message["pid"])
            elif message.get("ready"):
                self.ready.send(True)

    def start(self, module: str, env: dict[str, str], log: Path, fault_grace: float) -> int:
        request_id = uuid.uuid4().hex
        reply = self.replies[request_id] = Event()
        request = {
            "id": request_id,
            "module": module,
            "env": env,
            "log": str(log),
            "fault_grace": fault_grace,
        }
        with self._stdin:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        with eventlet.Timeout(30):
            return reply.wait()

    @property
    def running_children(self) -> set[int]:
        """The pids it started that have not ended (as far as it has reported)."""
        return self.started - self.exits.keys()

    def close(self) -> None:
        with self._stdin:
            self.process.stdin.close()
        self.process.wait(30)


class ServiceProcess:
    """One instance of a service: a forked `nameko run` equivalent with its own env.
    The supervisor (reviving it when it died) and the scenario (restarting it to arm
    or disarm faults, stopping it) act on it from different green threads: one of
    them at a time owns it, or both would start a child and one would run unseen."""

    def __init__(
        self,
        launcher: Launcher,
        name: str,
        instance: int,
        env: dict,
        log_dir: Path,
        min_life: float,
        module: str | None = None,
    ):
        self.launcher = launcher
        self.min_life = min_life
        self.name = name
        self.module = module or MODULES[name]
        self.label = f"{name}-{instance}"
        self.env = dict(env)
        self.log = log_dir / f"{self.label}.log"
        self.pid: int | None = None
        self.stopping = False  # stopped on purpose: not the supervisor's to restart
        self.started_at = 0.0
        self._owner = Semaphore()

    def start(self) -> None:
        with self._owner:
            self._start()

    def _start(self) -> None:
        self.pid = self.launcher.start(self.module, self.env, self.log, self.min_life)
        self.started_at = time.monotonic()

    def restart(self) -> None:
        """Stop it gracefully (not a fault, and not the supervisor's to restart) and
        start it again with its current env."""
        with self._owner:
            self._stop()
            self._start()
            self.stopping = False

    def revive(self) -> dict | None:
        """If it died and nobody stopped it on purpose, start it again and return how
        it ended; None when it runs, was stopped, or another green thread owns it."""
        if not self._owner.acquire(blocking=False):
            return None
        try:
            ended = self.exit
            if ended is None or self.stopping:
                return None
            self._start()
            return ended
        finally:
            self._owner.release()

    @property
    def exit(self) -> dict | None:
        return self.launcher.exits.get(self.pid) if self.pid else None

    @property
    def running(self) -> bool:
        return self.pid is not None and self.exit is None

    def signal(self, number: int) -> None:
        # It may have ended already, before the launcher reported it.
        if self.running:
            with suppress(ProcessLookupError):
                os.kill(self.pid, number)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def stop(self, timeout: float = 15) -> None:
        with self._owner:
            self._stop(timeout)

    def _stop(self, timeout: float = 15) -> None:
        self.stopping = True
        if not self.running:
            return
        self.signal(signal.SIGTERM)
        try:
            wait_until(lambda: not self.running, timeout, f"{self.label} to stop", pause=0.05)
        except TimeoutError:
            self.kill()
            wait_until(lambda: not self.running, 10, f"{self.label} to die", pause=0.05)


def restart_together(processes: list[ServiceProcess]) -> None:
    """Restart the processes at once: a graceful stop waits for the running workers
    (1–2 s each), and one after the other they would add up."""
    for _ in eventlet.GreenPool().imap(ServiceProcess.restart, processes):
        pass


class Supervisor:
    """Restarts every supervised process that died, as a process manager would, and
    counts the deaths: by SIGKILL (the faults injected) and any other exit (crashes,
    which no scenario expects)."""

    def __init__(self, processes: list[ServiceProcess]):
        self.processes = processes
        self.kills: Counter[str] = Counter()
        self.crashes: list[str] = []
        self._watching = True
        self._thread = eventlet.spawn(self._watch)

    def _watch(self) -> None:
        while self._watching:
            for process in self.processes:
                if (ended := process.revive()) is None:
                    continue
                if ended["signal"] == signal.SIGKILL:
                    self.kills[process.name] += 1
                else:
                    self.crashes.append(f"{process.label} exited: {ended}")
            eventlet.sleep(0.05)

    @property
    def faults(self) -> int:
        return sum(self.kills.values())

    def stop(self) -> None:
        self._watching = False
        self._thread.wait()


# --- the regulator's queue -------------------------------------------------------------


class RegulatorQueue:
    """A durable queue of the test's own on `licensing.events` (`license.#`), declared
    before any traffic: what a regulator's system would receive."""

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        self.queue = Queue(
            f"chaos-regulator-{uuid.uuid4().hex[:8]}",
            exchange=events_exchange("licensing"),
            routing_key="license.#",
            durable=True,
        )
        with Connection(amqp_uri) as connection:
            self.queue(connection.channel()).declare()
        self.deliveries: Counter[str] = Counter()  # event id -> times received
        self.undecodable = 0

    def _receive(self, message) -> None:
        try:
            event_id = json.loads(message.body)["id"]
        except (ValueError, KeyError, TypeError):
            self.undecodable += 1
        else:
            self.deliveries[event_id] += 1
        message.ack()

    def drain(self) -> None:
        with Connection(self.amqp_uri) as connection:
            consumer = connection.Consumer(self.queue, on_message=self._receive, prefetch_count=500)
            with consumer:
                while True:
                    try:
                        connection.drain_events(timeout=0.3)
                    except TimeoutError:
                        return


# --- driving licences ------------------------------------------------------------------


def transient(response: requests.Response | None) -> bool:
    return response is None or response.status_code >= 500 or response.status_code == 429


def call(api: Api, method: str, path: str, **kwargs) -> requests.Response | None:
    """One request; None when the gateway could not be reached at all."""
    try:
        return api.request(method, path, **kwargs)
    except requests.RequestException:
        return None


def insist(api: Api, method: str, path: str, deadline: float, **kwargs) -> requests.Response:
    """Repeat a request while the registry is (partly) down: 5xx or no answer."""
    while True:
        response = call(api, method, path, **kwargs)
        if not transient(response) or time.monotonic() > deadline:
            assert response is not None, f"{method} {path}: no answer before the deadline"
            return response
        eventlet.sleep(0.2)


def next_transition(licence: dict, cycles: int) -> dict | None:
    """The walk every licence takes, decided from where it actually is (a request
    that failed may still have committed): submitted → under_review →
    inspection_scheduled → granted, then `cycles` suspensions and reinstatements,
    then revoked."""
    status, version = licence["status"], licence["version"]
    if status == "submitted":
        return {"to": "under_review"}
    if status == "under_review":
        return {
            "to": "inspection_scheduled",
            "inspection_date": (date.today() + timedelta(days=14)).isoformat(),
        }
    ref = f"DRAP/LIC/{date.today().year}/{version:04d}"
    if status in ("inspection_scheduled", "suspended"):
        return {"to": "granted", "decision_ref": ref}
    if status == "granted":
        # The first grant is version 4; each suspension and reinstatement adds 2.
        if (version - 4) // 2 < cycles:
            return {"to": "suspended", "decision_ref": ref}
        return {"to": "revoked", "decision_ref": ref}
    return None


def walked_until(status: str) -> Callable[[dict], dict | None]:
    """The steps of the usual walk up to `status`."""

    def step(licence: dict) -> dict | None:
        return None if licence["status"] == status else next_transition(licence, cycles=0)

    return step


# The expiry ladder: validities (days from today) a licence is granted and then renewed
# with, each with the warning (days before valid_until) the expiry sweep owes it: one
# granted 20 days before its end is warned once, of 30 days (covering 180 and 90).
EXPIRY_LADDER = ((20, 30), (60, 90), (150, 180), (5 * 365, None))


def expiry_ladder(first_rung: int) -> Callable[[dict], dict | None]:
    """The steps of a licence granted on `first_rung` of the ladder and renewed up it
    rung by rung, each renewal only once the sweep warned of the current validity's
    end (so that each warning due is sent, and observed, before the next)."""

    def step(licence: dict) -> dict | None:
        status = licence["status"]
        ref = f"DRAP/LIC/{date.today().year}/{licence['version']:04d}"
        if status == "inspection_scheduled":
            return {"to": "granted", "decision_ref": ref, **validity(first_rung)}
        if status != "granted":
            return next_transition(licence, cycles=0)
        rung = ladder_rung(licence["valid_until"])
        warning = EXPIRY_LADDER[rung][1]
        if warning is not None and warning not in licence["expiry_warnings"]:
            return AWAIT_SWEEP
        if rung + 1 == len(EXPIRY_LADDER):
            return None
        return {"to": "renewed", "decision_ref": ref, **validity(rung + 1)}

    return step


def validity(rung: int) -> dict:
    return {"valid_until": (date.today() + timedelta(days=EXPIRY_LADDER[rung][0])).isoformat()}


def ladder_rung(valid_until: str) -> int:
    """The rung of the ladder a valid_until is on (the rungs are far apart)."""
    left = (datetime.fromisoformat(valid_until) - datetime.now(UTC)).days
    return min(range(len(EXPIRY_LADDER)), key=lambda rung: abs(EXPIRY_LADDER[rung][0] - left))


# A request that got no answer may still be running: waiting in licensing for a
# document that a killed process's open transaction keeps locked until the database
# reaps it (60 s). The driver watches for its outcome this long before asking again,
# so that retries do not pile up behind the lock and take every worker.
UNKNOWN_OUTCOME_SECONDS = 10


@dataclass
class Traffic:
    """What the driver saw: answers by status, the problems' details of the 5xx ones
    (which service did not answer, and why), and transitions confirmed with 200.
    A scenario that ends the traffic on what it sees, not on a clock, calls `stop`."""

    answers: Counter = field(default_factory=Counter)
    unavailable: Counter = field(default_factory=Counter)
    transitions: int = 0
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True


# What a walk's step returns when the licence waits for the expiry sweep, not a person.
AWAIT_SWEEP: dict = {}


def problem_detail(response: requests.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:200]


def plant_ended(response: requests.Response) -> bool:
    """A 409 because the licence's plant was decommissioned: it is put in force no more."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    return any(error.get("type") == "decommissioned" for error in errors)


def walk(
    api: Api,
    licence_id: str,
    load: "Load",
    traffic: Traffic,
    until: float,
    steps: Callable[[dict], dict | None] | None = None,
) -> None:
    """Take one licence through its walk (`steps`: the next transition from where the
    licence is, by default `next_transition`) until it ends, `until` (monotonic)
    passes or the traffic is stopped. After a failure (503 while licensing is down, a
    409 because the change had committed before a crash, a 422 for a renewal that such
    a change made moot) re-read the licence and carry on from its actual status; a
    licence whose plant was decommissioned is put in force no more, and its walk ends."""
    steps = steps or partial(next_transition, cycles=load.cycles)
    path = f"/v1/licenses/{licence_id}"
    deadline = until + 120
    licence = insist(api, "GET", path, deadline).json()
    while not traffic.stopped and time.monotonic() < until and (step := steps(licence)) is not None:
        if step is AWAIT_SWEEP:
            eventlet.sleep(0.5)
            licence = insist(api, "GET", path, deadline).json()
            continue
        body = {**step, "reason": f"DRAP decided: {step['to']}"}
        response = call(api, "POST", path + "/transitions", json=body)
        status = response.status_code if response is not None else None
        traffic.answers[status or "no answer"] += 1
        if status is not None and status >= 500:
            traffic.unavailable[problem_detail(response)] += 1
        if status == 200:
            traffic.transitions += 1
            licence = response.json()
            eventlet.sleep(load.pause)
            continue
        if status == 409 and plant_ended(response):
            return
        if status not in (409, 422, 503, None):
            raise AssertionError(f"{path}: {status} {response.text}")
        settled = time.monotonic() + (UNKNOWN_OUTCOME_SECONDS if status in (503, None) else 0)
        before = licence["version"]
        while True:
            licence = insist(api, "GET", path, deadline).json()
            settling = time.monotonic() < min(settled, until) and not traffic.stopped
            if licence["version"] != before or not settling:
                break
            eventlet.sleep(0.5)
        # A renewal decided on a validity that an earlier attempt (its outcome unknown)
        # has since extended is invalid, not a conflict; on the licence as read, a defect.
        if status == 422 and licence["version"] == before:
            raise AssertionError(f"{path}: {status} {response.text}")


def created(api: Api, path: str, body: dict, deadline: float) -> dict:
    """POST until 201: a service that has not yet learned of what the body names (it
    learns from events, within moments) answers 503 and asks to retry shortly. A try
    that got no answer in time may still have committed: a licence application's retry
    is then refused because that application is open, and the refusal names it."""
    response = insist(api, "POST", path, deadline, json=body)
    if response.status_code == 409 and path == "/v1/licenses":
        earlier = response.json().get("open_application")
        if earlier:
            response = insist(api, "GET", f"{path}/{earlier}", deadline)
            assert response.status_code == 200, f"{path}/{earlier}: {response.status_code}"
            return response.json()
    assert response.status_code == 201, f"{path}: {response.status_code} {response.text}"
    return response.json()


# --- the registry of one scenario ------------------------------------------------------


@dataclass(frozen=True)
class Load:
    ventures: int  # one plant each
    licences_per_plant: int  # manufacturing licences applied for per plant
    seconds: float  # how long the traffic lasts
    cycles: int = 3  # suspensions and reinstatements per licence before it is revoked
    drivers: int = 8  # licences driven at once
    # Seconds a driver waits after each decision: many licences change at once, each
    # at the pace of a regulator's decisions, and the consumers' kills fall among them.
    pause: float = 0


@dataclass
class VentureMade:
    id: str
    plants: dict[str, list[str]]  # plant id -> its licences' ids


class ChaosRegistry:
    """The registry's processes on a vhost and databases of a scenario's own, a
    webhook subscription and a regulator queue, both in place before any traffic."""

    def __init__(
        self,
        backends: dict,
        management: RabbitManagement,
        launcher: Launcher,
        log_dir: Path,
        instances: dict[str, int] | None = None,
        min_life: float = MIN_LIFE_SECONDS,
    ):
        self.management = management
        self.vhost = f"jvreg-chaos-{uuid.uuid4().hex[:10]}"
        management.create_vhost(self.vhost)
        self.amqp_uri = amqp_uri_for(backends["amqp_uri"], self.vhost)
        self.mongo_uri = backends["mongo_uri"]
        self.prefix = f"chaos{uuid.uuid4().hex[:8]}"
        self.ops_key = "jvk_ops_" + uuid.uuid4().hex
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if k != "JVREG_FAULTS"},
            "PYTHONUNBUFFERED": "1",
            "JVREG_MONGO_URI": self.mongo_uri,
            "JVREG_AMQP_URI": self.amqp_uri,
            # The scenario's throw-away vhost has one broker user, `guest`, which its
            # poison publishers share: every service is that user here.
            "JVREG_BROKER_USER": broker_user(self.amqp_uri),
            "JVREG_DB_PREFIX": self.prefix,
            "JVREG_GATEWAY_PORT": str(port),
            "JVREG_OPS_KEY": self.ops_key,
            "JVREG_WEBHOOK_ALLOW_PRIVATE": "true",
            "JVREG_RELAY_POLL_SECONDS": "0.2",
            # The sweep's warnings are automatic events the suite follows too (scenario 8).
            "JVREG_EXPIRY_SWEEP_SECONDS": "1",
            "JVREG_RPC_TIMEOUT_SECONDS": "3",
            # Every driver comes from 127.0.0.1: the bound on one client address's
            # connections is for the internet's clients, not a scenario's many drivers.
            "JVREG_HTTP_CONNECTIONS_PER_CLIENT": "256",
            "JVREG_SEARCH_DATA_DIR": str(log_dir / "search"),
            "JVREG_SEARCH_INSTANCE": "chaos",
        }
        counts = {name: 1 for name in MODULES} | (instances or {})
        self.processes = [
            ServiceProcess(launcher, name, n, env, log_dir, min_life)
            for name, count in counts.items()
            for n in range(1, count + 1)
        ]
        self.regulator_queue = RegulatorQueue(self.amqp_uri)
        self.mongo = MongoClient(self.mongo_uri)
        self.settings = Settings(
            mongo_uri=self.mongo_uri, amqp_uri=self.amqp_uri, db_prefix=self.prefix
        )
        self.webhooks = WebhookReceiver().__enter__()  # the regulator's webhook endpoint
        self.supervisor: Supervisor | None = None

    def db(self, service: str):
        return self.mongo[self.settings.database_name(service)]

    def of(self, *names: str) -> list[ServiceProcess]:
        return [process for process in self.processes if process.name in names]

    def start(self) -> None:
        for process in self.processes:
            process.start()
        self.ops = Api(self.url, self.ops_key)

        def healthy() -> bool:
            if dead := [p.label for p in self.processes if not p.running]:
                raise RuntimeError(f"exited: {', '.join(dead)}")
            return self.ops.get("/health").status_code == 200

        wait_until(healthy, 90, "the registry's /health")
        for queue in LICENCE_CONSUMER_QUEUES:
            wait_until(
                lambda q=queue: self.queue_stats(q).get("consumers", 0) >= 1,
                30,
                f"a consumer on {queue}",
            )
        response = self.ops.post(
            "/v1/api-keys", json={"role": "regulator", "owner": "DRAP Licensing Division"}
        )
        assert response.status_code == 201, response.text
        self.regulator_key = response.json()["key"]
        response = Api(self.url, self.regulator_key).post(
            "/v1/subscriptions",
            json={"url": self.webhooks.answer(WEBHOOK_PATH, 204), "event_types": ["license.*"]},
        )
        assert response.status_code == 201, response.text
        self.supervisor = Supervisor(self.processes)

    def queue_stats(self, name: str) -> dict:
        return self.management.queue(self.vhost, name)

    def arm(self, faults: str, *names: str) -> None:
        """Restart the processes of `names` with the fault hook JVREG_FAULTS=`faults`."""
        armed = self.of(*names)
        for process in armed:
            process.env["JVREG_FAULTS"] = faults
        restart_together(armed)

    def disarm(self) -> None:
        """The end of the faults: restart every armed process without its hook."""
        restart_together(
            [process for process in self.processes if process.env.pop("JVREG_FAULTS", None)]
        )

    def stop(self) -> None:
        if self.supervisor:
            self.supervisor.stop()
        for process in self.processes:
            process.signal(signal.SIGTERM)  # all at once, then wait for each
        for process in self.processes:
            process.stop()
        self.webhooks.__exit__(None, None, None)
        self.mongo.close()
        self.management.delete_vhost(self.vhost)

    # --- what a scenario does ----------------------------------------------------------

    def apply_for_licences(self, load: Load, timeout: float = 120) -> list[str]:
        """`load.ventures` ventures with a plant each, and its manufacturing licences."""
        ventures = self.ventures_with_plants(load.ventures, 1, load.licences_per_plant, timeout)
        return [lid for venture in ventures for ids in venture.plants.values() for lid in ids]

    def ventures_with_plants(
        self, ventures: int, plants: int, licences_per_plant: int, timeout: float = 120
    ) -> list["VentureMade"]:
        """`ventures` ventures with `plants` plants each, and each plant's first
        `licences_per_plant` manufacturing licences applied for."""
        deadline = time.monotonic() + timeout

        def venture_with_plants(_) -> VentureMade:
            ops = Api(self.url, self.ops_key)  # a session per green thread, as a driver has
            venture = created(ops, "/v1/ventures", venture_body(), deadline)
            made = VentureMade(venture["id"], {})
            for _ in range(plants):
                plant = created(ops, f"/v1/ventures/{venture['id']}/facilities", PLANT, deadline)
                made.plants[plant["id"]] = [
                    created(
                        ops, "/v1/licenses", {"facility_id": plant["id"], "type": kind}, deadline
                    )["id"]
                    for kind in MANUFACTURING_LICENCES[:licences_per_plant]
                ]
            return made

        pool = eventlet.GreenPool(8)
        return list(pool.imap(venture_with_plants, range(ventures)))

    def drive(
        self,
        licences: list[str],
        load: Load,
        steps: dict[str, Callable[[dict], dict | None]] | None = None,
        traffic: Traffic | None = None,
    ) -> Traffic:
        """Walk licences for `load.seconds` or until `traffic` is stopped, `load.drivers`
        at a time, each driver taking the next licence when its licence reached the end
        of its walk (`steps`: the walk of a licence, by licence id, when it is not the
        usual one)."""
        traffic = traffic or Traffic()
        until = time.monotonic() + load.seconds
        waiting = list(reversed(licences))
        steps = steps or {}

        def driver() -> None:
            api = Api(self.url, self.regulator_key)
            while waiting and not traffic.stopped and time.monotonic() < until:
                licence_id = waiting.pop()
                walk(api, licence_id, load, traffic, until, steps.get(licence_id))

        for thread in [eventlet.spawn(driver) for _ in range(load.drivers)]:
            thread.wait()  # raises what the driver raised
        return traffic

    # --- measuring ---------------------------------------------------------------------

    def measure(self, excluded_ids: set[str] = frozenset()) -> "Measurement":
        self.regulator_queue.drain()
        outbox = list(self.db("licensing").outbox.find({}, {"status": 1}))
        tally = {doc["_id"]: doc["count"] for doc in self.db("chaos_tally").effects.find()}
        webhooks = Counter(
            doc["event_id"] for doc in self.db("notifications").deliveries.find({}, {"event_id": 1})
        )
        wire = {
            event_id: count
            for event_id, count in self.regulator_queue.deliveries.items()
            if event_id not in excluded_ids
        }
        return Measurement(
            committed={doc["_id"] for doc in outbox},
            sent={doc["_id"] for doc in outbox if doc["status"] == "sent"},
            wire=wire,
            tally=tally,
            webhooks=dict(webhooks),
        )

    def sequences_applied(self) -> dict[str, tuple[int, list[int]]]:
        """Per licence: its version at the source, and the sequences the tally applied."""
        applied = {doc["_id"]: doc["applied"] for doc in self.db("chaos_tally").licences.find()}
        return {
            doc["_id"]: (doc["version"], applied.get(doc["_id"], []))
            for doc in self.db("licensing").licences.find({}, {"version": 1})
        }

    def search_violations(self) -> list[str]:
        """The search index has every licence at its version, each of its events applied
        once: a lost event leaves it behind, one applied twice counts more changes than
        its sequence."""
        versions = {
            doc["_id"]: doc["version"]
            for doc in self.db("licensing").licences.find({}, {"version": 1})
        }
        try:
            with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=10) as rpc:
                indexed = rpc.search.applications(list(versions))
        except Exception as error:  # down or restarting: asked again at the next look
            return [f"search: not answering ({error!r})"]
        for licence_id, version in versions.items():
            state = indexed[licence_id]
            if state != {"sequence": version, "applications": version}:
                return [f"search: {licence_id} at version {version}, index has {state}"]
        return []

    def violations(self, measurement: "Measurement", expected_dead_letters: int) -> list[str]:
        """Every invariant that does not hold (yet); empty once converged."""
        found = measurement.violations()
        pending = self.db("licensing").outbox.count_documents({"status": "pending"})
        pending += self.db("facilities").outbox.count_documents({"status": "pending"})
        if pending:
            found.append(f"{pending} outbox records still pending")
        for licence_id, (version, applied) in self.sequences_applied().items():
            if applied != list(range(1, version + 1)):
                found.append(f"{licence_id}: version {version}, tally applied {applied}")
                break
        found += self.search_violations()
        for check in reconcile(self.settings):
            if check.drift:
                found.append(f"reconcile: {check.name}: {check.drift[:3]}")
        dead = self.queue_stats(DEAD_LETTER_QUEUE).get("messages", 0)
        if dead != expected_dead_letters:
            found.append(f"{dead} dead letters, {expected_dead_letters} expected")
        return found

    # --- the automatic events (scenario 8) ----------------------------------------------

    def histories(self, licences: Iterable[str]) -> dict[str, list[dict]]:
        """The history entries of each licence, in sequence order."""
        found: dict[str, list[dict]] = {licence_id: [] for licence_id in licences}
        query = {"license_id": {"$in": list(found)}}
        for entry in self.db("licensing").history.find(query).sort("_id", 1):
            found[entry["license_id"]].append(entry)
        return found

    def plant_ending_violations(self, plants: dict[str, list[str]]) -> list[str]:
        """`plants` (plant id -> its licences) were decommissioned with their ventures:
        each is decommissioned at facilities and in licensing's projection, none of its
        licences is in force, and a licence the plant's end revoked has exactly one such
        revocation, from `granted` or `suspended`, and nothing after it."""
        found = []
        for service in ("facilities", "licensing"):
            statuses = {
                doc["_id"]: doc.get("status")
                for doc in self.db(service).facilities.find({"_id": {"$in": list(plants)}})
            }
            if ongoing := [p for p in plants if statuses.get(p) != "decommissioned"]:
                found.append(f"{service}: {len(ongoing)} plants not decommissioned")
        licences = [licence_id for ids in plants.values() for licence_id in ids]
        for licence_id, entries in self.histories(licences).items():
            ended = [e for e in entries if e["actor"]["key_id"] == PLANT_ENDED_KEY]
            if entries and entries[-1]["to"] in IN_FORCE_STATUSES:
                found.append(f"{licence_id}: {entries[-1]['to']} on a decommissioned plant")
            if len(ended) > 1:
                found.append(f"{licence_id}: revoked with its plant {len(ended)} times")
            elif ended and ended[0] is not entries[-1]:
                found.append(f"{licence_id}: changed after its plant's end revoked it")
            elif ended and not (
                ended[0]["from"] in IN_FORCE_STATUSES and ended[0]["event"] == "license.revoked"
            ):
                found.append(f"{licence_id}: ended with its plant by {ended[0]}")
        return found

    def warning_violations(self, licences: Iterable[str]) -> list[str]:
        """Each validity a licence was granted or renewed with owes the warning of the
        nearest threshold it starts within (none for one beyond 180 days): exactly one
        `license.expiring` of those days before the next validity or the end (no licence
        of scenario 8 is suspended while a warning is due)."""
        found = []
        for licence_id, entries in self.histories(licences).items():
            periods: list[tuple[int | None, list[int]]] = []
            for entry in entries:
                if valid_until := entry["fields"].get("valid_until"):
                    periods.append((owed_warning(valid_until, entry["time"]), []))
                elif entry["event"] == "license.expiring":
                    if not periods:
                        found.append(f"{licence_id}: warned before any validity")
                        continue
                    periods[-1][1].append(entry["fields"]["days_before"])
            for owed, sent in periods:
                if sent != ([owed] if owed else []):
                    found.append(f"{licence_id}: owed warning {owed}, sent {sent}")
        return found

    def converge(
        self,
        timeout: float,
        extra: Callable[[], list[str]] = list,
        excluded_ids: set[str] = frozenset(),
        expected_dead_letters: int = 0,
    ) -> tuple["Measurement", float, list]:
        """Poll until every invariant holds; returns the last measurement, the seconds
        it took and what still failed (empty when converged)."""
        started = time.monotonic()
        while True:
            measurement = self.measure(excluded_ids)
            problems = self.violations(measurement, expected_dead_letters) + extra()
            elapsed = time.monotonic() - started
            if not problems or elapsed > timeout:
                return measurement, elapsed, problems
            eventlet.sleep(0.5)

    def queues_empty(self, *names: str) -> list[str]:
        problems = []
        for name in names:
            stats = self.queue_stats(name)
            ready, unacked = stats.get("messages_ready"), stats.get("messages_unacknowledged")
            if (ready, unacked) != (0, 0):
                problems.append(f"queue {name}: {ready} ready, {unacked} unacked")
        return problems


def owed_warning(valid_until: str, since: datetime) -> int | None:
    """The expiry warning (days before `valid_until`) owed to a validity that began at
    `since`: the nearest threshold it starts within."""
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    left = datetime.fromisoformat(valid_until) - since
    return min((d for d in EXPIRY_WARNING_DAYS if left <= timedelta(days=d)), default=None)


@dataclass
class Measurement:
    committed: set[str]  # ids of the licensing outbox: every change committed
    sent: set[str]  # ... of which the relay marked sent
    wire: dict[str, int]  # event id -> times it reached the regulator queue
    tally: dict[str, int]  # event id -> times the tally's effect ran
    webhooks: dict[str, int]  # event id -> webhook deliveries created for it

    @property
    def delivered(self) -> int:
        return len(self.wire)

    @property
    def duplicated(self) -> int:
        return sum(self.wire.values()) - len(self.wire)

    @property
    def lost(self) -> set[str]:
        return self.committed - self.wire.keys()

    @property
    def applied_twice(self) -> set[str]:
        return {event_id for event_id, n in self.tally.items() if n > 1} | {
            event_id for event_id, n in self.webhooks.items() if n > 1
        }

    def violations(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} committed events not on the regulator queue")
        if unsent := self.sent - self.wire.keys():
            found.append(f"{len(unsent)} outbox records marked sent but never delivered")
        if phantom := self.wire.keys() - self.committed:
            found.append(f"{len(phantom)} events on the wire that were never committed")
        if missing := self.committed - self.tally.keys():
            found.append(f"{len(missing)} events the tally did not apply")
        if missing := self.committed - self.webhooks.keys():
            found.append(f"{len(missing)} events without a webhook delivery")
        if twice := self.applied_twice:
            found.append(f"{len(twice)} events applied more than once")
        return found


@dataclass
class Outcome:
    """One scenario's line of the report."""

    scenario: str
    faults: int
    sent: int
    delivered: int
    duplicated: int
    lost: int
    applied_twice: int
    converge_seconds: float
    # A cluster node's kill: the longest it took until the services worked on without it.
    recover_seconds: float | None = None

    @classmethod
    def of(cls, scenario: str, faults: int, measurement: Measurement, seconds: float):
        return cls(
            scenario,
            faults,
            len(measurement.committed),
            measurement.delivered,
            measurement.duplicated,
            len(measurement.lost),
            len(measurement.applied_twice),
            seconds,
        )

    def line(self) -> str:
        return (
            f"{self.scenario}: faults injected {self.faults}, events sent {self.sent}, "
            f"delivered {self.delivered}, duplicated on the wire {self.duplicated}, "
            f"lost {self.lost}, applied twice {self.applied_twice}, "
            f"converged in {self.converge_seconds:.1f} s"
            + (
                ""
                if self.recover_seconds is None
                else f", recovered in {self.recover_seconds:.1f} s"
            )
        )


@contextmanager
def chaos_registry(backends, management, launcher, log_dir, **kwargs) -> Iterator[ChaosRegistry]:
    registry = ChaosRegistry(backends, management, launcher, log_dir, **kwargs)
    try:
        registry.start()
        yield registry
    except BaseException:
        for log in sorted(log_dir.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-2000:]}")
        # The scenario's vhost goes with it: say now what was dead-lettered, and why.
        with suppress(Exception):
            for letter in DeadLetterQueue(registry.amqp_uri).list():
                print(f"--- dead letter: {letter}")
        raise
    finally:
        registry.stop()


# --- faults the suite injects itself -----------------------------------------------------


def restart_broker(node: RabbitNode, down_seconds: float) -> None:
    """Stop the node's RabbitMQ application (every connection drops) and start it
    again after `down_seconds`."""
    node.stop_app()
    try:
        eventlet.sleep(down_seconds)
    finally:
        node.start_app()


@dataclass
class NodeKill:
    node: str
    recovered_seconds: float  # until every queue had a leader elsewhere and a consumer
    rejoined_seconds: float  # until the node, started again, was back in the cluster


def kill_the_busiest_leader(cluster: RabbitCluster, vhost: str, queues: Iterable[str]) -> NodeKill:
    """SIGKILL the node leading most of `queues` (quorum queues) and measure, through
    another node's management API, how long until each of them has a leader elsewhere
    and a consumer again (the services failed over); then start the node again and
    wait until the cluster lists it."""
    stats = {
        queue: RabbitManagement(cluster.management_url).queue(vhost, queue) for queue in queues
    }
    leader = Counter(queue["leader"] for queue in stats.values()).most_common(1)[0][0]
    node = cluster.node(leader)
    survivor = RabbitManagement(next(n for n in cluster.nodes if n is not node).management_url)

    def failed_over() -> bool:
        now = [survivor.queue(vhost, queue) for queue in stats]
        return all(
            queue.get("leader") not in (None, leader) and queue["consumers"] for queue in now
        )

    killed = time.monotonic()
    node.kill()
    wait_until(failed_over, 120, f"{sorted(stats)} led and consumed away from {leader}")
    recovered = time.monotonic() - killed
    node.start()
    cluster.wait_running()
    return NodeKill(leader, recovered, time.monotonic() - killed)


def kill_at_random(
    processes: list[ServiceProcess], pause: tuple[float, float], until: float, rng
) -> None:
    """Until `until`, every `pause` seconds (a random value in that range) SIGKILL a
    random process of `processes` that has run for at least its `min_life`."""
    while time.monotonic() < until:
        eventlet.sleep(rng.uniform(*pause))
        now = time.monotonic()
        if ripe := [p for p in processes if p.running and now - p.started_at >= p.min_life]:
            rng.choice(ripe).kill()


POISON_KINDS = (
    "foreign publisher",
    "missing attribute",
    "wrong specversion",
    "unparseable time",
    "unknown type",
    "not JSON",
    "always fails",
)


def poison_message(kind: str, event_id: str) -> tuple[bytes, str]:
    """The body and routing key of a poison message of `kind` with id `event_id`.
    'always fails' is a valid CloudEvent whose data does not describe its licence:
    the tally and the facilities service fail on it at every delivery."""
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/jvreg/licensing",
        "type": "jvreg.license.granted",
        "subject": f"lic_poison_{event_id[:8]}",
        "time": "2026-05-12T09:41:07.530Z",
        "datacontenttype": "application/json",
        "sequence": 1,
        "data": {},
    }
    routing_key = "license.granted"
    if kind == "missing attribute":
        del envelope["source"]
    elif kind == "wrong specversion":
        envelope["specversion"] = "0.3"
    elif kind == "unparseable time":
        envelope["time"] = "the twelfth of May"
    elif kind == "unknown type":
        envelope["type"], routing_key = "jvreg.license.misplaced", "license.misplaced"
    elif kind == "not JSON":
        return b'{"specversion": "1.0", "id": ', routing_key
    return json.dumps(envelope).encode(), routing_key


def publish_poison(connection: Connection, kind: str) -> str:
    """Publish one poison message to licensing.events, as a faulty producer would (as
    the licensing service's broker user), or for 'foreign publisher' a valid event
    without that identity, as a forger would; returns its id (also its AMQP
    message_id, so even an undecodable one is known)."""
    event_id = str(uuid.uuid4())
    body, routing_key = poison_message(kind, event_id)
    identity = {} if kind == "foreign publisher" else {"user_id": connection.userid}
    connection.Producer().publish(
        body,
        exchange=events_exchange("licensing"),
        routing_key=routing_key,
        content_type="application/json",
        content_encoding="utf-8",
        message_id=event_id,
        delivery_mode=2,
        retry=True,
        **identity,
    )
    return event_id
