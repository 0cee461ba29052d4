"""Fixtures of the chaos suite: the launcher that forks the registry's processes, a
registry per scenario, and the report of the run (docs/reliability.md, written only by
a full run, `make chaos`, in which every scenario passed)."""

import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from importlib.metadata import version

import pytest
from harness import MIN_LIFE_SECONDS, Launcher, chaos_registry
from report import DOC, write_report

from rabbit_nodes import RabbitCluster, RabbitNode
from support import RabbitManagement

# `full` (make chaos): at least 1,000 faults in all; otherwise a reduced run that
# `make test` includes, with every scenario and few iterations.
FULL = os.environ.get("JVREG_CHAOS") == "full"


@pytest.fixture(scope="session")
def launcher(tmp_path_factory):
    log = tmp_path_factory.mktemp("chaos") / "launcher.log"
    started = Launcher(log)
    yield started
    started.close()


@pytest.fixture
def registry(backends, rabbit_management, launcher, tmp_path):
    """Start a registry of the scenario's own: `with registry(licensing=2) as r: ...`;
    `min_life`: seconds a process runs at least before a fault may kill it; `broker`:
    a RabbitNode or RabbitCluster of the scenario's own instead of the machine's RabbitMQ
    (every service given the cluster's three addresses)."""

    def start(
        min_life: float = MIN_LIFE_SECONDS,
        broker: RabbitNode | RabbitCluster | None = None,
        **instances,
    ):
        where, management = backends, rabbit_management
        if isinstance(broker, RabbitCluster):
            where = {**backends, "amqp_uri": broker.amqp_uri}
            management = ClusterManagement(broker)
        elif broker:
            where = {**backends, "amqp_uri": broker.amqp_uri}
            management = RabbitManagement(broker.management_url)
        return chaos_registry(
            where, management, launcher, tmp_path, instances=instances, min_life=min_life
        )

    return start


class ClusterManagement(RabbitManagement):
    """The management API of a cluster's first node; a scenario's vhost is made ready
    on every node, its classic queues mirrored (RabbitCluster.create_vhost)."""

    def __init__(self, cluster: RabbitCluster):
        super().__init__(cluster.management_url)
        self.cluster = cluster

    def create_vhost(self, vhost: str) -> None:
        self.cluster.create_vhost(vhost)


@pytest.fixture
def own_broker():
    """A RabbitMQ node of the scenario's own, for a scenario that stops its broker."""
    node = RabbitNode()
    node.start()
    yield node
    node.stop()


class Report:
    def __init__(self):
        self.outcomes = []
        self.started = time.monotonic()

    def add(self, outcome) -> None:
        self.outcomes.append(outcome)


# Every scenario of test_chaos.py adds its outcome once all its checks passed.
SCENARIOS = 8
# What a full run must inject in all (issue 5).
FULL_RUN_FAULTS = 1000


@pytest.fixture(scope="session")
def report():
    """The outcomes of the run; a full run in which every scenario passed and the faults
    add up writes docs/reliability.md."""
    run = Report()
    yield run
    complete = len(run.outcomes) == SCENARIOS
    if FULL and complete and sum(o.faults for o in run.outcomes) >= FULL_RUN_FAULTS:
        facts = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
            "python": platform.python_version(),
            "rabbitmq": rabbitmq_version(),
            "secantusdb": version("SecantusDB"),
            "wall_seconds": time.monotonic() - run.started,
        }
        write_report(run.outcomes, facts)
        print(f"\nwrote {DOC}")


def rabbitmq_version() -> str:
    try:
        result = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=60
        )
        return result.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
