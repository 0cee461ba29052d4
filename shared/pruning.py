"""Bookkeeping kept for a while and then deleted: sent outbox records (shared.outbox)
and command keys (shared.mongo).

Not by a TTL index: SecantusDB, the embedded default, runs its TTL monitor every minute
by walking every document of each TTL-indexed collection under its storage lock (7-9 s
at 200,000 documents, during which every other operation of every service waits).
Instead each record carries the hour it falls due (`prune_hour`: the first whole hour
after it expires), and the service's store deletes, once a minute, the records whose
hour has come: by `$in` over the past hours on an index, a batch at a time."""

import logging
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING
from pymongo.collection import Collection

log = logging.getLogger(__name__)

PRUNE_HOUR = "prune_hour"
# How far back a pruner looks for hours not yet pruned: a service stopped for longer
# leaves the records of the hours it missed (delete them by hand, or widen this).
LOOKBACK_HOURS = 7 * 24
# Records deleted with one write: the database locks the collection for the statement,
# and commits write to it, so it is kept short.
BATCH = 200
# How often the store prunes when the last pass found less than a batch.
EVERY = timedelta(minutes=1)


def due_hour(expires: datetime) -> datetime:
    """The hour in which a record expiring at `expires` is deleted."""
    return expires.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


class Pruning:
    """The records of `collection` whose prune hour has come, deleted a batch at a time."""

    def __init__(self, collection: Collection):
        self.collection = collection

    @staticmethod
    def ensure_index(collection: Collection) -> None:
        # Sparse: only records that will be deleted carry the field (not pending ones).
        collection.create_index([(PRUNE_HOUR, ASCENDING)], sparse=True)

    def prune(self, now: datetime | None = None) -> int:
        """Delete up to BATCH records due by `now`; returns how many."""
        hour = due_hour(now or datetime.now(UTC)) - timedelta(hours=1)
        hours = [hour - timedelta(hours=n) for n in range(LOOKBACK_HOURS)]
        due = self.collection.find({PRUNE_HOUR: {"$in": hours}}, {"_id": 1}).limit(BATCH)
        ids = [record["_id"] for record in due]
        if ids:
            self.collection.delete_many({"_id": {"$in": ids}})
        return len(ids)

    def prune_all(self, now: datetime | None = None) -> int:
        """Delete every record due by `now`, a batch at a time; returns how many."""
        pruned = 0
        while (deleted := self.prune(now)) == BATCH:
            pruned += deleted
        return pruned + deleted
