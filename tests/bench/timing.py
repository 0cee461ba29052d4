"""What the benchmarks share: a median of repeated timings, and the command line each
part offers when it is run on its own (`python tests/bench/bench_X.py [--quick]
[--json PATH]`)."""

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def median_ms(
    call: Callable[[], object], repeats: int, warm: bool = True, digits: int = 2
) -> float:
    """The median of `repeats` timings of `call`, in ms; `warm`: after one ask that is
    not counted (a cache filled, a query compiled)."""
    if warm:
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, digits)


def run_alone(doc: str, run: Callable[[bool], dict], argv: list[str] | None = None) -> int:
    """One part of `make bench` on its own: its figures printed, and written to --json."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    figures = run(args.quick)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0
