"""The harness's own guarantees under concurrency: the scenarios' green threads (the
supervisor reviving dead processes, a scenario restarting them to arm or disarm
faults) share the launcher's pipe and each process; neither may be used by two of
them at once."""

import os
import random
import signal

import eventlet
import pytest
from harness import Launcher, ServiceProcess, Supervisor

from ops.processes import wait_until

IDLE = "tests.chaos.idle_service"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def launcher(tmp_path):
    started = Launcher(tmp_path / "launcher.log", modules=[IDLE])
    yield started
    started.close()


def test_concurrent_starts_each_get_their_own_child(launcher, tmp_path):
    """Many green threads start processes at once, each request larger than the pipe's
    buffer, so that writers wait on a full pipe while others want to write."""
    env = {"PATH": os.environ["PATH"], "PADDING": "x" * 70_000}
    pool = eventlet.GreenPool(40)
    pids = list(pool.imap(lambda n: launcher.start(IDLE, env, tmp_path / "idle.log", 0), range(40)))
    assert len(set(pids)) == 40
    wait_until(lambda: launcher.running_children == set(pids), 10, "the children reported")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not launcher.running_children, 30, "every child reaped")
    assert all(launcher.exits[pid]["signal"] == signal.SIGKILL for pid in pids)


def test_the_supervisor_and_restarts_never_run_two_children_for_one_process(launcher, tmp_path):
    """Kill every process and, at the same moment, restart each of them from other
    green threads, while the supervisor revives what died: each process ends with
    exactly one child, and no child runs that no process knows of."""
    env = {"PATH": os.environ["PATH"]}
    processes = [
        ServiceProcess(launcher, "idle", n, env, tmp_path, 0, module=IDLE) for n in range(3)
    ]
    for process in processes:
        process.start()
    supervisor = Supervisor(processes)
    try:
        for _ in range(20):
            killed = {process.pid for process in processes}
            for process in processes:
                process.kill()
            wait_until(lambda k=killed: k <= launcher.exits.keys(), 10, "deaths", pause=0.005)
            # The supervisor revives within 0.05 s: restart before, while and after it does.
            restarts = [
                eventlet.spawn_after(random.uniform(0, 0.06), process.restart)
                for process in processes
            ]
            for restart in restarts:
                restart.wait()
    finally:
        supervisor.stop()
    wait_until(
        lambda: launcher.running_children == {p.pid for p in processes},
        15,
        "one child per process",
    )
    assert all(process.running for process in processes)
    assert supervisor.crashes == []
    assert sum(supervisor.kills.values()) >= 1
    for process in processes:
        process.stop()
    assert not launcher.running_children
