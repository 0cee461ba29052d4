"""Benchmark: reads and lists as of a past instant (`make bench --parts asof`).

Starts its own SecantusDB (as the tests do) and loads the licensing service's database
with licences of 20 investors, each with the history of a DRAP decision (submitted,
under review, inspection scheduled, granted: four versions an hour apart) in its
`versions` document, as the store keeps them with each change (shared/as_of.py). Then
times, through the licensing store as its RPCs call it: the as-of read of one licence
(the goal: under 50 ms), the as-of list of every licence page by page (1,000 of them:
under 1 s), one investor's list, and a selective one (status `under_review` at an
instant when only a few were), which reads every candidate's history to fill its page.
`run(quick)` returns the figures as a dict (`--quick`: 100 and 1,000 licences),
`--json PATH` writes them. Not a test (pytest does not collect `bench_*.py`).
"""

import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from timing import run_alone

from services.licensing.contract import LICENCE_EXAMPLE, Licence
from services.licensing.store import LicenceStore

from scratch import scratch_database

SIZES = (1_000, 10_000)
QUICK_SIZES = (100, 1_000)
OWNERS = 20
READS = 50
PAGE = 200
FIRST = datetime(2024, 1, 1, tzinfo=UTC)
STEPS = ("submitted", "under_review", "inspection_scheduled", "granted")


def history(number: int) -> list[dict]:
    """The four versions of licence `number`, applied for a minute after the one before."""
    licence_id = f"lic_{ObjectId()}"
    applied = FIRST + timedelta(minutes=number)
    base = {
        **LICENCE_EXAMPLE,
        "id": licence_id,
        "owner": f"Investor {number % OWNERS}",
        "created_at": applied,
    }
    return [
        Licence.model_validate(
            {
                **base,
                "status": status,
                "version": version,
                "updated_at": applied + timedelta(hours=version - 1),
            }
        ).model_dump(mode="json")
        for version, status in enumerate(STEPS, start=1)
    ]


def load(store: LicenceStore, count: int) -> list[str]:
    ids = []
    for start in range(0, count, 1_000):
        histories = [history(number) for number in range(start, min(count, start + 1_000))]
        store.licences.insert_many(
            [LicenceStore._document(Licence.model_validate(versions[-1])) for versions in histories]
        )
        store.versions.documents.insert_many(
            [
                {
                    "_id": versions[0]["id"],
                    **{name: versions[0][name] for name in LicenceStore.FIXED},
                    "versions": [
                        {"sequence": version["version"], "state": version} for version in versions
                    ],
                }
                for versions in histories
            ]
        )
        ids += [versions[0]["id"] for versions in histories]
    return ids


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def every_page(store: LicenceStore, filters: dict, instant: datetime) -> int:
    listed, after = 0, None
    while True:
        page = store.find_as_of(dict(filters), instant, after, PAGE)
        listed += len(page)
        if len(page) < PAGE:
            return listed
        after = page[-1]["id"]


def measure(count: int, rng: random.Random) -> dict:
    with scratch_database() as client:
        db = client["bench_asof_licensing"]
        LicenceStore.ensure_indexes(db)
        store = LicenceStore(client, db)
        ids = load(store, count)
        # An instant when every licence was granted, and one when the last 30 applied
        # for were still under review or scheduled for inspection.
        everything = FIRST + timedelta(minutes=count, hours=4)
        late = FIRST + timedelta(minutes=count - 30, hours=1, seconds=30)
        reads = [timed(lambda: store.get_as_of(rng.choice(ids), everything)) for _ in range(READS)]
        listed: dict = {}
        all_ms = timed(lambda: listed.update(all=every_page(store, {}, everything)))
        one_ms = timed(
            lambda: listed.update(one=every_page(store, {"owner": "Investor 3"}, everything))
        )
        selective = {"status": "under_review"}
        first_ms = timed(
            lambda: listed.update(selective=len(store.find_as_of(dict(selective), late, None, 50)))
        )
        return {
            "licences": count,
            "events": count * len(STEPS),
            "read_ms": {
                "median": statistics.median(reads),
                "p95": sorted(reads)[int(len(reads) * 0.95) - 1],
            },
            "list_all_ms": all_ms,
            "list_all_items": listed["all"],
            "list_investor_ms": one_ms,
            "list_investor_items": listed["one"],
            "list_selective_first_page_ms": first_ms,
            "list_selective_items": listed["selective"],
        }


def run(quick: bool) -> dict:
    rng = random.Random(16)
    return {"sizes": [measure(count, rng) for count in (QUICK_SIZES if quick else SIZES)]}


if __name__ == "__main__":
    sys.exit(run_alone(__doc__, run))
