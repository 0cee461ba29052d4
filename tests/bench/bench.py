"""`make bench`: the registry's figures side by side with the raw limits of the same
servers, in one run (issue 12).

Starts a SecantusDB of its own (`--sync-on-commit`, as `make dev`) and a registry as
`make dev` starts it, on a RabbitMQ vhost and databases of its own, removed afterwards,
then measures:

- raw limits: the durable work of a registration done directly (pymongo transaction
  writing a venture and its outbox record, then a confirmed kombu publish) and a nameko
  RPC round trip to a service that does nothing, at 1, 8 and 32 clients;
- the registry: venture registrations over HTTP at 1, 8 and 32 clients, and licence
  decisions until their event is on a regulator's queue at 10, 50 and 100 a second
  offered; then the same after storing 200,000 events of history (history.py);
- the outbox relay against kombu's confirmed publish (bench_relay.py);
- the read side (issue 13): the investment reports over 1,000 and 100,000 flows
  (bench_investments.py) and the search service's lists at 1,000 to 1,000,000 stored
  documents, at the gateway too, and its index rebuild (bench_search.py);
- exports (issue 14): the gateway's memory streaming 1,000 and 100,000 investment flows
  as CSV and IATI JSON (bench_exports.py).
- reads and lists as of a past instant (issue 16) over 1,000 and 10,000 licences'
  versions (bench_asof.py).

Prints a table with the ratios the issues ask for, writes bench/results.json and
docs/performance.md. `--quick` runs every part at tiny sizes (for `make test`);
`--parts reports,search` runs only those parts and keeps the others' figures from the
last results.json, each part saying when it was measured.
"""

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ops.processes import ROOT
from shared.mongo import connect
from shared.settings import Settings

import bench_asof
import bench_exports
import bench_investments
import bench_relay
import bench_report
import bench_search
import history
import product
import raw
from scratch import scratch_server

# The broker as an administrator (JVREG_AMQP_URI, JVREG_BROKER_ADMIN_URL), as `make dev`.
AMQP_URI = Settings().amqp_uri
MANAGEMENT_URL = Settings().broker_admin_url
CLIENTS = (1, 8, 32)
RATES = (10, 50, 100)
FULL = {"seconds": 10.0, "licences": 200, "history_events": 200_000}
QUICK = {"seconds": 0.5, "licences": 20, "history_events": 1_000}
# The parts of a run, each measured on servers of its own.
PARTS = ("write", "relay", "reports", "search", "exports", "asof")


STARTED = time.monotonic()


def say(what: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.0f} s] {what}", flush=True)


def product_figures(running: dict, investors: list, regulator, queue, licences, size) -> dict:
    return {
        "registrations": {
            str(n): product.registrations(investors[:n], size["seconds"]) for n in CLIENTS
        },
        "decisions": {
            str(rate): product.decisions(regulator, queue, licences, rate, size["seconds"])
            for rate in RATES
        },
    }


def write_path(quick: bool, log_dir: Path) -> dict:
    """The raw limits, and the registry's registrations and decisions, empty and with
    history."""
    size = QUICK if quick else FULL
    results: dict = {}
    with (
        scratch_server() as server,
        product.registry(server.uri, AMQP_URI, MANAGEMENT_URL, log_dir) as running,
    ):
        client = connect(server.uri)
        prefix = running["env"]["JVREG_DB_PREFIX"]
        investors = product.api_keys(running, "investor", max(CLIENTS))
        regulator = product.api_keys(running, "regulator", 1)[0]
        history.template_round(investors[0], regulator)
        template = history.snapshot(client, prefix)
        licences = product.licence_applications(investors[0], size["licences"])
        queue = product.RegulatorQueue(running, MANAGEMENT_URL)
        try:
            say("raw limits…")
            amqp_uri = running["amqp_uri"]
            results["raw"] = {
                "durable_write": {
                    str(n): raw.durable_writes(server.uri, amqp_uri, n, size["seconds"])
                    for n in CLIENTS
                },
                "confirmed_publish": {
                    str(n): raw.confirmed_publishes(amqp_uri, n, size["seconds"]) for n in CLIENTS
                },
            }
            with raw.echo_service(amqp_uri, log_dir / "bench_echo.log"):
                results["raw"]["rpc_round_trip"] = {
                    str(n): raw.rpc_round_trips(amqp_uri, n, size["seconds"]) for n in CLIENTS
                }
            say("the registry, empty…")
            results["empty"] = product_figures(running, investors, regulator, queue, licences, size)
            say(f"storing {size['history_events']:,} events of history…")
            # With the services stopped, as for a restore: bulk inserts beside running
            # services went at a few hundred documents a second, against thousands.
            running["stack"].stop()
            results["history_stored"] = history.store_history(
                client, template, size["history_events"]
            )
            running["stack"].start()
            running["stack"].wait_healthy(90)
            say("the registry, with history…")
            results["history"] = product_figures(
                running, investors, regulator, queue, licences, size
            )
        finally:
            queue.close()
            client.close()
    return results


def run(quick: bool, log_dir: Path, parts: tuple[str, ...] = PARTS) -> dict:
    """The figures of `parts`, and when and how each was measured."""
    results: dict = {"measured": {}}
    for part in parts:
        measured = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "quick": quick}
        say(f"{part}…")
        if part == "write":
            results.update(write_path(quick, log_dir))
        elif part == "relay":
            results["relay"] = bench_relay.run(quick)
        elif part == "reports":
            results["reports"] = bench_investments.run(quick)
        elif part == "search":
            results["search"] = bench_search.run(quick, log_dir)
        elif part == "exports":
            results["exports"] = bench_exports.run(quick, log_dir)
        elif part == "asof":
            results["asof"] = bench_asof.run(quick)
        results["measured"][part] = measured
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every part at tiny sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="where results.json goes")
    parser.add_argument(
        "--doc", type=Path, default=ROOT / "docs" / "performance.md", help="the table's page"
    )
    parser.add_argument(
        "--page-from",
        type=Path,
        help="measure nothing: print the table and write the page of this results.json",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated, of {', '.join(PARTS)}; the others' figures are kept from "
        "the last results.json in --out",
    )
    args = parser.parse_args(argv)
    parts = tuple(part for part in args.parts.split(",") if part)
    if unknown := set(parts) - set(PARTS):
        parser.error(f"no such part: {', '.join(sorted(unknown))}")
    if args.page_from:
        results = json.loads(args.page_from.read_text())
        print(bench_report.table(results))
        args.doc.write_text(bench_report.page(results))
        return 0
    stored = args.out / "results.json"
    kept = json.loads(stored.read_text()) if set(parts) != set(PARTS) and stored.exists() else {}
    with tempfile.TemporaryDirectory(prefix="jvreg-bench-logs-") as logs:
        measured = run(args.quick, Path(logs), parts)
    machine = bench_report.machine(MANAGEMENT_URL)
    # Each part says what it ran on: kept parts may have run on another machine.
    for when in kept.get("measured", {}).values():
        when.setdefault("machine", kept.get("machine"))
    for when in measured["measured"].values():
        when["machine"] = machine
    results = {**kept, **measured, "measured": {**kept.get("measured", {}), **measured["measured"]}}
    results["machine"] = machine
    results["checks"] = bench_report.checks(results)
    print(bench_report.table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(results, indent=2) + "\n")
    args.doc.write_text(bench_report.page(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
