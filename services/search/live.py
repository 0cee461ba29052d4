"""The instance's index as its workers use it (a nameko dependency): changes from the
event handlers are staged and committed together (a group commit: a handler returns,
and its message is acknowledged, only once its change is durable), readers wait
(bounded) for a version they were told of, and a rebuilt generation of the index
(`jvreg search rebuild`) replaces the one in use without stopping the instance.

Generations. The instance's directory (`JVREG_SEARCH_DATA_DIR/<prefix>-<instance>`) holds
`gen-*` directories and `CURRENT`, naming the one in use. A rebuild writes
`REBUILDING` (its start), builds a new generation from the event logs, then points
`CURRENT` at it. The instance notices within a second, replays into the new
generation every change it applied since a minute before the rebuild started (kept in
memory: the event logs may not have had them yet), and swaps. The changes kept for
that: the last JOURNAL_SECONDS always, and while a rebuild runs every change since a
minute before it started."""

import logging
import time
from collections import defaultdict, deque
from pathlib import Path

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from eventlet.timeout import with_timeout
from nameko.extensions import DependencyProvider

from services.search.index import Change, EarlyChange, SearchIndex, remove
from services.search.settings import CURRENT, REBUILDING, SearchSettings

log = logging.getLogger(__name__)

# Longest a list waits for a version it was told of (read your writes); then it
# answers with what the index has.
CATCH_UP_SECONDS = 2.0
# How often the instance looks for a rebuilt generation.
SWAP_POLL_SECONDS = 1.0
# Changes kept to replay into a rebuilt generation: those applied since this long
# before the rebuild started. Outside a rebuild the instance keeps the last
# JOURNAL_SECONDS of changes; during one, every change since its start less the margin.
REPLAY_MARGIN_SECONDS = 60.0
JOURNAL_SECONDS = 2 * REPLAY_MARGIN_SECONDS
# A commit gathers the changes staged while the previous one ran, and waits this long
# for more once one is staged.
GATHER_SECONDS = 0.002


def current_generation(root: Path) -> Path:
    """The generation `root/CURRENT` names, made (empty) when there is none yet."""
    root.mkdir(parents=True, exist_ok=True)
    pointer = root / CURRENT
    if pointer.exists():
        return root / pointer.read_text().strip()
    generation = root / "gen-initial"
    generation.mkdir(exist_ok=True)
    point_at(root, generation)
    return generation


def point_at(root: Path, generation: Path) -> None:
    """Make `generation` the one in use, atomically (a rename)."""
    pending = root / f"{CURRENT}.new"
    pending.write_text(generation.name + "\n")
    pending.replace(root / CURRENT)


class LiveIndex:
    def __init__(self, settings: SearchSettings):
        self.root = settings.index_root
        self.generation = current_generation(self.root)
        self.index = SearchIndex(self.generation)
        self.lock = Semaphore()
        self.batch = Event()
        self.pending = 0
        self.wake = Event()
        self.waiters: dict[str, list[tuple[int, Event]]] = defaultdict(list)
        self.journal: deque[tuple[float, Change]] = deque()
        self.rebuild_started: float | None = None
        self.applied: dict[str, int] = defaultdict(int)
        self.duplicates: dict[str, int] = defaultdict(int)
        self.last_event_time: dict[str, str | None] = {}
        self.threads: list = []

    # -- the event handlers' side --

    def apply(self, change: Change, event_time: str | None = None) -> bool:
        """Apply `change` durably: True once committed, False for a duplicate; raises
        EarlyChange when its predecessor has not been applied."""
        with self.lock:
            staged = self.index.stage(change)
            if staged:
                batch = self.batch
                self.pending += 1
                self.journal.append((time.time(), change))
                self._forget_old_changes()
                if not self.wake.ready():
                    self.wake.send()
        if not staged:
            self.duplicates[change.source] += 1
            return False
        batch.wait()  # raises what the commit raised: the message is tried again
        self.applied[change.source] += 1
        self.last_event_time[change.source] = event_time
        return True

    def _forget_old_changes(self) -> None:
        keep_since = time.time() - JOURNAL_SECONDS
        if self.rebuild_started is not None:
            keep_since = min(keep_since, self.rebuild_started - REPLAY_MARGIN_SECONDS)
        while self.journal and self.journal[0][0] < keep_since:
            self.journal.popleft()

    def committer(self) -> None:
        while True:
            self.wake.wait()
            eventlet.sleep(GATHER_SECONDS)
            with self.lock:
                self.wake = Event()
                batch, self.batch = self.batch, Event()
                committed = dict(self.index.staged)
                self.pending = 0
                try:
                    self.index.commit()
                except Exception as error:
                    log.exception("committing %d changes to the index failed", len(committed))
                    batch.send_exception(error)
                    continue
            batch.send(True)
            self._wake_waiters(committed)

    # -- readers --

    def wait_for(self, versions: dict[str, int], timeout: float = CATCH_UP_SECONDS) -> bool:
        """Wait until every id has been applied at least at its version: True when it
        was, False when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        for document_id, version in versions.items():
            if self.index.committed(document_id)[0] >= version:
                continue
            event = Event()
            self.waiters[document_id].append((version, event))
            try:
                if self.index.committed(document_id)[0] >= version:
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or with_timeout(left, event.wait, timeout_value=None) is None:
                    return False
            finally:
                waiting = self.waiters.get(document_id, [])
                if (version, event) in waiting:
                    waiting.remove((version, event))
                if not waiting:
                    self.waiters.pop(document_id, None)
        return True

    def _wake_waiters(self, committed: dict[str, int]) -> None:
        for document_id, sequence in committed.items():
            for version, event in list(self.waiters.get(document_id, [])):
                if sequence >= version and not event.ready():
                    event.send(True)

    # -- rebuilt generations --

    def watch_generations(self) -> None:
        while True:
            eventlet.sleep(SWAP_POLL_SECONDS)
            try:
                self.rebuild_started = self._rebuild_started()
                wanted = self.root / (self.root / CURRENT).read_text().strip()
                if wanted != self.generation:
                    self.swap_to(wanted)
            except Exception:
                log.exception("could not take up the rebuilt index")

    def swap_to(self, generation: Path) -> None:
        started = self._rebuild_started() or time.time() - JOURNAL_SECONDS
        with self.lock:
            # Commit what is staged: handlers wait for it.
            while self.pending:
                self.lock.release()
                eventlet.sleep(GATHER_SECONDS)
                self.lock.acquire()
            rebuilt = SearchIndex(generation)
            since = started - REPLAY_MARGIN_SECONDS
            replayed = early = 0
            for applied_at, change in list(self.journal):
                if applied_at < since:
                    continue
                try:
                    replayed += rebuilt.stage(change)
                except EarlyChange:
                    early += 1
            rebuilt.commit()
            old, self.index, self.generation = self.index, rebuilt, generation
        old.close()
        del old
        (self.root / REBUILDING).unlink(missing_ok=True)
        self.rebuild_started = None
        for stale in self.root.glob("gen-*"):
            if stale != generation:
                remove(stale)
        log.info(
            "now answering from the rebuilt index %s (%d documents; %d recent changes "
            "replayed, %d of them ahead of the event logs)",
            generation.name,
            rebuilt.count(),
            replayed,
            early,
        )

    def _rebuild_started(self) -> float | None:
        """When the rebuild under way started (epoch seconds), None when none is."""
        try:
            return float((self.root / REBUILDING).read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        self.threads = [eventlet.spawn(self.committer), eventlet.spawn(self.watch_generations)]

    def stop(self) -> None:
        for thread in self.threads:
            thread.kill()
        self.index.close()


class Index(DependencyProvider):
    """The instance's LiveIndex, one per container."""

    def setup(self) -> None:
        self.settings = SearchSettings.from_config(self.container.config)
        self.live = LiveIndex(self.settings)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def kill(self) -> None:
        self.live.stop()

    def get_dependency(self, worker_ctx) -> LiveIndex:
        return self.live
