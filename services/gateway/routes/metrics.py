"""/metrics: the registry's figures in Prometheus text format (services/gateway/metrics.py),
for ops only: queue names, backlogs and instance counts describe the deployment, which
is no business of the public. Prometheus sends the ops key with
`authorization: {type: Bearer, credentials_file: …}` in its scrape config."""

import logging
from typing import Any

import eventlet
from prometheus_client.exposition import choose_encoder
from werkzeug.wrappers import Response

from services.gateway.clients import BACKEND_SERVICES
from services.gateway.metrics import (
    FIGURES_TIMEOUT_SECONDS,
    QueueState,
    Scrape,
    consumer_queues,
    queue_states,
    rpc_queue,
)
from services.gateway.routing import route
from shared import messaging
from shared.figures import Figures
from shared.settings import Settings

log = logging.getLogger(__name__)


def read_queues(amqp_uri: str, names: list[str]) -> dict[str, QueueState] | None:
    """metrics.queue_states, or None when the broker does not answer (the scrape says so)."""
    try:
        return queue_states(amqp_uri, names)
    except Exception as error:
        log.warning("/metrics could not read the queues: %r", error)
        return None


class MetricsRoutes:
    """Mixed into the gateway service, which provides `config` and a client per service."""

    config: Any  # nameko dependencies of the gateway service

    @route(
        "GET",
        "/metrics",
        summary="The registry's metrics (Prometheus text format)",
        tag="operations",
        roles=("ops",),
        response=None,
        media_type="text/plain",
    )
    def metrics(self, request, principal):
        scrape = self.scrape()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encoder(scrape), content_type=content_type)

    def scrape(self) -> Scrape:
        """The broker's queues first: a service with no instance is down without
        waiting for its answer. Then every other service's figures, asked at once."""
        queues = consumer_queues()
        names = [*queues, messaging.DEAD_LETTER_QUEUE, *map(rpc_queue, BACKEND_SERVICES)]
        amqp_uri = Settings.from_config(self.config).amqp_uri
        states = read_queues(amqp_uri, names)
        figures: dict[str, Figures | None] = dict.fromkeys(BACKEND_SERVICES)

        def ask(service: str) -> None:
            client = getattr(self, service).within(FIGURES_TIMEOUT_SECONDS)
            try:
                figures[service] = Figures.model_validate(client.figures())
            except Exception as error:  # down, or too slow: reported as down
                log.info("/metrics: no figures from %s: %s", service, error)

        pool = eventlet.GreenPool()
        for service in BACKEND_SERVICES:
            state = states.get(rpc_queue(service)) if states is not None else None
            if states is None or (state is not None and state.consumers):
                pool.spawn(ask, service)
        pool.waitall()
        # Queues only an instance can name (the search service's), from its answer.
        for service, answer in figures.items():
            for queue in answer.oldest_event_seconds if answer else ():
                queues.setdefault(queue, service)
        if states is not None and (unknown := [q for q in queues if q not in states]):
            states |= read_queues(amqp_uri, unknown) or {}
        return Scrape(figures=figures, queues=queues, states=states)
