"""RabbitMQ nodes of a test's own, started from the machine's RabbitMQ install: their
own node name, ports, data directory, config and plugins file. A test that stops a
broker or needs several stops and starts these, never the machine's default node,
which every other test (and a developer's `make dev`) is using.

Three of them joined make a cluster (RabbitCluster); `make cluster` starts one for a
developer (`python tests/rabbit_nodes.py up`) and `make cluster-down` stops it."""

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

import click
import requests

from ops.processes import ROOT, free_port, wait_until
from shared.broker_users import RabbitAdmin

# The Debian package's scripts run the server and rabbitmqctl as this user (through
# su when called as root), with its home's Erlang cookie: the node's files are its.
RABBITMQ_USER = "rabbitmq"


class RabbitNode:
    """One RabbitMQ node on free 127.0.0.1 ports, with the management plugin."""

    def __init__(self, name: str | None = None):
        self.name = name or f"jvtest{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_port = free_port()
        self.management_port = free_port()
        self.dist_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jvreg-rabbit-"))
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.management_port}\n"
            # Queue figures (a quorum queue's leader, its consumers) every second, not
            # every 5 s: a test waiting on them sees a failover as soon as it happened.
            "collect_statistics_interval = 1000\n"
        )
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        if os.geteuid() == 0:
            user = pwd.getpwnam(RABBITMQ_USER)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            for path in self.dir.iterdir():
                os.chown(path, user.pw_uid, user.pw_gid)

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        }

    @property
    def state(self) -> dict:
        """What `restore` needs to act on this node from another process."""
        return {
            "name": self.name,
            "amqp_port": self.amqp_port,
            "management_port": self.management_port,
            "dist_port": self.dist_port,
            "dir": str(self.dir),
        }

    @classmethod
    def restore(cls, state: dict) -> "RabbitNode":
        node = cls.__new__(cls)
        node.name, node.dir = state["name"], Path(state["dir"])
        node.amqp_port = state["amqp_port"]
        node.management_port = state["management_port"]
        node.dist_port = state["dist_port"]
        return node

    def ctl(self, *args: str, timeout: float = 120) -> str:
        return subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout

    def start(self, timeout: float = 180) -> None:
        """Start the node (again, after `kill`, on the same data) and wait until its
        broker and management API answer."""
        subprocess.run(
            ["rabbitmq-server", "-detached"], env=self.env, check=True, capture_output=True
        )
        wait_until(self._management_up, timeout, f"RabbitMQ node {self.name}", pause=0.5)

    def _management_up(self) -> bool:
        return requests.get(f"{self.management_url}/api/overview", timeout=2).ok

    def stop_app(self) -> None:
        """Stop the broker application (every connection drops); the node stays up."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app", timeout=300)
        self.ctl("await_startup", timeout=300)

    @property
    def running(self) -> bool:
        """Whether the node's Erlang VM runs (not whether its broker answers)."""
        try:
            return _alive(int((self.dir / "pid").read_text()))
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM, as a machine's crash would; its data stays."""
        pid = int((self.dir / "pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _alive(pid), 30, f"RabbitMQ node {self.name} to die", pause=0.1)

    def stop(self) -> None:
        """Stop the node and remove its files."""
        try:
            self.ctl("stop")
        except subprocess.SubprocessError:
            # It did not answer (a failed start): nothing of it may outlive the test.
            with suppress(OSError, ValueError):
                os.kill(int((self.dir / "pid").read_text()), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class RabbitCluster:
    """`size` RabbitNodes joined into one cluster: every node but the first resets and
    joins the first. The nodes share the Erlang cookie of the user the Debian package
    runs them as (RABBITMQ_USER's home), which is what lets them, and rabbitmqctl, talk.
    Quorum queues declared on it get a replica on each node; `mirror_classic_queues`
    gives the classic ones (nameko's RPC queues, the dead-letter queue) a mirror on each."""

    def __init__(self, size: int = 3, nodes: list[RabbitNode] | None = None):
        self.nodes = nodes or [RabbitNode() for _ in range(size)]

    @property
    def amqp_uri(self) -> str:
        """Every node's address, for JVREG_AMQP_URI: connections fail over in this order."""
        return ";".join(node.amqp_uri for node in self.nodes)

    @property
    def management_url(self) -> str:
        """The first node's management API (it serves the whole cluster's state)."""
        return self.nodes[0].management_url

    def node(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.name == name)

    def create_vhost(self, vhost: str, timeout: float = 60) -> None:
        """A vhost where `guest` may do anything, running on every node (a node starts
        its part of a new vhost a moment after the API answered: a quorum queue
        declared before that would get no replica there), its classic queues mirrored."""
        admin = RabbitAdmin(self.management_url)
        path = quote(vhost, safe="")
        admin.call("PUT", f"vhosts/{path}")
        admin.call(
            "PUT",
            f"permissions/{path}/{quote(admin.auth[0], safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        everyone = {node.name: "running" for node in self.nodes}
        wait_until(
            lambda: admin.call("GET", f"vhosts/{path}").get("cluster_state") == everyone,
            timeout,
            f"vhost {vhost} running on every node",
        )
        self.mirror_classic_queues(vhost)

    def mirror_classic_queues(self, vhost: str = "/") -> None:
        """A policy mirroring every classic queue of `vhost` on every node: nameko
        declares its RPC queues classic and durable, and a classic queue lives on one
        node, unusable while that node is down. (RabbitMQ 3.x; 4.0 removed mirroring,
        and RPC queues must then be declared quorum.) Exclusive queues, such as RPC
        reply queues, are never mirrored: a client redeclares its own after failing over."""
        RabbitAdmin(self.management_url).call(
            "PUT",
            f"policies/{quote(vhost, safe='')}/jvreg-mirror-classic-queues",
            json={
                "pattern": ".*",
                "apply-to": "queues",
                "definition": {"ha-mode": "all", "ha-sync-mode": "automatic"},
            },
        )

    def start(self, timeout: float = 300) -> None:
        # Each node's first boot takes many seconds on a small machine: boot them at once.
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.start(timeout), self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("reset")
            node.ctl("join_cluster", first.name)
            node.start_app()
        self.wait_running(timeout)

    def running_nodes(self, asking: RabbitNode | None = None) -> set[str]:
        """The nodes the cluster sees running, as `asking` (the first node) sees it."""
        status = json.loads((asking or self.nodes[0]).ctl("cluster_status", "--formatter", "json"))
        return set(status["running_nodes"])

    def wait_running(self, timeout: float = 300) -> None:
        """Until every node runs and the cluster, asked through each node, lists all."""
        everyone = {node.name for node in self.nodes}
        for node in self.nodes:
            wait_until(
                lambda n=node: self.running_nodes(n) == everyone,
                timeout,
                f"the cluster, as {node.name} sees it, to list {sorted(everyone)}",
                pause=0.5,
            )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# --- `make cluster`, `make cluster-down` ---------------------------------------------

CLUSTER_STATE = ROOT / "var" / "rabbit-cluster.json"


@click.group()
def cli() -> None:
    """A local three-node RabbitMQ cluster for development."""


@cli.command()
def up() -> None:
    """Start the cluster and print its addresses."""
    if CLUSTER_STATE.exists():
        raise click.ClickException(f"a cluster runs already ({CLUSTER_STATE}): make cluster-down")
    cluster = RabbitCluster()
    try:
        cluster.start()
        cluster.mirror_classic_queues()
    except BaseException:
        cluster.stop()
        raise
    CLUSTER_STATE.parent.mkdir(exist_ok=True)
    CLUSTER_STATE.write_text(json.dumps([node.state for node in cluster.nodes], indent=2))
    for node in cluster.nodes:
        click.echo(f"{node.name}: {node.amqp_uri}  management {node.management_url}")
    click.echo(
        "\nRun the registry on it (make dev) with:\n"
        f"  export JVREG_AMQP_URI='{cluster.amqp_uri}'\n"
        f"  export JVREG_BROKER_ADMIN_URL='{cluster.nodes[0].management_url}'"
    )


@cli.command()
def down() -> None:
    """Stop the cluster `up` started and remove its data."""
    if not CLUSTER_STATE.exists():
        click.echo("no cluster runs")
        return
    RabbitCluster(
        nodes=[RabbitNode.restore(s) for s in json.loads(CLUSTER_STATE.read_text())]
    ).stop()
    CLUSTER_STATE.unlink()
    click.echo("cluster stopped")


if __name__ == "__main__":
    cli()
