"""Fault injection for the reliability tests (tests/chaos). Off unless the test-only
variable JVREG_FAULTS names points and probabilities, e.g.
`JVREG_FAULTS=after_commit:0.05,after_confirm:0.05`: at such a point the process kills
itself with SIGKILL — no cleanup, no flush — exactly like a crash or an OOM kill."""

import os
import random
import signal

POINTS = (
    "after_commit",  # a state change (and its outbox record) is committed, not yet published
    "after_confirm",  # the broker confirmed an event, the outbox record is not yet marked sent
    "after_apply",  # a consumer committed its effect (and sequence), not yet acked
)


def _configured() -> dict[str, float]:
    spec = os.environ.get("JVREG_FAULTS", "").strip()
    if not spec:
        return {}
    faults = {}
    for item in spec.split(","):
        point, _, probability = item.partition(":")
        if point not in POINTS:
            raise ValueError(f"JVREG_FAULTS: unknown point {point!r}; known: {POINTS}")
        faults[point] = float(probability or 1)
    return faults


FAULTS = _configured()


def crash_point(point: str) -> None:
    if FAULTS and random.random() < FAULTS.get(point, 0):
        os.kill(os.getpid(), signal.SIGKILL)
