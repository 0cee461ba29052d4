"""Read-your-writes (docs/architecture.md §5.7): a service that knows another service's
aggregates only from their events is told, with a command, the version of the aggregate
the caller read from its owner (the consistency token: the aggregate's event
`sequence`), and waits, bounded, until its projection has applied that sequence. It is
woken by a change stream on the projection's collection, not by polling; the stream also
sees another instance's consumer applying the event."""

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import eventlet
from eventlet.greenthread import GreenThread
from eventlet.queue import Empty, LightQueue
from nameko.extensions import DependencyProvider, SharedExtension
from pymongo.errors import PyMongoError

from shared.errors import ServiceUnavailable
from shared.mongo import connect
from shared.settings import Settings

log = logging.getLogger(__name__)

# The longest a command waits for its projection: well under the gateway's RPC timeout
# (and at most half of it), so the caller hears this service's 503 with its reason
# rather than a timeout.
CATCH_UP_SECONDS = 3.0
# What a 503 after the bound asks the client to wait before trying again (Retry-After).
RETRY_AFTER_SECONDS = 1
# Pause before reopening a change stream that failed (e.g. the database restarting).
REOPEN_PAUSE_SECONDS = 1.0


def sequence_in(change: dict, field: str) -> int | None:
    """The sequence a change event wrote (an upsert's, a replacement's or an update's),
    or None when it did not write one (a counter of the projection changing)."""
    written = change.get("fullDocument") or change.get("updateDescription", {}).get(
        "updatedFields", {}
    )
    return written.get(field)


class Waiting(SharedExtension):
    """How many of the container's workers wait for a projection, over all its watches.

    A wait holds a worker, and the container's prefetch slot with it; the consumer that
    applies the awaited event needs one too. So at most half of the workers wait at
    once: beyond that a command that would have to wait is answered 503 at once, rather
    than every worker waiting for an event none is left to apply."""

    def setup(self) -> None:
        self.limit = max(1, self.container.max_workers // 2)
        self.count = 0

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Whether this worker may wait; while it may, it counts."""
        if self.count >= self.limit:
            yield False
            return
        self.count += 1
        try:
            yield True
        finally:
            self.count -= 1


class ProjectionWatch(DependencyProvider):
    """One change stream on a projection collection of this service's database, for
    the whole process, in a background green thread, and the commands waiting on it."""

    waiting = Waiting()

    def __init__(self, collection: str, aggregate: str, sequence_field: str = "sequence"):
        super().__init__()
        self.collection_name = collection
        self.aggregate = aggregate
        self.sequence_field = sequence_field

    def setup(self) -> None:
        settings = Settings.from_config(self.container.config)
        self.bound = min(CATCH_UP_SECONDS, settings.rpc_timeout_seconds / 2)
        self.client = connect(settings.mongo_uri, appname=f"{self.container.service_name}-watch")
        database = self.client[settings.database_name(self.container.service_name)]
        self.collection = database[self.collection_name]
        self.waiters: defaultdict[str, set[LightQueue]] = defaultdict(set)
        self.stopping = False
        self.watcher: GreenThread | None = None

    def start(self) -> None:
        self.watcher = self.container.spawn_managed_thread(
            self._watch, f"watch {self.collection_name}"
        )

    def stop(self) -> None:
        self.stopping = True
        if self.watcher is not None:
            self.watcher.kill()  # it is waiting for the next change, which may never come
        self.client.close()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> "ProjectionWatch":
        return self

    def applied(self, key: str) -> int:
        """The sequence of `key` the projection has applied (0: none)."""
        doc = self.collection.find_one({"_id": key}, {self.sequence_field: 1})
        return doc.get(self.sequence_field, 0) if doc else 0

    def wait_for(self, key: str, sequence: int) -> bool:
        """Whether the projection has applied `sequence` of aggregate `key`, waiting up to
        the bound for it; False at once when too many workers wait already (Waiting)."""
        deadline = time.monotonic() + self.bound
        # Registered before reading, so a change landing in between still wakes it.
        with self._waiting(key) as changes:
            applied = self.applied(key)
            if applied >= sequence:
                return True
            with self.waiting.slot() as may_wait:
                while may_wait and applied < sequence:
                    try:
                        written = changes.get(timeout=max(0.0, deadline - time.monotonic()))
                    except Empty:
                        return False
                    applied = self.applied(key) if written is None else max(applied, written)
                return applied >= sequence

    def require(self, key: str, sequence: int) -> None:
        """Wait for `sequence` of `key` (wait_for), or refuse the command: 503, nothing
        written, with the seconds after which to try again."""
        if not self.wait_for(key, sequence):
            raise ServiceUnavailable(
                f"the {self.container.service_name} service has not yet learned of "
                f"{self.aggregate} {key} version {sequence} (it learns of it from events); "
                f"retry in {RETRY_AFTER_SECONDS} s",
                extra={"retry_after": RETRY_AFTER_SECONDS},
            )

    @contextmanager
    def _waiting(self, key: str) -> Iterator[LightQueue]:
        changes = LightQueue()
        self.waiters[key].add(changes)
        try:
            yield changes
        finally:
            self.waiters[key].discard(changes)
            if not self.waiters[key]:
                del self.waiters[key]

    def _wake(self, key: str, written: int | None) -> None:
        for changes in list(self.waiters.get(key, ())):
            changes.put(written)

    def _watch(self) -> None:
        while not self.stopping:
            try:
                with self.collection.watch() as stream:
                    # A change made while no stream was open: every waiter reads again.
                    for key in list(self.waiters):
                        self._wake(key, None)
                    for change in stream:
                        written = sequence_in(change, self.sequence_field)
                        self._wake(change["documentKey"]["_id"], written)
            except PyMongoError as error:
                if self.stopping:
                    return
                log.warning(
                    "the change stream on %s failed (%r); reopening it",
                    self.collection_name,
                    error,
                )
                eventlet.sleep(REOPEN_PAUSE_SECONDS)
