"""What a service tells of itself for the gateway's `/metrics` and `jvreg status`: the
`figures` RPC every service has through the `ServiceFigures` mixin.

A service answers what only it can see: its outbox backlog, and for each queue it
consumes, the age of the oldest event its consumers are handling now. The depth of
its queues is the broker's, which the gateway asks itself (services/gateway/metrics.py),
so that a service that is down still shows its queues filling up.

Why the age is measured here and not at the broker: quorum queues (every consumer
queue, shared.messaging) report no head-message timestamp in the management API, and
peeking at the head (basic.get, then giving the message back) counts as a return in
the message's `x-delivery-count`, so scraping a queue whose consumer is down would
dead-letter its head after BROKER_DELIVERY_LIMIT scrapes. A queue is FIFO and its
consumers hold its head (prefetched), so the oldest event they hold is its oldest
message; the age is taken from the event's CloudEvents `time`, when its change was
committed, so it includes the time the event waited in the outbox. With several
instances of a service, the answer is the one instance's that took the RPC."""

import os
import socket
from datetime import UTC, datetime

from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider
from pydantic import BaseModel, Field

from shared.entrypoints import rpc
from shared.inbox import CloudEventHandler
from shared.outbox import OutboxRelay


class Figures(BaseModel):
    """A service's answer to `figures()`."""

    service: str
    instance: str = Field(description="host:pid of the instance that answered")
    outbox_pending: int | None = Field(
        description="events committed and not yet published (None: it publishes none)"
    )
    oldest_event_seconds: dict[str, float] = Field(
        description="per queue it consumes: age of the oldest event its consumers are "
        "handling now (0: none)"
    )
    webhook_deliveries: dict[str, int] | None = Field(
        None, description="notifications only: webhook deliveries per outcome"
    )


def event_time(worker_ctx: WorkerContext) -> datetime:
    """The CloudEvents `time` of the event a consumer's worker handles, or now for a
    message that carries none (it is dead-lettered at once anyway)."""
    body = worker_ctx.args[0] if worker_ctx.args else None
    try:
        return datetime.fromisoformat(body["time"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return datetime.now(UTC)


class HeldEvents(DependencyProvider):
    """The events this instance's consumers are handling, with their queue and time,
    from each consumer worker's start to its end. (Green threads switch only on I/O,
    so the dict needs no lock.)"""

    def setup(self) -> None:
        self.held: dict[WorkerContext, tuple[str, datetime]] = {}

    def worker_setup(self, worker_ctx):
        if isinstance(worker_ctx.entrypoint, CloudEventHandler):
            self.held[worker_ctx] = (worker_ctx.entrypoint.queue.name, event_time(worker_ctx))

    def worker_teardown(self, worker_ctx):
        self.held.pop(worker_ctx, None)

    def oldest_seconds(self) -> dict[str, float]:
        consumers = [e for e in self.container.entrypoints if isinstance(e, CloudEventHandler)]
        ages = {consumer.queue.name: 0.0 for consumer in consumers}
        now = datetime.now(UTC)
        for queue, time in self.held.values():
            ages[queue] = max(ages[queue], (now - time).total_seconds())
        return ages

    def outbox_pending(self) -> int | None:
        relays = [d for d in self.container.dependencies if isinstance(d, OutboxRelay)]
        return relays[0].relay.outbox.pending_count() if relays else None

    def get_dependency(self, worker_ctx):
        return self


class ServiceFigures:
    """Mixin of every service class: the `figures` RPC. A service with figures of its
    own (notifications' webhook deliveries) overrides `own_figures`."""

    name: str  # the service class's
    held_events: HeldEvents = HeldEvents()

    def own_figures(self) -> dict:
        return {}

    @rpc
    def figures(self) -> dict:
        return Figures(
            service=self.name,
            instance=f"{socket.gethostname()}:{os.getpid()}",
            outbox_pending=self.held_events.outbox_pending(),
            oldest_event_seconds=self.held_events.oldest_seconds(),
            **self.own_figures(),
        ).model_dump(mode="json")
