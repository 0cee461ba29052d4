"""`jvreg watch` as a regulator runs it: a process of its own, its JSON lines read
back from the file its stdout goes to (a file, not a pipe: nothing blocks)."""

import json
import signal
import subprocess
import sys
from pathlib import Path

from ops.processes import wait_until

JVREG = str(Path(sys.executable).parent / "jvreg")


class WatchProcess:
    def __init__(self, directory: Path, amqp_uri: str, queue: str, *options: str):
        self.argv = [JVREG, "watch", "--queue", queue, "--amqp-uri", amqp_uri, *options]
        self.directory = directory
        self.runs = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> "WatchProcess":
        self.runs += 1
        self.stdout = self.directory / f"watch-{self.runs}.jsonl"
        self.stderr = self.directory / f"watch-{self.runs}.err"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=err)
        wait_until(lambda: "watching queue" in self.errors(), 30, "jvreg watch consuming")
        return self

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.read_text().splitlines()]

    def errors(self) -> str:
        if self.process.poll() is not None and "watching queue" not in self.stderr.read_text():
            raise RuntimeError(f"jvreg watch exited: {self.stderr.read_text()}")
        return self.stderr.read_text()

    def wait_for(self, count: int, timeout: float = 30) -> list[dict]:
        wait_until(lambda: len(self.events()) >= count, timeout, f"{count} lines from jvreg watch")
        return self.events()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(20)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
