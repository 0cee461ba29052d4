"""What `make bench` prints and writes: the machine it ran on, the goals the issues set
(12: the write and event path; 13: the read side; 14: exports), plain-text tables and
docs/performance.md. Each part is rendered only when the results hold it."""

import os
import platform
from importlib.metadata import version

import requests

GOALS = {
    "registrations": "registrations/s >= 0.5 x raw durable write at the same concurrency",
    "relay": "relay events/s >= 0.5 x raw confirmed publish",
    "decision_p99": "decision -> regulator queue p99 <= 50 ms at 50/s offered",
    "decision_rate": "100 decisions/s offered achieved (>= 95/s)",
    "history": "with 200k events of history within 1.2 x of the empty registry",
    "search_index": "list, search and facet pages at 100k and 1M within 1.5 x of 1k",
    "search_gateway": "list, search and facet pages under 50 ms at the gateway",
    "portfolio": "portfolio summary over 100k flows < 500 ms",
    "exports": "an export of 100k flows streams with flat memory (gateway peak within "
    "10 MB of a 1k export's)",
    "asof_read": "a licence read as of a past instant < 50 ms (median, 1,000 licences)",
    "asof_list": "every licence listed as of a past instant, 1,000 of them, < 1 s",
}
# The part of the results each goal is checked on.
GOAL_PARTS = {
    "registrations": "write",
    "relay": "relay",
    "decision_p99": "write",
    "decision_rate": "write",
    "history": "write",
    "search_index": "search",
    "search_gateway": "search",
    "portfolio": "reports",
    "exports": "exports",
    "asof_read": "asof",
    "asof_list": "asof",
}
# The sizes the read-side goals are set at.
LARGE_SIZES = ("100000", "1000000")
PORTFOLIO_SIZE = "100000"
ASOF_SIZE = 1_000


QUICK_NOTE = " (--quick: tiny sizes, not figures)"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(management_url: str) -> dict:
    try:
        overview = requests.get(f"{management_url}/api/overview", timeout=5).json()
        rabbitmq = overview.get("rabbitmq_version", "unknown")
    except requests.RequestException:
        rabbitmq = "unknown"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "rabbitmq": rabbitmq,
        "secantusdb": version("SecantusDB"),
        "os": platform.platform(),
    }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else 0.0


def checks(results: dict) -> dict:
    """Each goal's figures and whether it is met, for the parts the results hold."""
    found: dict = {}
    if "raw" in results:
        found.update(write_checks(results))
    if "relay" in results:
        relay = results["relay"]
        found["relay"] = {"ratio": relay["ratio"], "met": relay["ratio"] >= 0.5}
    if "search" in results:
        found.update(search_checks(results["search"]))
    if "reports" in results:
        at_size = results["reports"]["sizes"].get(PORTFOLIO_SIZE)
        slowest = max(at_size["portfolio_summary_ms"].values()) if at_size else None
        found["portfolio"] = {"slowest_ms": slowest, "met": slowest is not None and slowest < 500}
    if "exports" in results:
        exports = results["exports"]
        over = max(exports["peak_over_small_mb"].values())
        found["exports"] = {"peak_over_small_mb": over, "met": over <= exports["flat_mb"]}
    if "asof" in results:
        found.update(asof_checks(results["asof"]))
    return found


def asof_checks(asof: dict) -> dict:
    """The goals at 1,000 licences (a quick run measures that size too)."""
    at = next(figures for figures in asof["sizes"] if figures["licences"] == ASOF_SIZE)
    read_ms, list_ms = at["read_ms"]["median"], at["list_all_ms"]
    return {
        "asof_read": {"median_ms": read_ms, "met": read_ms < 50},
        "asof_list": {"ms": list_ms, "met": list_ms < 1000},
    }


def write_checks(results: dict) -> dict:
    raw, empty, history = results["raw"], results["empty"], results["history"]
    registrations = {
        n: ratio(figures["per_s"], raw["durable_write"][n]["per_s"])
        for n, figures in empty["registrations"].items()
    }
    slowdown = {
        f"registrations_{n}": ratio(figures["per_s"], history["registrations"][n]["per_s"])
        for n, figures in empty["registrations"].items()
    } | {
        f"decision_p99_{rate}": ratio(history["decisions"][rate]["p99_ms"], figures["p99_ms"])
        for rate, figures in empty["decisions"].items()
    }
    return {
        "registrations": {"ratios": registrations, "met": min(registrations.values()) >= 0.5},
        "decision_p99": {
            "p99_ms": [empty["decisions"]["50"]["p99_ms"], history["decisions"]["50"]["p99_ms"]],
            "met": max(empty["decisions"]["50"]["p99_ms"], history["decisions"]["50"]["p99_ms"])
            <= 50,
        },
        "decision_rate": {
            "per_s": [empty["decisions"]["100"]["per_s"], history["decisions"]["100"]["per_s"]],
            "met": min(empty["decisions"]["100"]["per_s"], history["decisions"]["100"]["per_s"])
            >= 95,
        },
        "history": {"slowdown": slowdown, "met": max(slowdown.values()) <= 1.2},
    }


def search_checks(search: dict) -> dict:
    """The index's ratios at the large sizes run (a quick run has none of them), and the
    gateway's slowest median."""
    ratios = {
        f"{size}_{key}": value
        for size in LARGE_SIZES
        for key, value in search["index"].get(size, {}).items()
        if key.endswith("_ratio")
    }
    gateway_ms = [
        value
        for figures in search["gateway"].values()
        for key, value in figures.items()
        if key.endswith("_ms")
    ]
    return {
        "search_index": {"ratios": ratios, "met": bool(ratios) and max(ratios.values()) <= 1.5},
        "search_gateway": {"slowest_ms": max(gateway_ms), "met": max(gateway_ms) < 50},
    }


def rate_and_latency(figures: dict) -> str:
    """`20.7 (47.3/84.9)`: per second, and p50/p99 in milliseconds."""
    return f"{figures['per_s']} ({figures['p50_ms']}/{figures['p99_ms']})"


def write_rows(results: dict) -> list[tuple[str, ...]]:
    """Registrations, decisions and the raw limits (the write part), and the relay."""
    rows = [("measure", "load", "empty registry", "with history", "raw limit", "ratio")]
    if "raw" in results:
        rows += registration_and_decision_rows(results)
    if relay := results.get("relay"):
        rows.append(
            (
                "outbox relay events/s",
                "one relay",
                str(relay["relay_per_s"]),
                "",
                f"{relay['raw_publish_per_s']} (kombu confirmed publish)",
                f"{relay['ratio']}x",
            )
        )
    if "raw" in results:
        raw = results["raw"]
        for n, figures in raw["confirmed_publish"].items():
            rows.append(
                (
                    "raw: kombu confirmed publish/s",
                    f"{n} clients",
                    "",
                    "",
                    str(figures["per_s"]),
                    "",
                )
            )
        for n, figures in raw["rpc_round_trip"].items():
            rows.append(
                (
                    "raw: nameko RPC round trips/s (p50/p99 ms)",
                    f"{n} clients",
                    "",
                    "",
                    rate_and_latency(figures),
                    "",
                )
            )
    return rows


def registration_and_decision_rows(results: dict) -> list[tuple[str, ...]]:
    raw, empty, history = results["raw"], results["empty"], results["history"]
    rows = []
    for n, figures in empty["registrations"].items():
        limit = raw["durable_write"][n]
        rows.append(
            (
                "registrations/s (p50/p99 ms)",
                f"{n} clients",
                rate_and_latency(figures),
                rate_and_latency(history["registrations"][n]),
                rate_and_latency(limit),
                f"{ratio(figures['per_s'], limit['per_s'])}x",
            )
        )
    for rate, figures in empty["decisions"].items():
        rows.append(
            (
                "decision -> regulator queue: achieved/s (p50/p99 ms)",
                f"{rate}/s offered",
                rate_and_latency(figures),
                rate_and_latency(history["decisions"][rate]),
                "",
                "",
            )
        )
    return rows


def reports_rows(reports: dict) -> list[tuple[str, ...]]:
    """Median milliseconds of each report at each number of flows."""
    sizes = list(reports["sizes"])
    rows = [("report (median ms)", *(f"{int(size):,} flows" for size in sizes))]
    at = reports["sizes"]
    for group in at[sizes[0]]["portfolio_summary_ms"]:
        rows.append(
            (
                f"portfolio summary, {group}",
                *(str(at[size]["portfolio_summary_ms"][group]) for size in sizes),
            )
        )
    rows.append(("one investor's portfolio", *(str(at[s]["owner_portfolio_ms"]) for s in sizes)))
    rows.append(("one venture's summary", *(str(at[s]["venture_summary_ms"]) for s in sizes)))
    rows.append(("totals built from the flows (s)", *(str(at[s]["build_totals_s"]) for s in sizes)))
    if pending := reports.get("with_pending"):
        # Measured at the largest size only: the other cells stay empty.
        for group, ms in pending["portfolio_summary_ms"].items():
            label = f"portfolio summary, {group}, {pending['pending']:,} flows not yet folded"
            rows.append((label, *([""] * (len(sizes) - 1)), str(ms)))
    return rows


def reports_line(reports: dict) -> str:
    pending = reports.get("with_pending")
    folding = (
        f" The folder folded {pending['pending']:,} pending entries in {pending['fold_s']} s "
        f"({pending['folded_per_s']:,}/s)."
        if pending
        else ""
    )
    return f"Recording a flow (its totals kept): {reports['record_flow_ms']} ms median.{folding}"


def exports_rows(exports: dict) -> list[tuple[str, ...]]:
    """Each export streamed through the gateway: its time and the gateway's memory."""
    rows = [("export (portfolio)", "rows", "seconds", "MB", "gateway RSS before (MB)")]
    rows[0] += ("gateway peak RSS (MB)", "growth (MB)")
    for size, formats in sorted(exports["sizes"].items(), key=lambda item: int(item[0])):
        for wanted, figures in formats.items():
            rows.append(
                (
                    wanted,
                    f"{int(size):,}",
                    str(figures["seconds"]),
                    str(round(figures["bytes"] / 1e6, 1)),
                    str(figures["rss_before_mb"]),
                    str(figures["peak_rss_mb"]),
                    str(figures["growth_mb"]),
                )
            )
    return rows


def exports_line(exports: dict) -> str:
    over = ", ".join(f"{wanted} {mb} MB" for wanted, mb in exports["peak_over_small_mb"].items())
    return f"The largest export's peak over the smallest's: {over}."


def search_rows(search: dict) -> list[tuple[str, ...]]:
    """Median milliseconds of each list query, in the index and at the gateway, at each
    number of stored ventures, with the ratio to the smallest size."""
    sizes = sorted({*search["index"], *search["gateway"]}, key=int)
    rows = [("list query (median ms, x of 1k)", "answered by", *(f"{int(s):,}" for s in sizes))]
    names = [*search["queries"], "next_page"]
    for where in ("index", "gateway"):
        figures = search[where]
        for name in names:
            if f"{name}_ms" not in figures[sizes[0]]:
                continue
            cells = []
            for size in sizes:
                at_size = figures.get(size, {})
                ms, times = at_size.get(f"{name}_ms"), at_size.get(f"{name}_ratio")
                cells.append("" if ms is None else f"{ms}" + (f" ({times}x)" if times else ""))
            rows.append((query_label(search, name), where, *cells))
    return rows


def query_label(search: dict, name: str) -> str:
    if name == "next_page":
        return "the page after the filtered, sorted one"
    params = "&".join(f"{key}={value}" for key, value in search["queries"][name].items())
    return f"{name.replace('_', ' ')} (`{params}`)"


def asof_rows(asof: dict) -> list[tuple[str, ...]]:
    """Milliseconds of each as-of read and list, at each number of licences."""
    sizes = asof["sizes"]
    rows = [("as of a past instant (ms)", *(f"{at['licences']:,} licences" for at in sizes))]
    rows.append(
        (
            "one licence (median / p95)",
            *(f"{a['read_ms']['median']:.1f} / {a['read_ms']['p95']:.1f}" for a in sizes),
        )
    )
    rows.append(("every licence, pages of 200", *(f"{a['list_all_ms']:.0f}" for a in sizes)))
    rows.append(("one investor's (of 20)", *(f"{a['list_investor_ms']:.0f}" for a in sizes)))
    rows.append(
        (
            "a page of 50 of a status few had",
            *(f"{a['list_selective_first_page_ms']:.0f}" for a in sizes),
        )
    )
    return rows


def builds_line(search: dict) -> str | None:
    """How many indexes of each size the index figures are the median of, and how far
    their builds differed."""
    sizes = sorted(search["index"], key=int)
    builds = [search["index"][size].get("builds", []) for size in sizes]
    if not all(builds) or len(builds[0]) < 2:
        return None

    def spread(name: str) -> str:
        return ", ".join(
            f"{int(size):,} {min(b[f'{name}_ms'] for b in built)}–"
            f"{max(b[f'{name}_ms'] for b in built)}"
            for size, built in zip(sizes, builds, strict=True)
        )

    return (
        f"Index figures: the median of {len(builds[0])} indexes built of each size as a "
        "rebuild builds them (a page's cost differs from build to build; each build's "
        "figures are in bench/results.json). Across builds, ms: the filtered sorted page "
        f"{spread('filtered_sorted_page')}; the page after it {spread('next_page')}."
    )


def rebuild_line(search: dict) -> str:
    rebuild = search["rebuild"]
    return (
        f"Index rebuild (`jvreg search rebuild`'s work) from {rebuild['events']:,} logged "
        f"events: {rebuild['seconds']} s ({rebuild['events_per_s']:,} events/s, "
        f"{rebuild['documents']:,} documents)."
    )


def text_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]


def tables(results: dict) -> list[tuple[str, list[tuple[str, ...]]]]:
    """(heading, rows) of each table the results hold."""
    found = []
    if "raw" in results or "relay" in results:
        found.append(("The write and event path (issue 12)", write_rows(results)))
    if "reports" in results:
        found.append(("Investment reports (issue 13)", reports_rows(results["reports"])))
    if "search" in results:
        found.append(
            ("Lists answered by the search service (issue 13)", search_rows(results["search"]))
        )
    if "exports" in results:
        found.append(("Exports streamed (issue 14)", exports_rows(results["exports"])))
    if "asof" in results:
        found.append(("Reads as of a past instant (issue 16)", asof_rows(results["asof"])))
    return found


def goal_lines(results: dict, met: str, not_met: str) -> list[str]:
    return [
        f"{met if results['checks'][name]['met'] else not_met}{goal}"
        for name, goal in GOALS.items()
        if name in results["checks"]
    ]


def table(results: dict) -> str:
    lines = []
    for heading, rows in tables(results):
        lines += [heading, text_table(rows), ""]
    if "reports" in results:
        lines += [reports_line(results["reports"]), ""]
    if "search" in results:
        lines += [rebuild_line(results["search"]), ""]
    if "exports" in results:
        lines += [exports_line(results["exports"]), ""]
    lines += goal_lines(results, "met      ", "NOT MET  ")
    return "\n".join(lines)


def when(results: dict) -> list[str]:
    """When each part was measured (a run of some parts keeps the others' figures), and
    on which machine when it was not this run's."""
    lines = []
    for part, measured in results["measured"].items():
        elsewhere = measured.get("machine") or results["machine"]
        on = "" if elsewhere == results["machine"] else f", on {describe(elsewhere)}"
        lines.append(f"- {part}: {measured['at']}{on}{QUICK_NOTE if measured['quick'] else ''}")
    return lines


def describe(machine: dict) -> str:
    return (
        f"{machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"RabbitMQ {machine['rabbitmq']}, SecantusDB {machine['secantusdb']} "
        f"(`--sync-on-commit`), {machine['os']}"
    )


def page(results: dict) -> str:
    """docs/performance.md: the tables of the last `make bench` and what it ran on."""
    sections = []
    for heading, rows in tables(results):
        sections += [f"## {heading}", "", *markdown_table(rows), ""]
        if heading.startswith("The write") and "history_stored" in results:
            stored = results["history_stored"]
            sections += [
                f"History: {stored['events']:,} events stored ({stored['documents']:,} "
                f"documents, {stored['seconds']} s).",
                "",
            ]
        if heading.startswith("Investment"):
            sections += [reports_line(results["reports"]), ""]
        if heading.startswith("Lists"):
            if line := builds_line(results["search"]):
                sections += [line, ""]
            sections += [rebuild_line(results["search"]), ""]
        if heading.startswith("Exports"):
            sections += [exports_line(results["exports"]), ""]
    return "\n".join(
        [
            "# Performance",
            "",
            "Written by `make bench` (`tests/bench/bench.py`); do not edit by hand. What it",
            "measures and how: [the benchmark's docstrings](../tests/bench/bench.py), and",
            "[the notes below](#how-it-is-measured).",
            "",
            f"On {describe(results['machine'])}. Each part as measured:",
            "",
            *when(results),
            "",
            *sections,
            "## Goals",
            "",
            *goal_lines(results, "- met: ", "- **not met**: "),
            "",
            NOTES,
        ]
    )


NOTES = """## How it is measured

- **Same servers, one run.** One SecantusDB (`--sync-on-commit`) started for the run,
  the local RabbitMQ on a vhost of the run's own; the registry runs as `make dev` runs
  it (one `nameko run` per service, each its own broker user, `make dev`'s settings).
  Client threads run in the benchmark's process on the same machine.
- **Raw durable write**: per operation, a pymongo transaction inserting a venture
  document and an outbox record, then a persistent kombu publish waiting for its
  confirm, one connection per client. **RPC round trip**: nameko's
  `ClusterRpcProxy`, one per client, to a service that answers at once, run with
  `deploy/config.yaml`.
- **Registrations**: `POST /v1/ventures` with a real investor API key per client (an
  organisation each), closed loop (each client sends its next request when the last is
  answered); figures count the 201s after a short warm-up.
- **Decisions**: licences are moved between `under_review` and `deferred` by a
  regulator key, offered at a fixed rate (open loop, one decision in flight per
  licence), and timed from the request until `jvreg watch`'s consumer, logged in as a
  regulator's own broker user (`jvreg regulators add`), has the event from its own
  queue `regulator.bench.decisions` (bound to `licensing.events`, `license.#`).
  Achieved = events delivered / time from the first request to the last event.
- **History** (`tests/bench/history.py`): one round of real work (venture, plant,
  licence to a grant: 7 events) goes through the registry; every document it leaves in
  every service's database (aggregates, projections, licence history, event logs,
  command keys, sent outbox records, notification streams) is then
  bulk-inserted again as raw BSON with ids of its own, until the events reach 200,000,
  with the services stopped (started again afterwards, as after a restore).
- **Relay**: `tests/bench/bench_relay.py`, against kombu publishing the same
  persistent messages with confirms.
- **Investment reports** (`tests/bench/bench_investments.py`): a SecantusDB of its own
  holding 200 ventures, monthly PKR and CNY rates and random flows over six years; the
  report totals built from them, then the median of three of every report the service
  answers, read from the totals and converted, at 1,000 and 100,000 flows; then the
  portfolio summary with 5,000 more flows recorded and not yet folded into the
  portfolio's totals (a backlog the background folder has not reached), and the folding.
- **Lists** (`tests/bench/bench_search.py`): synthetic ventures loaded into search
  indexes of the run's own (1,000, 100,000 and 1,000,000), the median of repeated queries
  against each, asked in ten rounds that take every size in turn; a size's ratio is the
  median of its rounds' ratios to the 1,000 index's time in the same round (this
  machine's speed drifts over minutes, by half at times); then a registry as `make dev`
  runs it whose search instance takes up an index of 1,000, 100,000 and then 1,000,000
  ventures as `jvreg search rebuild` hands one over, and the same queries over HTTP with
  an ops key. The rebuild: its work from ventures' events in an event log of a
  SecantusDB of its own.
- **Exports** (`tests/bench/bench_exports.py`): a registry as `make dev` runs it; an
  investor with one venture of 1,000 flows, another with 20 ventures of 5,000 (each
  venture and its first flow over HTTP, the rest written beside the service and the
  report totals built from them); each one's portfolio export (`GET
  /v1/investments/export`, CSV and IATI) read to its end, the gateway process's
  resident memory before it and its peak (VmHWM, reset through `/proc/<pid>/clear_refs`
  before each export).
- **As of** (`tests/bench/bench_asof.py`): licences of 20 investors, each with four
  versions (a DRAP decision), in a SecantusDB of its own, read and listed as of past
  instants through the licensing store as its RPCs call it (no HTTP): one licence, every
  licence page by page (no filter on a field that never changes: read in id order, a
  scan of the collection per page), one investor's (equality on an index), and a status
  few had then (every candidate read to fill a page).

## Where the time goes

Profiled on 2026-11-30 on the machine above, under other load (load average 5-11 on
2 cores), by `py-spy record` of each process, CPU times from `/proc` and SecantusDB's
own counters (`serverStatus` opcounters, `top`), 8 clients registering for 10 s, on
the code before the consumers' inbox table and the relay's range queries were
replaced (the same day):

- **SecantusDB is the serial part.** It is a Python server (one GIL): alone it answers
  about 500 single-document inserts a second at 1, 8 or 32 threads alike (560, 477,
  423 with `--sync-on-commit`; 633, 586, 490 without), so concurrency buys nothing
  once it is busy, and throughput is its operations a second divided by the operations
  a piece of work costs. It spent 24 ms of CPU per registration, more than all the
  services together (ventures 9.0, facilities 6.0, investments 5.7, gateway 4.4,
  RabbitMQ 5.8 ms).
- **A registration cost about 20 database operations; the raw write 3** (two inserts
  and a commit): ventures' command key, venture, outbox record and commit, its relay's
  claim and mark, its event-log write; in facilities and investments each an inbox
  query and insert, a projection read and update and a commit; and their relays'
  looks at their outboxes, woken by the consumers' commits. Any update of a record on
  SecantusDB costs about 1 ms (an `update_many` of 200 records by `_id`: 219-230 ms,
  indexed fields or not; `insert_many` of 200: 20 ms).
- **With history, range queries scanned whole collections**: the relay's claim
  (`available_at <= now`, sorted by `created_at`) and predecessor check (`sequence <
  n`) read every record, sent ones included, of which none was pruned (81 ms per query
  on `ventures.outbox` at 30,000 events; decisions took 26 s to reach the regulator at
  200,000).

What changed since (docs/architecture.md §5.1, §5.2): consumers de-duplicate by the
projection's last applied sequence (two operations fewer per event and consumer, and no
table growing with every event); the relay selects by equality and `$in` only, publishes
a batch pipelined on one long-lived confirm channel and is woken by each commit; sent
records (after 24 h) and command keys (after 7 days) are deleted by the hour they fall
due in (`shared/pruning.py`), no longer by a TTL index, which SecantusDB serves by
walking the whole collection every minute under its storage lock; the gateway keeps
verified API keys for 5 s (`JVREG_API_KEY_CACHE_SECONDS`: 0.08 key reads per
registration) and sends RPC messages transient, replies unconfirmed (1.05 ms -> 0.41 /
0.15 ms per publish). The run above shows the history no longer dominating: with 200,000
events stored, registrations stay within 1.22-1.25x of the empty registry, where they
fell to a tenth before; what still slows them with history (neither the relay's queries
nor a TTL sweep any more) has not been profiled yet. And it shows what is left: every
event still costs each service that handles it a transaction of several operations on
the one SecantusDB (producer's command key, state, outbox record; relay claim and mark;
each consumer's projection and effect; each event-log write), which bounds registrations
near 25-35 a second and decisions near 20-23 a second here, whatever the concurrency
(the raw limits, measured in the same run, move with the machine's other load: the
ratios are what compare), and
the relay's claim and mark (about 1 ms a record each) keep it far below kombu's own
confirmed publish.

On the read side (issue 13): a page of the search index visits a window of its sort
order between two keys of a sample of the sort keys, a word of `q` is asked as the
terms it begins, and the facet counts of a list without words or dates are kept across
commits (docs/architecture.md §10), where before every match was visited (9-15 ms at
1,000,000 ventures). A window is compiled against each segment's terms, so a rebuild
writes its index as one segment (one writer thread whose memory holds every document;
with two threads of 50 MB, 1,000,000 ventures made 10-11 segments and the filtered
sorted page took 2.1x its time at 1,000). A window's matches are read with their
documents and sorted by their keys in the service, which costs less than tantivy's
ordering by a text field (a dictionary lookup per hit; with it, the filtered sorted
page took 1.55x at 100,000 and 1.58x at 1,000,000 in one measurement). The figures at
the gateway move with the machine's other load as well as with the index. The
portfolio summary reads the totals kept per month where one rate converts the whole
month, per day where a rate splits it (docs/investments.md), plus the flows the
background folder has not folded yet, each one document read.
"""
