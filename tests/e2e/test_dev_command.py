"""`make dev` as a developer runs it: `jvreg dev` brings the registry up, prints the
URL and the ops key, stops everything on Ctrl-C, and keeps the data for next time."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shared.cli.processes import free_port, port_open, wait_until

from support import Api, venture_body

JVREG = str(Path(sys.executable).parent / "jvreg")


class DevProcess:
    def __init__(self, env: dict, data_dir: Path, mongo_port: int):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [JVREG, "dev", "--data-dir", str(data_dir), "--mongo-port", str(mongo_port)],
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


@pytest.fixture
def dev_env(amqp_uri):
    env = {k: v for k, v in os.environ.items() if k not in ("JVREG_MONGO_URI", "JVREG_OPS_KEY")}
    env.update(JVREG_AMQP_URI=amqp_uri, JVREG_GATEWAY_PORT=str(free_port()))
    return env


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

    again = DevProcess(dev_env, tmp_path, mongo_port)
    try:
        again.wait_for("bootstrap ops key:")
        assert again.value_after("bootstrap ops key:") == ops_key  # kept in the data dir
        response = Api(url, ops_key).get(f"/v1/ventures/{venture['id']}")
        assert response.status_code == 200 and response.json()["name"] == venture["name"]
    finally:
        assert again.interrupt() == 0


def test_dev_without_rabbitmq_says_how_to_start_it_and_starts_nothing(dev_env, tmp_path):
    dev_env["JVREG_AMQP_URI"] = "amqp://guest:guest@127.0.0.1:1/"
    mongo_port = free_port()
    dev = DevProcess(dev_env, tmp_path, mongo_port)
    assert dev.process.wait(60) == 2
    assert "rabbitmq-server -detached" in dev.output()
    assert not (tmp_path / "mongo").exists() and not port_open("127.0.0.1", mongo_port)
