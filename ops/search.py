"""`jvreg search`: the search service's index, for ops. `rebuild` makes an instance's
index anew from the event logs of the services it follows (docs/architecture.md §10).

It reads each publisher's `event_log` collection directly, read only, like
`jvreg reconcile` (§5.6): the logs are the audit trail every publisher keeps of every
event it published, a rebuild reads all of them once, and no service answers a read
that size within an RPC's bound. The running instance takes the new index up by
itself (services/search/live.py)."""

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from pymongo import MongoClient
from pymongo.errors import AutoReconnect
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from services.search import contract
from services.search.index import REBUILD_HEAP_BYTES, Change, SearchIndex
from services.search.live import point_at
from services.search.settings import REBUILDING, SearchSettings
from shared.envelope import EVENT_TYPE_PREFIX
from shared.inbox import EventLog
from shared.mongo import connect

log = logging.getLogger(__name__)

Advance = Callable[[str, int, int], None]  # (source, done, total)
FIELDS = {"_id": 0, "logged_at": 0}
SCAN_ATTEMPTS = 3


def latest_changes(mongo: MongoClient, settings: SearchSettings, progress: Advance | None):
    """The last event of every aggregate in the followed services' event logs, as the
    change of its document; and what was read: events per source, aggregates whose
    logged sequences have a gap (an event missing from the log)."""
    accepted = {s.source: set(s.accepts) for s in contract.SUBSCRIPTIONS}
    latest: dict[str, tuple[int, dict, str]] = {}
    seen: dict[str, set[int]] = {}
    events: dict[str, int] = {}
    for subscription in contract.SUBSCRIPTIONS:
        source = subscription.source
        records = mongo[settings.database_name(source)][EventLog.COLLECTION]
        total = records.estimated_document_count()
        for attempt in range(1, SCAN_ATTEMPTS + 1):
            # Reading a log again from its start is harmless: what is kept of an event
            # is the same however often it is read.
            events[source] = 0
            try:
                for record in records.find({}, FIELDS):
                    events[source] += 1
                    if progress and events[source] % 1000 == 0:
                        progress(source, events[source], total)
                    subject, sequence = record["subject"], int(record["sequence"])
                    seen.setdefault(subject, set()).add(sequence)
                    if subject not in latest or latest[subject][0] < sequence:
                        latest[subject] = (sequence, record, source)
                break
            except AutoReconnect as lost:
                # A long scan outlives a moment the server does not answer (pymongo
                # then cancels what is in flight); a scan that cannot resume starts over.
                if attempt == SCAN_ATTEMPTS:
                    raise
                log.warning("reading %s's event log again (%s)", source, lost)
        if progress:
            progress(source, events[source], events[source])
    gaps = sorted(subject for subject, numbers in seen.items() if len(numbers) != max(numbers))

    def changes() -> Iterator[Change]:
        # The aggregate as the event carries it, without validating it again: the log
        # holds what its publisher published, its own contract's model as JSON (what the
        # live consumer keeps of a validated event); validating every email address and
        # name again took most of a rebuild's time. Types not followed are left out.
        for subject, (sequence, record, source) in latest.items():
            routing_key = str(record.get("type", "")).removeprefix(EVENT_TYPE_PREFIX)
            if routing_key not in accepted[source]:
                continue
            aggregate, doctype = contract.SOURCES[source]
            resource = (record.get("data") or {}).get(aggregate)
            if not isinstance(resource, dict) or resource.get("id") != subject:
                continue
            yield Change(doctype, subject, sequence, resource, source)

    return changes(), events, gaps


def rebuild_index(
    settings: SearchSettings, mongo: MongoClient, progress: Advance | None = None
) -> dict:
    """Build a new generation of the instance's index from the event logs and point the
    instance at it. Returns what it did."""
    root = settings.index_root
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    (root / REBUILDING).write_text(f"{started}\n")
    changes, events, gaps = latest_changes(mongo, settings, progress)
    generation = root / f"gen-{int(started * 1000)}"
    index = SearchIndex(generation, REBUILD_HEAP_BYTES)
    documents = index.load(changes)
    index.close()
    del index
    point_at(root, generation)
    return {
        "instance": settings.search_instance,
        "generation": str(generation),
        "events": sum(events.values()),
        "events_per_source": events,
        "documents": documents,
        "gaps": gaps,
        "seconds": round(time.time() - started, 3),
    }


@click.group()
def search():
    """The search service's index."""


@search.command()
@click.option(
    "--instance",
    help="the instance whose index to rebuild (JVREG_SEARCH_INSTANCE; default: this host's)",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="where the instance keeps its index (JVREG_SEARCH_DATA_DIR; default var/search)",
)
def rebuild(instance: str | None, data_dir: Path | None):
    """Rebuild an instance's index from the event logs of ventures, facilities and
    licensing. A running instance takes the new index up within a second, and replays
    into it what it applied meanwhile; a stopped one uses it when it starts."""
    overrides: dict = {}
    if instance:
        overrides["search_instance"] = instance
    if data_dir:
        overrides["search_data_dir"] = data_dir
    settings = SearchSettings(**overrides)
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(source: str, done: int, total: int) -> None:
            if source not in tasks:
                tasks[source] = bar.add_task(source, total=max(total, done))
            bar.update(tasks[source], completed=done, total=max(total, done))

        report = rebuild_index(settings, connect(settings.mongo_uri), advance)
    click.echo(
        f"rebuilt the index of instance {report['instance']} from {report['events']} events: "
        f"{report['documents']} documents in {report['seconds']} s ({report['generation']})"
    )
    if report["gaps"]:
        click.echo(
            f"{len(report['gaps'])} aggregates have events missing from their log, e.g. "
            f"{', '.join(report['gaps'][:5])}: their documents show their last logged event",
            err=True,
        )
