"""A pre-forking launcher for the chaos suite: it imports eventlet, nameko and the
service modules once, then forks a fresh child per (re)start that runs the service
exactly as `nameko run --config deploy/config.yaml <module>` does (the same config
file with environment substitution, the same `nameko.cli.run.run`). Each child is a
real, separate process that the suite kills with SIGKILL; forking only saves the
~1.3 s of CPU that importing everything again costs on every restart.

Protocol (one JSON document per line): the suite writes
`{"id", "module", "env", "log", "fault_grace"}` to stdin and reads `{"id", "pid"}`
back; whenever a child ends the launcher writes
`{"exited": pid, "signal": n | null, "code": n | null}`. On end of input it kills the
children it still has and exits.

A child's fault hook (JVREG_FAULTS) is armed `fault_grace` seconds after it starts:
a crash loop faster than that would make every message in flight reach the delivery
limit (each crash counts as a delivery of what the process had not acked), whatever
the registry did."""

import eventlet

# As `nameko run` does: patch before anything imports socket or threading.
eventlet.monkey_patch()

import importlib  # noqa: E402
import json  # noqa: E402
import logging.config  # noqa: E402
import os  # noqa: E402
import posix  # noqa: E402 - unpatched read/waitpid: the launcher never runs a hub
import signal  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import eventlet.hubs  # noqa: E402
import yaml  # noqa: E402
from eventlet import patcher  # noqa: E402
from nameko.cli.main import setup_yaml_parser  # noqa: E402
from nameko.cli.run import import_service, run  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import shared.faults  # noqa: E402
from ops.processes import NAMEKO_CONFIG  # noqa: E402

select = patcher.original("select")


def send(document: dict) -> None:
    # One write per line: the pipe keeps lines shorter than PIPE_BUF whole.
    posix.write(1, (json.dumps(document) + "\n").encode())


def arm_faults(spec: str) -> None:
    os.environ["JVREG_FAULTS"] = spec
    importlib.reload(shared.faults)  # read as at import


def run_service(module: str, env: dict[str, str], log: str, fault_grace: float) -> None:
    """In the child: become `nameko run --config deploy/config.yaml <module>`."""
    os.setsid()
    output = posix.open(log, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND, 0o644)
    posix.dup2(output, 1)
    posix.dup2(output, 2)
    posix.dup2(posix.open(os.devnull, posix.O_RDONLY), 0)
    os.environ.clear()
    os.environ.update(env)
    faults = os.environ.pop("JVREG_FAULTS", "")
    importlib.reload(shared.faults)  # no faults yet
    eventlet.hubs.use_hub()  # a hub of the child's own, never the launcher's
    if faults:
        eventlet.spawn_after(fault_grace, arm_faults, faults)
    with open(NAMEKO_CONFIG) as file:
        config = yaml.safe_load(file)
    logging.config.dictConfig(config["LOGGING"])
    run(import_service(module), config)


def fork(request: dict) -> int:
    pid = posix.fork()
    if pid:
        return pid
    code = 0
    try:
        run_service(request["module"], request["env"], request["log"], request["fault_grace"])
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def reap(children: set[int]) -> None:
    while children:
        try:
            pid, status = posix.waitpid(-1, posix.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        send({"exited": pid, "signal": killed_by, "code": code})


def main(modules: list[str]) -> None:
    setup_yaml_parser()
    for module in modules:
        import_service(module)  # imported once, here; every child inherits it
    children: set[int] = set()
    buffer = b""
    send({"ready": True})
    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        reap(children)
        if not readable:
            continue
        chunk = posix.read(0, 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            pid = fork(request)
            children.add(pid)
            send({"id": request["id"], "pid": pid})
    for pid in children:
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1:])
