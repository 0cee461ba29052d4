"""Starting and stopping the registry's processes: the local MongoDB wire server
(SecantusDB) and one `nameko run` per instance of each service. Used by `jvreg dev`
and by the end-to-end tests, so the tests run the registry exactly as a developer does."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import requests
from kombu import Connection

from services.search.settings import default_instance
from shared.messaging import SERVICES
from shared.mongo import connect

ROOT = Path(__file__).resolve().parents[1]
NAMEKO_CONFIG = ROOT / "deploy" / "config.yaml"


def wait_until(check: Callable[[], bool], timeout: float, what: str, pause: float = 0.2) -> None:
    """Poll `check` until it returns true; a bounded wait, never a bare sleep."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as error:  # not ready yet
            last_error = error
        time.sleep(pause)
    raise TimeoutError(
        f"{what} not ready after {timeout:g} s"
        + (f" (last error: {last_error!r})" if last_error else "")
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def broker_reachable(amqp_uri: str, timeout: float = 3) -> str | None:
    """None when RabbitMQ answers at `amqp_uri`, else why not."""
    try:
        with Connection(amqp_uri, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
        return None
    except Exception as error:
        return repr(error)


def management_api_up(url: str) -> bool:
    """True when RabbitMQ's management API answers at `url` (http://user:pass@host:port)."""
    try:
        return requests.get(f"{url.rstrip('/')}/api/overview", timeout=2).ok
    except requests.RequestException:
        return False


def ensure_management_api(url: str, timeout: float = 60) -> str | None:
    """None once the management API answers at `url`; if it does not, enable the plugin
    on this machine's RabbitMQ (as the tests and `make dev` need it) and wait for it.
    Else why not, with what to do."""
    if management_api_up(url):
        return None
    if shutil.which("rabbitmq-plugins"):
        subprocess.run(
            ["rabbitmq-plugins", "enable", "--quiet", "rabbitmq_management"],
            check=False,
            capture_output=True,
        )
    try:
        wait_until(lambda: management_api_up(url), timeout, "RabbitMQ management API")
    except TimeoutError as error:
        return f"{error}: enable it with `rabbitmq-plugins enable rabbitmq_management`"
    return None


def _bin(name: str) -> str:
    """An executable of this virtual environment (nameko, secantusd-py)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path | None):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0  # monotonic

    def start(self) -> subprocess.Popen:
        output: IO | int
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.log_path, "ab")  # noqa: SIM115 - kept for the process' life
        else:
            output = subprocess.PIPE
        process = self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
        )
        self.started_at = time.monotonic()
        if process.stdout is not None:  # no log file: echo its output, prefixed
            threading.Thread(target=self._echo, args=(process.stdout,), daemon=True).start()
        return process

    def _echo(self, stream: IO[bytes]) -> None:
        for line in stream:
            sys.stdout.write(f"[{self.name}] {line.decode(errors='replace')}")
            sys.stdout.flush()

    def _alive(self) -> subprocess.Popen | None:
        """The process, while it runs."""
        if self.process is not None and self.process.poll() is None:
            return self.process
        return None

    @property
    def running(self) -> bool:
        return self._alive() is not None

    def signal(self, signum: int) -> None:
        if process := self._alive():
            process.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        """Whether the process has ended (or never started) within `timeout` seconds."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout: float = 10) -> None:
        if not self.running:
            return
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.signal(signal.SIGKILL)
            self.wait(5)


class MongoServer(ManagedProcess):
    """A SecantusDB server. `--sync-on-commit`: an acknowledged write survives a crash
    (without it a kill -9 lost acknowledged transactions; docs/architecture.md §3)."""

    def __init__(self, data_dir: Path, port: int, log: Path | None = None):
        self.port = port
        self.uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        argv = [
            _bin("secantusd-py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(data_dir),
            "--sync-on-commit",
            "--log-level",
            "WARNING",
        ]
        super().__init__("mongo", argv, dict(os.environ), log)
        data_dir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 30) -> subprocess.Popen:
        process = super().start()

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"SecantusDB exited with {process.returncode}")
            client = connect(self.uri, serverSelectionTimeoutMS=500)
            try:
                return client.admin.command("ping")["ok"] == 1
            finally:
                client.close()

        wait_until(answers, timeout, f"SecantusDB on port {self.port}")
        return process


def instance_names(service: str, scale: int) -> list[str]:
    """The names of a service's `scale` instances: the service's own name alone, else
    `licensing.1`, `licensing.2`, … (their log files and their lines' prefix)."""
    return [service] if scale == 1 else [f"{service}.{n}" for n in range(1, scale + 1)]


def search_instance(base: str, number: int) -> str:
    """JVREG_SEARCH_INSTANCE of the search service's instance `number`: the first keeps
    the name one instance has (its index and queues stay when the stack scales), each
    other is named after it; every instance keeps an index of its own."""
    return base if number == 1 else f"{base}-{number}"


class Stack:
    """Every registry service as its own `nameko run` process, `scale` of each behind
    the same queues (the gateways on one port, SO_REUSEPORT); `amqp_uris` gives a
    service its own broker login (JVREG_AMQP_URI)."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path | None = None,
        services: tuple[str, ...] = SERVICES,
        amqp_uris: dict[str, str] | None = None,
        scale: int = 1,
    ):
        self.env = {
            **os.environ,
            **env,
            "PYTHONUNBUFFERED": "1",
            # nameko's CLI imports pkg_resources and eventlet, which warn of their ends
            # on every start, in lines of text amid the JSON logs (JVREG_LOG_FORMAT).
            "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::UserWarning:nameko.cli.main,"
            "ignore::Warning:nameko.cli.commands",
        }
        self.scale = scale
        self.services: dict[str, str] = {}  # instance name -> its service
        self.processes: dict[str, ManagedProcess] = {}
        search_base = self.env.get("JVREG_SEARCH_INSTANCE") or default_instance()
        for service in services:
            argv = [_bin("nameko"), "run", "--config", str(NAMEKO_CONFIG)]
            service_env = {
                **self.env,
                **({"JVREG_AMQP_URI": amqp_uris[service]} if amqp_uris else {}),
            }
            for number, name in enumerate(instance_names(service, scale), 1):
                instance_env = dict(service_env)
                if service == "search":
                    instance_env["JVREG_SEARCH_INSTANCE"] = search_instance(search_base, number)
                self.services[name] = service
                self.processes[name] = ManagedProcess(
                    name,
                    [*argv, f"services.{service}.service"],
                    instance_env,
                    log_dir / f"{name}.log" if log_dir else None,
                )

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.env.get('JVREG_GATEWAY_PORT', '8000')}"

    def start(self) -> None:
        for process in self.processes.values():
            process.start()

    def exited(self) -> list[str]:
        return [name for name, process in self.processes.items() if not process.running]

    def restart(self, name: str) -> int:
        """Start the instance `name` again (it exited); its new pid."""
        return self.processes[name].start().pid

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            if dead := self.exited():
                raise RuntimeError(f"exited: {', '.join(dead)}")
            response = requests.get(f"{self.gateway_url}/health", timeout=5)
            return response.status_code == 200 and response.json()["status"] == "ok"

        wait_until(healthy, timeout, "the registry's /health")

    def stop(self, timeout: float = 15) -> None:
        # Ask all at once, then wait: a graceful nameko stop finishes in-flight workers.
        for process in self.processes.values():
            process.signal(signal.SIGTERM)
        for process in self.processes.values():
            process.stop(timeout)
