"""RabbitMQ nodes of a test's own, started from the machine's RabbitMQ install: their
own node name, ports, data directory, config and plugins file. A test that stops a
broker or needs several stops and starts these, never the machine's default node,
which every other test (and a developer's `make dev`) is using."""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from contextlib import suppress
from pathlib import Path

import requests

from ops.processes import free_port, wait_until

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

    def ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self, timeout: float = 90) -> None:
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

    def stop(self) -> None:
        """Stop the node and remove its files."""
        try:
            self.ctl("stop")
        except subprocess.SubprocessError:
            # It did not answer (a failed start): nothing of it may outlive the test.
            with suppress(OSError, ValueError):
                os.kill(int((self.dir / "pid").read_text()), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
