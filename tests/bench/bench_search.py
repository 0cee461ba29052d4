"""Benchmark: the search service's lists at growing sizes (`make bench`; issue 13).

- **The index** (services/search/index.py, no broker): N ventures (1,000, 100,000 and
  1,000,000; `--quick`: 1,000 and 10,000) loaded into a tantivy index of the run's own
  (three sets of one index of each size, the figures their median; `--quick`: one),
  then, in ten rounds that ask every size in turn, the median of repeated
  - a filtered, sorted page (`sector=…&sort=-name`, 50 hits), and the page after it;
  - a word search (`q=indus`, 50 hits, registration order);
  - a facet count (`province=sindh&count=sector`).
- **The gateway**: a registry as `make dev` runs it (one process per service, its own
  vhost and SecantusDB), whose search instance answers from an index of 1,000 and then
  100,000 and 1,000,000 ventures (`--quick`: 1,000 and 10,000), built beside it and taken up by the
  running instance as `jvreg search rebuild` hands it over; the same queries over HTTP
  with the bootstrap ops key.
- **The rebuild**: `jvreg search rebuild`'s work (ops/search.py) from N events in the
  ventures' event log of a SecantusDB of its own (1,000,000; `--quick`: 1,000).

Each median follows one ask of the same query that is not counted: at 100k and 1M the
index's first large page takes its sample of sort keys, each query's first ask compiles
its page's sort window, and a facet count is aggregated there and kept from then on
(docs/architecture.md §10); those first asks' costs are not in these figures.

An index's ratio to 1k is the median of its rounds' ratios to the 1k index's time in the
same round, so that the machine's drift over minutes is not taken for the index's.

Goals (issue 13): each page at 100k and 1M within 1.5x of the same page at 1k, and under
50 ms at the gateway. `run(quick)` returns the figures as a dict; `--json PATH` writes
them. Nothing here is asserted: the figures are `make bench`'s to report.
"""

import copy
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

from timing import median_ms, run_alone

from ops.processes import ensure_management_api, wait_until
from ops.search import rebuild_index
from services.search.index import REBUILD_HEAP_BYTES, Change, ListQuery, SearchIndex
from services.search.live import point_at
from services.search.settings import SearchSettings
from services.ventures.contract import VENTURE_EXAMPLE, Sector, VentureUpdated
from shared.envelope import aggregate_event
from shared.inbox import EventLog
from shared.mongo import connect
from shared.settings import Settings

from scratch import scratch_server
from support import Api, RabbitManagement, running_registry

SECTORS = get_args(Sector)
PROVINCES = ("punjab", "sindh", "khyber_pakhtunkhwa", "balochistan", "islamabad_capital_territory")
WORDS = ("Indus", "Yangtze", "Karakoram", "Silk Road", "Gwadar", "Lahore", "Shenzhen", "Kunlun")
KINDS = ("Pharma", "Biologics", "API Works", "Formulations", "Devices", "Health")
# The queries measured, as the gateway's query parameters.
QUERIES = {
    "filtered_sorted_page": {"sector": "telemedicine", "sort": "-name"},
    "search": {"q": "indus"},
    "facet": {"province": "sindh", "count": "sector"},
}
INDEX_SIZES = {False: (1_000, 100_000, 1_000_000), True: (1_000, 10_000)}
GATEWAY_SIZES = {False: (1_000, 100_000, 1_000_000), True: (1_000, 10_000)}
REBUILD_EVENTS = {False: 1_000_000, True: 1_000}
REPEATS = {False: 30, True: 5}
INDEX_BUILDS = {False: 3, True: 1}
# Rounds of the index's queries, every size asked in each (index_build_figures).
INDEX_ROUNDS = {False: 10, True: 2}


def venture(number: int, rng: random.Random) -> dict:
    resource = copy.deepcopy(VENTURE_EXAMPLE)
    name = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(KINDS)} {number}"
    # Partners of names of their own: `q=indus` then finds about two ventures in five.
    for partner in resource["partners"]:
        partner["name"] = f"{rng.choice(WORDS)} {rng.choice(KINDS)} {number} {partner['country']}"
    resource.update(
        id=f"jv_{number:024x}",
        name=name,
        sector=SECTORS[number % len(SECTORS)],
        province=PROVINCES[rng.randrange(len(PROVINCES))],
        owner=f"Bench Investor {number % 500}",
        status=("registered", "active", "suspended")[number % 3],
        version=1 + number % 4,
    )
    return resource


def ventures(count: int, seed: int = 13) -> Iterator[Change]:
    rng = random.Random(seed)
    for number in range(count):
        resource = venture(number, rng)
        yield Change("venture", resource["id"], resource["version"], resource, "ventures")


def list_query(query: dict, after: str | None = None) -> ListQuery:
    filters = {k: v for k, v in query.items() if k not in ("q", "sort", "count")}
    return ListQuery(
        "venture",
        filters,
        q=query.get("q"),
        sort=query.get("sort", "id"),
        count=query.get("count"),
        limit=50,
        after=after,
    )


def index_figures(sizes: tuple[int, ...], repeats: int, builds: int, rounds: int) -> dict:
    """Each size's figures: the median over `builds` sets of indexes, one of each size
    in a set, each built as a rebuild builds one (one writer thread whose memory holds
    every document: one segment). A page's cost still moves from build to build with
    where the pages of the index land in memory; each build's figures are kept under
    `builds`, and a ratio is the median of the builds' ratios."""
    built = [index_build_figures(sizes, repeats, rounds) for _ in range(builds)]
    figures: dict = {}
    for size in sizes:
        rows = [figures_of_build[str(size)] for figures_of_build in built]
        row = {key: round(statistics.median(r[key] for r in rows), 2) for key in rows[0]}
        figures[str(size)] = {**row, "builds": rows}
        say(f"index, {size:,} ventures, median of {builds} builds: {row}")
    return figures


def index_build_figures(sizes: tuple[int, ...], repeats: int, rounds: int) -> dict:
    """One index of each size, asked in turn a round at a time. This machine's speed
    drifts by as much as half over a minute (a pure-Python loop timed beside the
    queries drifts with them), so sizes asked minutes apart compare the machine as
    much as the index: each size is compared with the smallest in the same round, and
    its ratio is the median of its rounds' ratios."""
    with tempfile.TemporaryDirectory(prefix="jvreg-bench-search-") as tmp:
        indexes, loaded = {}, {}
        for size in sizes:
            path = Path(tmp) / str(size)
            loading = SearchIndex(path, REBUILD_HEAP_BYTES)
            started = time.perf_counter()
            loading.load(ventures(size))
            loaded[size] = round(time.perf_counter() - started, 2)
            # Measured as an instance serves a rebuilt generation: once its merges are
            # done (`jvreg search rebuild` waits for them; they took the CPUs from the
            # first query measured), opened afresh.
            loading.close()
            indexes[size] = SearchIndex(path)
        times: dict[int, dict[str, list[float]]] = {size: {} for size in sizes}
        for _ in range(rounds):
            for size, index in indexes.items():
                for key, ms in index_queries(index, repeats).items():
                    times[size].setdefault(key, []).append(ms)
        for index in indexes.values():
            index.close()
    base = times[sizes[0]]
    figures = {}
    for size in sizes:
        row: dict = {"load_seconds": loaded[size]}
        for key, measured in times[size].items():
            row[key] = round(statistics.median(measured), 2)
            if size != sizes[0]:
                ratios = [ms / base_ms for ms, base_ms in zip(measured, base[key], strict=True)]
                row[key.removesuffix("_ms") + "_ratio"] = round(statistics.median(ratios), 2)
        figures[str(size)] = row
        say(f"index, {size:,} ventures, one build: {row}")
    return figures


def index_queries(index: SearchIndex, repeats: int) -> dict:
    row = {}
    for name, query in QUERIES.items():
        row[f"{name}_ms"] = median_ms(lambda q=query: index.search(list_query(q)), repeats)
    first = index.search(list_query(QUERIES["filtered_sorted_page"]))
    following = list_query(QUERIES["filtered_sorted_page"], first.next_after)
    row["next_page_ms"] = median_ms(lambda: index.search(following), repeats)
    return row


def with_ratios(figures: dict) -> dict:
    """Each size's times as a ratio of the smallest size's (goal <= 1.5)."""
    sizes = sorted(figures, key=int)
    base = figures[sizes[0]]
    for size in sizes[1:]:
        for key in [k for k in figures[size] if k.endswith("_ms")]:
            if base[key]:
                figures[size][key.removesuffix("_ms") + "_ratio"] = round(
                    figures[size][key] / base[key], 2
                )
    return figures


def gateway_figures(sizes: tuple[int, ...], repeats: int, log_dir: Path) -> dict:
    settings = Settings()
    if problem := ensure_management_api(settings.broker_admin_url):
        raise RuntimeError(problem)
    figures: dict = {}
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    data_dir = log_dir / "search-index"
    search = SearchSettings(search_instance="bench", search_data_dir=data_dir, db_prefix=prefix)
    with scratch_server() as server:
        backends = {
            "mongo_uri": server.uri,
            "amqp_uri": settings.amqp_uri,
            "management_url": settings.broker_admin_url,
        }
        generation = build_generation(search, sizes[0])
        point_at(search.index_root, generation)
        with running_registry(
            backends,
            RabbitManagement(settings.broker_admin_url),
            log_dir,
            JVREG_DB_PREFIX=prefix,
            JVREG_SEARCH_INSTANCE="bench",
            JVREG_SEARCH_DATA_DIR=str(data_dir),
            JVREG_EXPENSIVE_READ_LIMIT="100000/minute",
        ) as running:
            ops = Api(running["url"], running["ops_key"])
            for size in sizes:
                if size != sizes[0]:
                    # As `jvreg search rebuild` hands a new index to a running instance.
                    point_at(search.index_root, build_generation(search, size))
                wait_until(lambda s=size: listed_total(ops) == s, 120, f"{size} ventures listed")
                row = {}
                for name, query in QUERIES.items():
                    row[f"{name}_ms"] = median_ms(
                        lambda q=query: ok(ops.get("/v1/ventures", params={**q, "limit": 50})),
                        repeats,
                    )
                figures[str(size)] = row
                say(f"gateway, {size:,} ventures: {row}")
    return with_ratios(figures)


def build_generation(search: SearchSettings, size: int) -> Path:
    generation = search.index_root / f"gen-bench-{size}"
    index = SearchIndex(generation, REBUILD_HEAP_BYTES)
    index.load(ventures(size))
    index.close()
    return generation


def listed_total(ops: Api) -> int:
    counts = ok(ops.get("/v1/ventures", params={"count": "sector", "limit": 1}))["counts"]
    return sum(count["count"] for count in counts)


def ok(response) -> dict:
    response.raise_for_status()
    return response.json()


def rebuild_figures(events: int) -> dict:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="jvreg-bench-rebuild-") as tmp:
        settings = SearchSettings(
            search_instance="bench", search_data_dir=Path(tmp), db_prefix=prefix
        )
        with scratch_server() as server:
            client = connect(server.uri)
            log = client[settings.database_name("ventures")][EventLog.COLLECTION]
            batch: list[dict] = []
            for change in ventures(events):
                event = aggregate_event(ventures_contract_payload(change.resource, change.sequence))
                batch.append({**event.wire(), "_id": event.id})
                if len(batch) == 1000:
                    log.insert_many(batch)
                    batch = []
            if batch:
                log.insert_many(batch)
            report = rebuild_index(settings, client)
            client.close()
    say(f"rebuild from {events:,} events: {report['seconds']} s")
    return {
        "events": report["events"],
        "documents": report["documents"],
        "seconds": report["seconds"],
        "events_per_s": round(report["events"] / report["seconds"], 1),
    }


def ventures_contract_payload(resource: dict, sequence: int):
    return VentureUpdated.model_validate(
        {
            "venture": {**resource, "version": sequence},
            "change": {
                "fields": {},
                "reason": "bench",
                "actor": {"key_id": "key_bench", "role": "ops", "owner": "jvreg"},
            },
        }
    )


def run(quick: bool = False, log_dir: Path | None = None) -> dict:
    repeats = REPEATS[quick]
    with tempfile.TemporaryDirectory(prefix="jvreg-bench-search-logs-") as tmp:
        logs = log_dir or Path(tmp)
        return {
            "queries": QUERIES,
            "index": index_figures(
                INDEX_SIZES[quick], repeats, INDEX_BUILDS[quick], INDEX_ROUNDS[quick]
            ),
            "gateway": gateway_figures(GATEWAY_SIZES[quick], repeats, logs),
            "rebuild": rebuild_figures(REBUILD_EVENTS[quick]),
        }


def say(line: str) -> None:
    print(f"[bench_search] {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(run_alone(__doc__, run))
