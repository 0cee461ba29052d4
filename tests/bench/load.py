"""Load shapes the benchmarks share: closed loops (each of n clients sends its next
request when its last is answered) and figures of a run."""

import statistics
import threading
import time
from collections.abc import Callable


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `samples` (seconds), 0 when there are none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def figures(latencies: list[float], seconds: float, failures: int = 0) -> dict:
    """Operations a second, p50 and p99 in ms, and the failures of one run."""
    return {
        "per_s": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else 0.0,
        "done": len(latencies),
        "failed": failures,
    }


def closed_loop(
    clients: int,
    seconds: float,
    make_client: Callable[[int], Callable[[], None]],
    warmup: float = 0.0,
) -> dict:
    """`clients` threads, each calling its operation (`make_client(n)`, set up before
    the clock starts) back to back for `seconds` after `warmup`; an operation that
    raises counts as failed. Returns `figures`."""
    operations = [make_client(n) for n in range(clients)]
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    started = [0.0]

    def run(operation: Callable[[], None]) -> None:
        start.wait()
        counting_from = started[0] + warmup
        deadline = counting_from + seconds
        while (now := time.perf_counter()) < deadline:
            try:
                operation()
            except Exception:
                with lock:
                    failures[0] += 1
                continue
            if now >= counting_from:
                with lock:
                    latencies.append(time.perf_counter() - now)

    threads = [threading.Thread(target=run, args=(op,), daemon=True) for op in operations]
    for thread in threads:
        thread.start()
    started[0] = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    return figures(latencies, seconds, failures[0])
