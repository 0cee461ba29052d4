"""What the gateway's `/metrics` exposes (Prometheus text format, with prometheus-client):
its own HTTP requests, measured by a WSGI middleware around its application, and the
registry's figures, gathered at each scrape (services/gateway/routes/metrics.py):

- from the broker, by a passive declare of each queue (it reads no message and needs no
  permission on the queue): the messages waiting in every consumer queue and in the
  dead letters, the consumers of each, and each service's instances (the consumers of
  its RPC queue);
- from each service, by its `figures` RPC (shared/figures.py): its outbox backlog, the
  age of the oldest event its consumers hold, notifications' webhook deliveries. A
  service that does not answer within FIGURES_TIMEOUT_SECONDS is reported down; the
  scrape still answers."""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from amqp.exceptions import NotFound
from kombu import Connection, Queue
from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import ClosingIterator

from services.gateway.asyncapi import CONTRACTS, INSTANCE
from shared import messaging
from shared.figures import Figures

# A scrape waits this long for each service's figures (all asked at once), and for the
# broker: Prometheus' default scrape timeout is 10 s.
FIGURES_TIMEOUT_SECONDS = 2
BROKER_TIMEOUT_SECONDS = 2

REQUEST_SECONDS = Histogram(
    "jvreg_http_request_duration_seconds",
    "Gateway requests, from arrival to the end of the answer, per method, route (as "
    "the gateway declares it; 'unmatched' when none matched) and status; "
    "_count is the number of requests",
    ("method", "route", "status"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNMATCHED = "unmatched"
# Any other method is counted as OTHER: a label must not take whatever a client sends.
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
OTHER = "other"


class RequestMetrics:
    """WSGI middleware timing each request of `app` (a nameko WsgiApp, whose url_map
    names the route), up to the end of its answer, streamed ones included."""

    def __init__(self, app):
        self.app = app
        self.url_map = app.url_map

    def route_of(self, environ) -> str:
        try:
            rule, _ = self.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:  # 404, 405: the app answers it
            return UNMATCHED
        return rule.rule

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ["REQUEST_METHOD"] if environ["REQUEST_METHOD"] in METHODS else OTHER
        route = self.route_of(environ)
        statuses: list[str] = []

        def start(status: str, headers, exc_info=None):
            statuses.append(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        def observe() -> None:
            status = statuses[-1] if statuses else "500"
            REQUEST_SECONDS.labels(method, route, status).observe(time.perf_counter() - started)

        return ClosingIterator(self.app(environ, start), observe)


@dataclass(frozen=True)
class QueueState:
    messages: int  # ready to be delivered (not those a consumer holds)
    consumers: int


def queue_states(amqp_uri: str, names: Iterable[str]) -> dict[str, QueueState]:
    """Of each queue in `names` that exists, its messages and consumers."""
    states = {}
    with Connection(amqp_uri, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
        channel = connection.channel()
        for name in names:
            try:
                _, messages, consumers = Queue(name)(channel).queue_declare(passive=True)
            except NotFound:  # not declared (yet); the broker closed the channel
                channel = connection.channel()
                continue
            states[name] = QueueState(messages, consumers)
    return states


def rpc_queue(service: str) -> str:
    return f"rpc-{service}"


def consumer_queues() -> dict[str, str]:
    """The consumer queues the contracts name, each with the service consuming it: every
    subscription's and every publisher's event log. Per-instance queues (the search
    service's) are known from the instances' own figures."""
    queues = {}
    for contract in CONTRACTS:
        for subscription in contract.SUBSCRIPTIONS:
            if INSTANCE not in subscription.queue:
                queues[subscription.queue] = contract.SERVICE
        if contract.EVENTS:
            queues[messaging.event_log_queue(contract.SERVICE).name] = contract.SERVICE
    return queues


@dataclass
class Scrape:
    """What one scrape found, as a prometheus-client collector: the gateway's own
    metrics (REGISTRY) and the registry's figures."""

    figures: dict[str, Figures | None]  # per service; None: it did not answer
    queues: dict[str, str] = field(default_factory=dict)  # queue -> consuming service
    states: dict[str, QueueState] | None = None  # None: the broker did not answer

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self.service_metrics()
        yield from self.queue_metrics()
        deliveries = GaugeMetricFamily(
            "jvreg_webhook_deliveries",
            "Webhook deliveries per outcome: pending (not tried yet), retrying, "
            "delivered, failed (retries exhausted), cancelled",
            labels=["outcome"],
        )
        notifications = self.figures.get("notifications")
        for outcome, count in sorted(
            (notifications and notifications.webhook_deliveries or {}).items()
        ):
            deliveries.add_metric([outcome], count)
        yield deliveries

    def service_metrics(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "jvreg_service_up",
            f"1 when the service answered its figures within {FIGURES_TIMEOUT_SECONDS} s",
            labels=["service"],
        )
        instances = GaugeMetricFamily(
            "jvreg_service_instances",
            "Instances of the service: consumers of its RPC queue",
            labels=["service"],
        )
        outbox = GaugeMetricFamily(
            "jvreg_outbox_pending_events",
            "Events committed by the service and not yet published (its outbox backlog)",
            labels=["service"],
        )
        for service, figures in self.figures.items():
            up.add_metric([service], 0 if figures is None else 1)
            if self.states is not None:
                state = self.states.get(rpc_queue(service))
                instances.add_metric([service], state.consumers if state else 0)
            if figures is not None and figures.outbox_pending is not None:
                outbox.add_metric([service], figures.outbox_pending)
        yield from (up, instances, outbox)

    def queue_metrics(self) -> Iterator[Metric]:
        broker = GaugeMetricFamily(
            "jvreg_broker_up", "1 when RabbitMQ answered this scrape's queue declares"
        )
        broker.add_metric([], 0 if self.states is None else 1)
        yield broker
        if self.states is None:
            return
        if (dead := self.states.get(messaging.DEAD_LETTER_QUEUE)) is not None:
            yield GaugeMetricFamily(
                "jvreg_dead_letters",
                f"Messages in the dead-letter queue {messaging.DEAD_LETTER_QUEUE} (jvreg dlq list)",
                value=dead.messages,
            )
        messages = GaugeMetricFamily(
            "jvreg_queue_messages",
            "Messages waiting in a consumer queue (ready; not those its consumers hold)",
            labels=["queue", "service"],
        )
        consumers = GaugeMetricFamily(
            "jvreg_queue_consumers", "Consumers of a consumer queue", labels=["queue", "service"]
        )
        for queue, service in sorted(self.queues.items()):
            if (state := self.states.get(queue)) is not None:
                messages.add_metric([queue, service], state.messages)
                consumers.add_metric([queue, service], state.consumers)
        oldest = GaugeMetricFamily(
            "jvreg_queue_oldest_message_age_seconds",
            "Age (since its change was committed) of the oldest event the queue's "
            "consumers are handling now: 0 when they hold none",
            labels=["queue", "service"],
        )
        for service, figures in sorted(self.figures.items()):
            for queue, seconds in sorted((figures.oldest_event_seconds if figures else {}).items()):
                oldest.add_metric([queue, service], seconds)
        yield from (messages, consumers, oldest)
