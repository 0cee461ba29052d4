"""`jvreg seed` and `jvreg status` as ops run them (subprocesses), and the age of an
event its consumers hold, on a registry of their own: the seed sets FX rates, which
would change the reports of other tests' flows on a shared one, and the held event is
of a venture the ventures service never registered (drift for `jvreg reconcile`)."""

import json
import os
import re
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from ops.processes import wait_until
from ops.seed import STAGES, first_licence, venture_of
from services.ventures.contract import VentureRegistered, VentureUpdated
from shared.outbox import event_publisher

from support import JVREG, Api, contract_event, running_registry, sample_value, scrape

SEEDED = 3
BACKENDS = ("ventures", "facilities", "licensing", "investments", "notifications", "search")


@pytest.fixture(scope="module")
def seeded_registry(backends, rabbit_management, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("seed-registry-logs")
    with running_registry(backends, rabbit_management, log_dir) as registry:
        yield registry


def jvreg(*args: str) -> subprocess.CompletedProcess:
    # A wide terminal, so that no table cell is cut short.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([JVREG, *args], capture_output=True, text=True, timeout=300, env=env)


def seed(registry, keys_file) -> subprocess.CompletedProcess:
    return jvreg(
        "seed",
        "--ventures",
        str(SEEDED),
        "--url",
        registry["url"],
        "--ops-key",
        registry["ops_key"],
        "--keys-file",
        str(keys_file),
    )


def every_item(api: Api, path: str, **params) -> list[dict]:
    response = api.get(path, params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return response.json()["items"]


def test_seed_fills_the_registry_through_the_api_and_a_rerun_duplicates_nothing(
    seeded_registry, tmp_path
):
    keys_file = tmp_path / "seed-keys.json"
    first = seed(seeded_registry, keys_file)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"seeded {SEEDED} venture(s)" in first.stdout
    investor = Api(seeded_registry["url"], json.loads(keys_file.read_text())["investor"])

    names = {venture_of(number).name for number in range(SEEDED)}
    wait_until(
        lambda: {v["name"] for v in every_item(investor, "/v1/ventures")} == names,
        30,
        "the seeded ventures in the list",
    )
    ventures = every_item(investor, "/v1/ventures")
    stages = list(STAGES)
    expected = Counter(stages[n % len(stages)] for n in range(first_licence(SEEDED)))

    def licence_statuses() -> Counter:
        return Counter(licence["status"] for licence in every_item(investor, "/v1/licenses"))

    wait_until(lambda: licence_statuses() == expected, 30, "the licences at their stages")
    assert {"submitted", "under_review", "inspection_scheduled", "granted", "suspended"} <= set(
        expected
    )
    assert "rejected" in expected
    flows = {v["id"]: every_item(investor, f"/v1/ventures/{v['id']}/investments") for v in ventures}
    assert {flow["currency"] for items in flows.values() for flow in items} == {"PKR", "CNY", "USD"}
    for venture in ventures:
        summary = investor.get(f"/v1/ventures/{venture['id']}/investments/summary?currency=USD")
        assert summary.status_code == 200, summary.text
        assert summary.json()["problems"] == []  # every rate the flows need was set
        assert summary.json()["total"]["committed"] != "0.00"
    assert len(every_item(investor, "/v1/facilities")) == SEEDED

    again = seed(seeded_registry, keys_file)
    assert again.returncode == 0, again.stdout + again.stderr
    for venture in ventures:
        path = f"/v1/ventures/{venture['id']}/investments"
        assert len(every_item(investor, path)) == len(flows[venture["id"]])
    assert {v["name"] for v in every_item(investor, "/v1/ventures")} == names
    assert licence_statuses() == expected
    assert len(every_item(investor, "/v1/facilities")) == SEEDED


def test_status_summarises_the_running_registry(seeded_registry):
    result = jvreg("status", "--url", seeded_registry["url"], "--key", seeded_registry["ops_key"])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for service in BACKENDS:
        assert re.search(rf"│ {service}\s+│ up\s+│\s+1 │", out), (service, out)
    for queue in ("facilities.follow_venture", "investments.project_venture", "ventures.event-log"):
        assert queue in out
    assert "search index lag" in out and "search." in out
    assert "dead letters: 0" in out
    assert "webhook deliveries failing: 0" in out


def test_status_needs_an_ops_key(seeded_registry):
    ops = Api(seeded_registry["url"], seeded_registry["ops_key"])
    answer = ops.post("/v1/api-keys", json={"role": "investor", "owner": "Status Probe"})
    investor_key = answer.json()["key"]
    result = jvreg("status", "--url", seeded_registry["url"], "--key", investor_key)
    assert result.returncode == 1
    assert "403" in result.stderr


def test_the_age_of_an_event_its_consumers_hold_back_shows_in_metrics_and_status(
    seeded_registry,
):
    """An event that came before its predecessor is held back by its consumers (retried,
    sent to the tail) until the predecessor arrives: the oldest event they hold is it,
    as old as its `time`."""
    ops_key = seeded_registry["ops_key"]
    ops = Api(seeded_registry["url"], ops_key)
    publish = event_publisher(seeded_registry["amqp_uris"]["ventures"], "ventures")
    venture = {"id": "jv_0000000000000000000a9e01", "name": "Held Back Pharma"}
    committed = datetime.now(UTC) - timedelta(minutes=10)
    first, second = (
        contract_event(payload, venture={**venture, "version": version}).model_copy(
            update={"time": committed}
        )
        for payload, version in ((VentureRegistered, 1), (VentureUpdated, 2))
    )
    queue = {"queue": "facilities.follow_venture", "service": "facilities"}
    oldest = "jvreg_queue_oldest_message_age_seconds"
    publish(second)
    wait_until(
        lambda: sample_value(scrape(ops), oldest, **queue) >= 600, 60, "the early event held"
    )

    row = re.compile(r"│ facilities\.follow_venture +│ facilities +│ +\d+ │ +1 │ +([\d,.]+) s │")

    def status_shows_it_held() -> bool:
        out = jvreg("status", "--url", seeded_registry["url"], "--key", ops_key).stdout
        held = row.search(out)
        return held is not None and float(held.group(1).replace(",", "")) >= 600

    wait_until(status_shows_it_held, 60, "jvreg status showing the early event's age")

    publish(first)

    def applied() -> bool:
        found = every_item(ops, "/v1/ventures", q="Held Back Pharma")
        samples = scrape(ops)
        return (
            [item["version"] for item in found] == [2]
            and sample_value(samples, oldest, **queue) == 0
            and sample_value(samples, "jvreg_queue_messages", **queue) == 0
        )

    wait_until(applied, 60, "both events applied")
    assert sample_value(scrape(ops), "jvreg_dead_letters") == 0
