"""`make bench ARGS=--quick`: every part of the benchmark runs, at tiny sizes, and
writes its results and its page. Benchmarks, not timed tests: the figures themselves
are `make bench`'s to report (docs/performance.md), never asserted here."""

import json
import subprocess

from ops.processes import ROOT


def test_make_bench_quick_runs_every_part_and_writes_its_results(tmp_path):
    page = tmp_path / "performance.md"
    done = subprocess.run(
        ["make", "--no-print-directory", "bench", f"ARGS=--quick --out {tmp_path} --doc {page}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    raw = results["raw"]
    for part in ("durable_write", "confirmed_publish", "rpc_round_trip"):
        for clients, figures in raw[part].items():
            assert figures["done"] > 0 and figures["failed"] == 0, (part, clients, figures)
    assert results["history_stored"]["events"] >= 1_000
    for registry in ("empty", "history"):
        for clients, figures in results[registry]["registrations"].items():
            assert figures["done"] > 0 and figures["failed"] == 0, (registry, clients, figures)
        for rate, figures in results[registry]["decisions"].items():
            assert figures["done"] > 0 and not figures["refused"], (registry, rate, figures)
    assert results["relay"]["relay_per_s"] > 0 and results["relay"]["raw_publish_per_s"] > 0
    for flows, figures in results["reports"]["sizes"].items():
        assert all(ms > 0 for ms in figures["portfolio_summary_ms"].values()), (flows, figures)
    search = results["search"]
    for where in ("index", "gateway"):
        for size, figures in search[where].items():
            assert all(figures[f"{name}_ms"] > 0 for name in search["queries"]), (where, size)
    assert search["rebuild"]["documents"] > 0
    assert set(results["checks"]) == {
        "registrations",
        "relay",
        "decision_p99",
        "decision_rate",
        "history",
        "search_index",
        "search_gateway",
        "portfolio",
        "exports",
        "asof_read",
        "asof_list",
    }
    assert set(results["measured"]) == {"write", "relay", "reports", "search", "exports", "asof"}
    text = page.read_text()
    assert "| measure | load | empty registry | with history | raw limit | ratio |" in text
    assert "| report (median ms) | 1,000 flows | 10,000 flows |" in text
    assert "| list query (median ms, x of 1k) | answered by | 1,000 | 10,000 |" in text
    assert results["machine"]["secantusdb"] in text
