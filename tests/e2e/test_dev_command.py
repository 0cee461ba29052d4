"""`make dev` as a developer runs it: `jvreg dev` brings the registry up, prints the
URL and the ops key, stops everything on Ctrl-C, and keeps the data for next time."""

import json
import socket
import subprocess
from pathlib import Path

from kombu import Connection

from ops.processes import free_port, port_open, wait_until
from shared import messaging
from shared.broker_users import with_credentials
from shared.envelope import new_event

from support import JVREG, TEST_BROKER_PASSWORD, TEST_BROKER_USER, Api, DevProcess, venture_body


def test_dev_runs_stops_on_ctrl_c_and_keeps_the_data(dev_env, tmp_path):
    mongo_port, gateway_port = free_port(), int(dev_env["JVREG_GATEWAY_PORT"])
    dev = DevProcess(dev_env, tmp_path, mongo_port)
    try:
        dev.wait_for("bootstrap ops key:")
        url = dev.value_after("is up at")
        ops_key = dev.value_after("bootstrap ops key:")
        assert url == f"http://127.0.0.1:{gateway_port}"
        ops = Api(url, ops_key)
        venture = ops.post("/v1/ventures", json=venture_body()).json()
    finally:
        exit_code = dev.interrupt()
    assert exit_code == 0, dev.output()[-3000:]
    assert not port_open("127.0.0.1", gateway_port), "the gateway outlived Ctrl-C"
    assert not port_open("127.0.0.1", mongo_port), "SecantusDB outlived Ctrl-C"
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout == "", "processes left behind"

    # Again, scaled: the second search instance is new, and builds its index from the
    # event logs; the first keeps its own.
    again = DevProcess(dev_env, tmp_path, mongo_port, "--scale", "2")
    try:
        again.wait_for("bootstrap ops key:")
        assert again.value_after("bootstrap ops key:") == ops_key  # kept in the data dir
        built = [line for line in again.lines if line.startswith("search instance")]
        assert len(built) == 1 and "built from 1 logged events (1 documents)" in built[0], built
        response = Api(url, ops_key).get(f"/v1/ventures/{venture['id']}")
        assert response.status_code == 200 and response.json()["name"] == venture["name"]
        # Both search instances answer the list, each from its own index.
        for _ in range(4):
            listed = Api(url, ops_key).get("/v1/ventures").json()["items"]
            assert [item["id"] for item in listed] == [venture["id"]]
    finally:
        assert again.interrupt() == 0


def test_dev_refuses_a_gateway_port_already_taken_and_starts_nothing(dev_env, tmp_path):
    """The gateways share their port (SO_REUSEPORT): a second `make dev` on the same
    port would share it with the first, unseen, were it not refused."""
    gateway_port, mongo_port = int(dev_env["JVREG_GATEWAY_PORT"]), free_port()
    with socket.create_server(("127.0.0.1", gateway_port)):
        dev = DevProcess(dev_env, tmp_path, mongo_port, "--scale", "2")
        assert dev.process.wait(60) == 2
    assert f"port {gateway_port} is taken" in dev.output()
    assert not (tmp_path / "mongo").exists() and not port_open("127.0.0.1", mongo_port)


def test_dev_without_rabbitmq_says_how_to_start_it_and_starts_nothing(dev_env, tmp_path):
    dev_env["JVREG_AMQP_URI"] = "amqp://guest:guest@127.0.0.1:1/"
    mongo_port = free_port()
    dev = DevProcess(dev_env, tmp_path, mongo_port)
    assert dev.process.wait(60) == 2
    assert "rabbitmq-server -detached" in dev.output()
    assert not (tmp_path / "mongo").exists() and not port_open("127.0.0.1", mongo_port)


def jvreg(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([JVREG, *args], env=env, capture_output=True, text=True, timeout=60)


def test_ops_commands_work_against_a_running_dev_stack(dev_env, tmp_path, amqp_uri):
    """`jvreg reconcile` and `jvreg dlq` as ops run them beside `make dev`: the same
    JVREG_* settings point them at the stack."""
    mongo_port = free_port()
    ops_env = {
        **dev_env,
        "JVREG_MONGO_URI": f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true",
    }
    dev = DevProcess(dev_env, tmp_path, mongo_port)
    try:
        dev.wait_for("bootstrap ops key:")
        ops = Api(dev.value_after("is up at"), dev.value_after("bootstrap ops key:"))
        created_venture = ops.post("/v1/ventures", json=venture_body())
        assert created_venture.status_code == 201
        created_id = created_venture.json()["id"]

        reports = []

        def reconciled() -> bool:
            run = jvreg(ops_env, "reconcile")
            reports.append(run.stdout + run.stderr)
            return run.returncode == 0

        wait_until(reconciled, 30, "jvreg reconcile without drift")
        assert "facilities' projection of ventures: 1 compared" in reports[-1], reports[-1]

        # The search instance's index, rebuilt from the event logs while it runs.
        search_env = {**ops_env, "JVREG_SEARCH_DATA_DIR": str(tmp_path / "search")}
        rebuilds = []

        def rebuilt() -> bool:
            run = jvreg(search_env, "search", "rebuild")
            rebuilds.append(run.stdout + run.stderr)
            return run.returncode == 0 and "from 1 events: 1 documents" in run.stdout

        wait_until(rebuilt, 30, "jvreg search rebuild from the logged event")
        generation = rebuilds[-1].rsplit("(", 1)[1].rstrip(")\n")

        def taken_up() -> bool:
            # The instance swaps to the new generation, then deletes the one it used.
            pointers = list((tmp_path / "search").glob("*/CURRENT"))
            return len(pointers) == 1 and [
                path.name for path in pointers[0].parent.glob("gen-*")
            ] == [pointers[0].read_text().strip()] == [Path(generation).name]

        wait_until(taken_up, 30, "the running instance answering from the rebuilt index")
        listed = ops.get("/v1/ventures").json()["items"]
        assert [venture["id"] for venture in listed] == [created_id]

        assert jvreg(ops_env, "dlq", "list").stdout.strip() == "no dead letters"
        # A producer's bug: an event of a CloudEvents version the registry does not speak.
        poison = new_event("ventures", "venture.updated", "jv_from_a_buggy_producer", 1, {})
        ventures_user = TEST_BROKER_USER.format(service="ventures")
        with Connection(with_credentials(amqp_uri, ventures_user, TEST_BROKER_PASSWORD)) as link:
            link.Producer().publish(
                {**poison.wire(), "specversion": "0.3"},
                exchange=messaging.events_exchange("ventures"),
                routing_key="venture.updated",
                message_id=poison.id,
                user_id=ventures_user,
            )

        def dead_letters() -> list[dict]:
            lines = jvreg(ops_env, "dlq", "list", "--json").stdout.splitlines()
            return [json.loads(line) for line in lines]

        # Every consumer of ventures.events refuses it: facilities, investments, search,
        # the log.
        wait_until(lambda: len(dead_letters()) == 4, 30, "four dead letters")
        letters = dead_letters()
        assert {letter["event_id"] for letter in letters} == {poison.id}
        assert all("specversion" in letter["error"] for letter in letters), letters
        assert f"{poison.id}" in jvreg(ops_env, "dlq", "list").stdout

        assert jvreg(ops_env, "dlq", "requeue").returncode == 2  # --id or --all
        requeued = jvreg(ops_env, "dlq", "requeue", "--id", poison.id)
        assert requeued.stdout.strip() == "requeued 4 dead letter(s)", requeued
        # Still not a valid CloudEvent: each consumer dead-letters it again.
        wait_until(lambda: len(dead_letters()) == 4, 30, "the four dead letters back")
        assert jvreg(ops_env, "dlq", "requeue", "--id", "no-such-event").returncode == 1

        # It never will be valid: ops throw it away, with a record of what it was.
        discarded = jvreg(ops_env, "dlq", "discard", "--id", poison.id).stdout.splitlines()
        assert discarded[-1] == "discarded 4 dead letter(s)", discarded
        records = [json.loads(line) for line in discarded[:-1]]
        assert {json.loads(record["body"])["subject"] for record in records} == {poison.subject}
        assert jvreg(ops_env, "dlq", "list").stdout.strip() == "no dead letters"
    finally:
        assert dev.interrupt() == 0
