"""`make dev SCALE=2` under the chaos suite's invariants: the real `jvreg dev --scale 2`
(two processes of every service behind the same queues, the two gateways sharing one
port) on a data dir, SecantusDB, gateway port and vhost of its own, driven over HTTP.
While nothing fails: every queue has its two competing consumers, each outbox record
is published once (two relays), each licence due expires once (two sweeps) and each
event reaches the regulator's webhook once (two notifications instances). Then one
instance of every service is killed mid-traffic: `jvreg dev` starts each again, and
nothing is lost or applied twice (a duplicate on the wire is allowed after a kill)."""

import os
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import timedelta
from urllib.parse import quote

import eventlet
import pytest
import requests
from harness import (
    MANUFACTURING_LICENCES,
    Load,
    RegulatorQueue,
    Traffic,
    created,
    insist,
    walk,
)
from nameko.standalone.rpc import ClusterRpcProxy
from pymongo import MongoClient

from ops.processes import free_port, wait_until
from ops.reconcile import reconcile
from shared import messaging
from shared.clock import utcnow
from shared.settings import Settings

from support import (
    PLANT,
    Api,
    DevProcess,
    RabbitManagement,
    dev_environment,
    venture_body,
)
from webhook_receiver import WebhookReceiver

SCALE = 2
WEBHOOK_PATH = "/drap"
# Licences walked while nothing fails (every walk to its end), and while one instance of
# each service is killed (more than the drivers get through: the traffic lasts throughout).
CALM = Load(ventures=3, licences_per_plant=3, seconds=8, cycles=2, drivers=6)
KILLS = Load(ventures=4, licences_per_plant=3, seconds=10, cycles=3, drivers=6)
# Seconds into the second traffic when one instance of every service is killed.
KILL_AFTER_SECONDS = 4
# A killed licensing instance leaves what its open transaction wrote locked until the
# database reaps it (60 s, docs/reliability.md "Known limits"), a killed notifications
# instance the webhooks it had leased (60 s): the registry converges after those.
CONVERGE_AFTER_KILLS_SECONDS = 120
# Licences granted to expire within seconds, while the traffic runs.
EXPIRING = len(MANUFACTURING_LICENCES)


class ScaledDev:
    """`jvreg dev --scale 2` on a vhost of the test's own, the regulator's queue and
    webhook endpoint in place before any traffic."""

    def __init__(
        self,
        dev: DevProcess,
        amqp_uri: str,
        vhost: str,
        management: RabbitManagement,
        mongo_uri: str,
    ):
        self.dev = dev
        self.amqp_uri = amqp_uri
        self.vhost = vhost
        self.management = management
        self.url = dev.value_after("is up at")
        self.ops_key = dev.value_after("bootstrap ops key:")
        self.ops = Api(self.url, self.ops_key)
        self.mongo = MongoClient(mongo_uri)
        self.settings = Settings(mongo_uri=mongo_uri, amqp_uri=amqp_uri)
        self.regulator_queue = RegulatorQueue(amqp_uri)
        key = self.ops.post(
            "/v1/api-keys", json={"role": "regulator", "owner": "DRAP Licensing Division"}
        )
        assert key.status_code == 201, key.text
        self.regulator_key = key.json()["key"]
        self.regulator = Api(self.url, self.regulator_key)

    def db(self, service: str):
        return self.mongo[self.settings.database_name(service)]

    def queues(self) -> list[dict]:
        return self.management.call("GET", f"queues/{quote(self.vhost, safe='')}")

    def instances(self) -> dict[str, list[int]]:
        """The pids of each service's processes, children of `jvreg dev`."""
        listing = subprocess.run(
            ["ps", "-ww", "--ppid", str(self.dev.process.pid), "-o", "pid=,args="],
            capture_output=True,
            text=True,
        ).stdout
        found: dict[str, list[int]] = {}
        for line in listing.splitlines():
            pid, args = line.strip().split(" ", 1)
            if match := re.search(r"services\.(\w+)\.service", args):
                found.setdefault(match.group(1), []).append(int(pid))
        return found

    def apply_for_licences(self, load: Load, types=MANUFACTURING_LICENCES) -> list[str]:
        deadline = time.monotonic() + 120

        def plant_with_licences(_) -> list[str]:
            ops = Api(self.url, self.ops_key)  # a session per green thread
            venture = created(ops, "/v1/ventures", venture_body(), deadline)
            plant = created(ops, f"/v1/ventures/{venture['id']}/facilities", PLANT, deadline)
            body = {"facility_id": plant["id"]}
            return [
                created(ops, "/v1/licenses", {**body, "type": kind}, deadline)["id"]
                for kind in types[: load.licences_per_plant]
            ]

        pool = eventlet.GreenPool(4)
        return [lid for ids in pool.imap(plant_with_licences, range(load.ventures)) for lid in ids]

    def drive(self, licences: list[str], load: Load, traffic: Traffic) -> Traffic:
        until = time.monotonic() + load.seconds
        waiting = list(reversed(licences))

        def driver() -> None:
            api = Api(self.url, self.regulator_key)
            while waiting and time.monotonic() < until:
                walk(api, waiting.pop(), load, traffic, until)

        for thread in [eventlet.spawn(driver) for _ in range(load.drivers)]:
            thread.wait()
        return traffic

    def grant_briefly(self, licence_ids: list[str], seconds: float) -> None:
        """Grant each licence valid for `seconds` from its grant: the sweeps expire it."""
        deadline = time.monotonic() + 60
        inspection = (utcnow() + timedelta(days=14)).date().isoformat()
        for licence_id in licence_ids:
            for step in (
                {"to": "under_review"},
                {"to": "inspection_scheduled", "inspection_date": inspection},
                {"to": "granted", "decision_ref": "DRAP/LIC/2026/0001"},
            ):
                if step["to"] == "granted":  # valid from the grant on
                    step["valid_until"] = (utcnow() + timedelta(seconds=seconds)).isoformat()
                path = f"/v1/licenses/{licence_id}/transitions"
                body = {**step, "reason": f"DRAP decided: {step['to']}"}
                response = insist(self.regulator, "POST", path, deadline, json=body)
                assert response.status_code == 200, response.text

    # --- what is measured ----------------------------------------------------------------

    def outbox(self) -> dict[str, dict]:
        return {doc["_id"]: doc for doc in self.db("licensing").outbox.find({})}

    def expired_events(self) -> Counter:
        """Per licence, the `license.expired` events its service committed."""
        records = self.db("licensing").outbox.find({"routing_key": "license.expired"})
        return Counter(doc["subject"] for doc in records)

    def search_violations(self) -> list[str]:
        """Each search instance has every licence at its version, each event applied
        once. The two instances answer the RPC queue in turn: ask both several times."""
        versions = {
            doc["_id"]: doc["version"]
            for doc in self.db("licensing").licences.find({}, {"version": 1})
        }
        try:
            with ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=10) as rpc:
                answers = [rpc.search.applications(list(versions)) for _ in range(2 * SCALE)]
        except Exception as error:  # an instance restarting: asked again at the next look
            return [f"search: not answering ({error!r})"]
        return [
            f"search: {licence_id} at version {version}, an index has {indexed[licence_id]}"
            for indexed in answers
            for licence_id, version in versions.items()
            if indexed[licence_id] != {"sequence": version, "applications": version}
        ][:3]

    def violations(self, webhooks: WebhookReceiver, expiring: list[str]) -> list[str]:
        """Every invariant that does not hold (yet): nothing lost, nothing applied twice,
        every projection equal to its source."""
        self.regulator_queue.drain()
        outbox = self.outbox()
        found = []
        if pending := [i for i, doc in outbox.items() if doc["status"] != "sent"]:
            found.append(f"{len(pending)} outbox records not sent")
        if lost := outbox.keys() - self.regulator_queue.deliveries.keys():
            found.append(f"{len(lost)} committed events not on the regulator queue")
        hooked = webhook_ids(webhooks)
        if missed := outbox.keys() - hooked.keys():
            found.append(f"{len(missed)} events not delivered to the webhook")
        deliveries = Counter(d["event_id"] for d in self.db("notifications").deliveries.find())
        if twice := [i for i, n in deliveries.items() if n > 1]:
            found.append(f"{len(twice)} events with more than one webhook delivery")
        expired = self.expired_events()
        if wrong := {i: expired[i] for i in expiring if expired[i] != 1}:
            found.append(f"licences not expired exactly once: {wrong}")
        for licence in self.db("licensing").licences.find({}, {"version": 1}):
            history = self.ops.get(f"/v1/licenses/{licence['_id']}/history").json()["items"]
            if len(history) != licence["version"]:
                found.append(f"{licence['_id']}: version {licence['version']}, {len(history)}")
                break
        found += self.search_violations()
        for check in reconcile(self.settings):
            if check.drift:
                found.append(f"reconcile: {check.name}: {check.drift[:3]}")
        return found

    def converge(self, webhooks: WebhookReceiver, expiring: list[str], timeout: float) -> float:
        started = time.monotonic()
        problems: list[str] = []

        def converged() -> bool:
            problems[:] = self.violations(webhooks, expiring)
            return not problems

        try:
            wait_until(converged, timeout, "the invariants", pause=0.5)
        except TimeoutError:
            pytest.fail(f"not converged after {timeout} s: {problems}")
        return time.monotonic() - started


def webhook_ids(webhooks: WebhookReceiver) -> Counter:
    """How often each event (its `webhook-id`) reached the regulator's endpoint."""
    return Counter(request.headers["webhook-id"] for request in webhooks.received(WEBHOOK_PATH))


@pytest.fixture
def scaled(backends, rabbit_management: RabbitManagement, vhost, amqp_uri, tmp_path):
    env = dev_environment(amqp_uri, backends["management_url"], tmp_path)
    env.update(
        JVREG_EXPIRY_SWEEP_SECONDS="1",
        JVREG_WEBHOOK_ALLOW_PRIVATE="true",
        JVREG_RELAY_POLL_SECONDS="0.2",
        JVREG_RPC_TIMEOUT_SECONDS="5",
    )
    mongo_port = free_port()
    dev = DevProcess(env, tmp_path, mongo_port, "--scale", str(SCALE))
    try:
        dev.wait_for("bootstrap ops key:", timeout=180)
        mongo_uri = f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true"
        scaled = ScaledDev(dev, amqp_uri, vhost, rabbit_management, mongo_uri)
        yield scaled
        scaled.mongo.close()
    finally:
        exit_code = dev.interrupt(90)
        print(dev.output()[-6000:])
        assert exit_code == 0


def competing_consumers(scaled: ScaledDev) -> list[str]:
    """Every queue of the registry has its two consumers, but the search instances'
    own: two of each, one consumer each."""
    problems = []
    search_queues = Counter()
    for queue in scaled.queues():
        name = queue["name"]
        if name.startswith("rpc.reply") or name in (
            messaging.DEAD_LETTER_QUEUE,
            scaled.regulator_queue.queue.name,
        ):
            continue
        if match := re.fullmatch(r"search\.([a-z0-9-]+)\.(\w+)", name):
            search_queues[match.group(2)] += 1
            expected = 1
        else:
            expected = SCALE
        if queue.get("consumers") != expected:
            problems.append(f"{name}: {queue.get('consumers')} consumers")
    if not search_queues or set(search_queues.values()) != {SCALE}:
        problems.append(f"search instances' queues: {dict(search_queues)}")
    return problems


def gateways_serving(scaled: ScaledDev) -> Counter:
    """GET /health over fresh connections until each gateway has logged serving one
    (nameko's access log): the kernel spreads the connections over both (SO_REUSEPORT).
    Not a refused request: failed authentications from one address are throttled."""
    probe = f"/health?probe={uuid.uuid4().hex}"
    served: Counter = Counter()
    for _ in range(200):
        assert requests.get(scaled.url + probe, timeout=10).status_code == 200
        served = Counter(
            line.split("]", 1)[0].lstrip("[")
            for line in scaled.dev.lines
            if line.startswith("[gateway.") and f'"GET {probe} HTTP/1.1" 200' in line
        )
        if len(served) == SCALE:
            break
    return served


def test_two_instances_of_every_service_keep_every_invariant(scaled):
    started = time.monotonic()
    assert f"{SCALE} instances of every service" in scaled.dev.output()
    instances = scaled.instances()
    assert sorted(instances) == sorted(messaging.SERVICES)
    assert {len(pids) for pids in instances.values()} == {SCALE}, instances
    try:
        wait_until(lambda: not competing_consumers(scaled), 60, "two consumers on each queue")
    except TimeoutError:
        pytest.fail(f"competing consumers: {competing_consumers(scaled)}")
    served = gateways_serving(scaled)
    assert len(served) == SCALE, f"only {dict(served)} served"

    with WebhookReceiver() as webhooks:
        subscription = scaled.regulator.post(
            "/v1/subscriptions",
            json={"url": webhooks.answer(WEBHOOK_PATH, 204), "event_types": ["license.*"]},
        )
        assert subscription.status_code == 201, subscription.text

        # While nothing fails: each record published once, each licence expired once,
        # each event delivered to the webhook once.
        expiring = scaled.apply_for_licences(Load(1, EXPIRING, 0))
        calm = scaled.apply_for_licences(CALM)
        scaled.grant_briefly(expiring, seconds=4)
        traffic = scaled.drive(calm, CALM, Traffic())
        calm_seconds = scaled.converge(webhooks, expiring, timeout=60)
        wire, hooked = scaled.regulator_queue.deliveries, webhook_ids(webhooks)
        committed = scaled.outbox().keys()
        assert set(wire) == committed and set(wire.values()) == {1}, "published more than once"
        assert set(hooked) == committed and set(hooked.values()) == {1}, "delivered twice"
        print(
            f"\nscale {SCALE}, nothing killed: {traffic.transitions} transitions, "
            f"{len(committed)} events published once each, {len(hooked)} webhooks once each, "
            f"{EXPIRING} licences expired once each, gateways served {dict(served)}; "
            f"converged in {calm_seconds:.1f} s"
        )

        # One instance of every service killed mid-traffic.
        busy = scaled.apply_for_licences(KILLS)
        traffic = Traffic()
        driving = eventlet.spawn(scaled.drive, busy, KILLS, traffic)
        eventlet.sleep(KILL_AFTER_SECONDS)
        victims = {service: pids[0] for service, pids in scaled.instances().items()}
        for pid in victims.values():
            os.kill(pid, signal.SIGKILL)
        before_kills = traffic.transitions
        assert not driving.dead, "the traffic ended before the kills"
        driving.wait()
        assert traffic.transitions > before_kills, "no transition after the kills"
        wait_until(
            lambda: scaled.dev.output().count("started it again") >= len(victims),
            60,
            "every killed instance started again",
        )
        now = scaled.instances()
        assert {len(pids) for pids in now.values()} == {SCALE}, now
        assert not set(victims.values()) & {pid for pids in now.values() for pid in pids}
        wait_until(lambda: not competing_consumers(scaled), 60, "the consumers back")
        kills_seconds = scaled.converge(webhooks, expiring, CONVERGE_AFTER_KILLS_SECONDS)
        wire, hooked = scaled.regulator_queue.deliveries, webhook_ids(webhooks)
        committed = scaled.outbox().keys()
        print(
            f"scale {SCALE}, {len(victims)} instances killed (one of each service): "
            f"{traffic.transitions} transitions ({before_kills} before the kills), "
            f"{len(committed)} events in all, lost 0, "
            f"duplicated on the wire {sum(wire.values()) - len(wire)}, "
            f"webhooks sent again {sum(hooked.values()) - len(hooked)}, applied twice 0; "
            f"converged in {kills_seconds:.1f} s; {time.monotonic() - started:.0f} s in all"
        )
