"""A loop in the background of a service container, working through what the
service's own database holds for it (outbox records to publish, webhooks to deliver).
It wakes when told (`wake`: the outbox relay by every commit that wrote outbox records),
after every worker, which may just have committed work for it, and at least every poll
interval, for work left behind by another process or falling due later."""

import logging
import os
import socket
import threading

from nameko.extensions import DependencyProvider

from shared.settings import Settings

log = logging.getLogger(__name__)


class BackgroundLoop(DependencyProvider):
    identifier = "background-loop"

    def __init__(self, store_attr: str = "store", **kwargs):
        self.store_attr = store_attr
        super().__init__(**kwargs)

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.poll_seconds = settings.relay_poll_seconds
        # Who holds a lease: unique per process and provider.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self._wake = threading.Event()
        self._running = False
        self.configure(settings)

    def start(self):
        # The store's client exists only once every provider's setup has run.
        store = next(dep for dep in self.container.dependencies if dep.attr_name == self.store_attr)
        self.begin(store)
        self._running = True
        self.container.spawn_managed_thread(self._run, identifier=self.identifier)

    def stop(self):
        self._running = False
        self.wake()

    kill = stop

    def wake(self) -> None:
        """Start a pass now (or right after the one under way)."""
        self._wake.set()

    def worker_teardown(self, worker_ctx):
        self.wake()

    @property
    def running(self) -> bool:
        return self._running

    def _run(self):
        while self._running:
            self._wake.clear()
            try:
                if self.work():
                    continue  # more is due right away
            except Exception:  # e.g. Mongo unreachable: keep the loop alive
                log.exception("%s pass failed", self.identifier)
            self._wake.wait(self.poll_seconds)

    def configure(self, settings: Settings) -> None:
        """Read what the loop needs from the settings (at setup)."""

    def begin(self, store) -> None:
        """Build the worker over the service's store (at start)."""
        raise NotImplementedError

    def work(self) -> bool:
        """One pass; True when more work is due at once."""
        raise NotImplementedError
