"""Benchmark: an export of 100,000 investment flows streamed through the gateway with
flat memory (`make bench`, part `exports`; issue 14).

A registry as `make dev` runs it (one process per service, its own vhost and
SecantusDB). Two investors: one with a venture of 1,000 flows, one with 20 ventures of
5,000 flows each (`--quick`: 2 of 2,500). Each venture is registered, and its first
flow recorded, over HTTP (so every service knows it); the other flows are written
beside the service as it stores them, random over six years in PKR, CNY and USD, and
the report totals (which an export reads for each venture's value dates) built from
them as a start does. Then each investor's portfolio export (`GET
/v1/investments/export`, CSV and IATI) is read to the end over HTTP, and the gateway
process's resident memory is taken before it and at its peak (VmHWM, reset before each
export through /proc/<pid>/clear_refs, so no sampling misses a peak).

Flat memory: the 100,000-row export's peak is within `FLAT_MB` of the 1,000-row one's.
`run(quick)` returns the figures; nothing is asserted here."""

import random
import sys
import time
from pathlib import Path

from services.investments.store import InvestmentStore
from shared.mongo import connect
from shared.settings import Settings

import bench_investments
import product
from scratch import scratch_server
from support import Api, venture_body

# (ventures, flows each) of each export's investor: the small one's first.
PORTFOLIOS = {False: ((1, 1_000), (20, 5_000)), True: ((1, 1_000), (2, 2_500))}
FORMATS = ("csv", "iati")
# How much more the large export's peak may hold than the small one's: flat memory.
FLAT_MB = 10.0
CHUNK = 64 * 1024


def say(line: str) -> None:
    print(f"[bench_exports] {line}", file=sys.stderr, flush=True)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak since the last reset) of a process, in kB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    return {name: int(value.split()[0]) for name, value in fields.items()}


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM back to the current RSS


def portfolio(running: dict, client, ventures: int, flows_each: int, rng: random.Random) -> Api:
    """An investor whose `ventures` hold `flows_each` flows each."""
    [investor] = product.api_keys(running, "investor", 1)
    store = InvestmentStore(client, client[f"{running['env']['JVREG_DB_PREFIX']}_investments"])
    for n in range(ventures):
        answer = investor.post("/v1/ventures", json=venture_body())
        answer.raise_for_status()
        venture = answer.json()
        first = {
            "type": "commitment",
            "partner": venture["partners"][0]["name"],
            "amount": "1000.00",
            "currency": "PKR",
            "value_date": "2024-01-02",
        }
        # Waits until the investments service knows the venture (read your writes).
        investor.post(f"/v1/ventures/{venture['id']}/investments", json=first).raise_for_status()
        projected = [{"_id": venture["id"], "partners": venture["partners"]}]
        for start in range(1, flows_each, bench_investments.BATCH):
            count = min(bench_investments.BATCH, flows_each - start)
            store.flows.insert_many(bench_investments.flow_documents(rng, projected, count))
        say(f"  venture {n + 1} of {ventures}: {flows_each:,} flows")
    return investor


def stream(api: Api, pid: int, wanted: str) -> dict:
    """Read an export to its end, timing it; the gateway's memory before and at peak."""
    reset_peak(pid)
    before = memory_kb(pid)
    started = time.perf_counter()
    size = lines = 0
    with api.session.get(
        f"{api.base_url}/v1/investments/export",
        params={"format": wanted},
        stream=True,
        timeout=600,
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_content(CHUNK):
            size += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    after = memory_kb(pid)
    return {
        "seconds": round(seconds, 1),
        "bytes": size,
        "csv_lines": lines if wanted == "csv" else None,
        "rss_before_mb": round(before["VmRSS"] / 1024, 1),
        "peak_rss_mb": round(after["VmHWM"] / 1024, 1),
        "growth_mb": round((after["VmHWM"] - before["VmRSS"]) / 1024, 1),
    }


def run(quick: bool, log_dir: Path) -> dict:
    settings = Settings()
    rng = random.Random(14)
    figures: dict = {"sizes": {}, "flat_mb": FLAT_MB}
    with (
        scratch_server() as server,
        product.registry(
            server.uri, settings.amqp_uri, settings.broker_admin_url, log_dir
        ) as running,
    ):
        client = connect(server.uri)
        try:
            investors = {}
            for ventures, flows_each in PORTFOLIOS[quick]:
                rows = ventures * flows_each
                say(f"the investor of {rows:,} flows: {ventures} venture(s)…")
                investors[str(rows)] = portfolio(running, client, ventures, flows_each, rng)
            database = client[f"{running['env']['JVREG_DB_PREFIX']}_investments"]
            started = time.perf_counter()
            flows = InvestmentStore(client, database).build_report_totals()
            say(
                f"report totals built from {flows:,} flows in {time.perf_counter() - started:.1f} s"
            )
            pid = running["stack"].processes["gateway"].process.pid
            for rows, investor in investors.items():
                for wanted in FORMATS:
                    measured = stream(investor, pid, wanted)
                    figures["sizes"].setdefault(rows, {})[wanted] = measured
                    say(f"{int(rows):,} rows as {wanted}: {measured}")
        finally:
            client.close()
    small, large = sorted(figures["sizes"], key=int)
    figures["peak_over_small_mb"] = {
        wanted: round(
            figures["sizes"][large][wanted]["peak_rss_mb"]
            - figures["sizes"][small][wanted]["peak_rss_mb"],
            1,
        )
        for wanted in FORMATS
    }
    return figures


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="jvreg-bench-exports-") as logs:
        print(json.dumps(run("--quick" in sys.argv, Path(logs)), indent=2))
    sys.exit(0)
