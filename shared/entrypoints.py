"""nameko's queue consumer and RPC entrypoint, with what every service needs to live
through a broker outage, and what it answers:

- a RegistryError (not found, conflict, invalid input...) is an answer to the caller,
  not a failure of the service: nameko logs it as expected instead of as an error;
- a reply that cannot be sent because the broker went away is logged, not raised.
  nameko's own entrypoint raises, and an exception in a worker's result handler kills
  the whole container: a RabbitMQ restart during a request would end the service
  process. The request was carried out; only its answer is lost (the caller gets its
  503 when its bounded wait ends). The request is acked if its channel still lives;
  if the broker went away, it delivers the request again once the service has
  reconnected, and a command still runs once (its command key is recorded with its
  effect, shared.mongo);
- an ack or requeue on a connection that just dropped is logged, not raised (nameko
  only expects amqp's own ConnectionError there, not the socket's errors): the broker
  delivers every message of a dead connection again, and the inbox or the command key
  keeps it to one effect;
- every worker runs, and logs, under the correlation id of what it serves
  (CorrelatedContainer, shared.logs), and says in one line what it did;
- RPC messages, requests (gateway.clients) and replies alike, are transient, and
  replies are published without waiting for the broker's confirm (`RPC_PUBLISH`). A
  lost request or reply (a broker crash) costs the caller only its bounded wait, a
  503 it may retry, and a command retried is still applied once by its key (or its
  Idempotency-Key); persisting and confirming them cost every call a disk write and a
  round trip (issue 12). Events, which must not be lost, go through the outbox."""

import logging
import time
from contextvars import ContextVar
from typing import Any

from kombu.exceptions import OperationalError
from nameko import messaging
from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    DEFAULT_SERIALIZER,
    LOGIN_METHOD_CONFIG_KEY,
    SERIALIZER_CONFIG_KEY,
)
from nameko.containers import ServiceContainer, WorkerContext
from nameko.rpc import Responder, Rpc, RpcConsumer, get_rpc_exchange
from nameko.timer import Timer
from nameko.web.handlers import HttpRequestHandler

import shared.rpc_errors  # noqa: F401 - a refusal reaches the caller as its own type
from shared.errors import RegistryError
from shared.logs import CORRELATION_ID, current_correlation_id, new_correlation_id

log = logging.getLogger(__name__)
# What a publish, ack or requeue raises when the broker went away.
BROKER_GONE = (OperationalError, ConnectionError, OSError)
# Probes that come every few seconds (compose's healthchecks, /metrics scrapes) log below INFO.
PROBES = {"ping", "health", "figures"}
worker_started: ContextVar[float] = ContextVar("worker_started")


class QueueConsumer(messaging.QueueConsumer):
    def ack_message(self, message):
        try:
            super().ack_message(message)
        except BROKER_GONE as error:
            log.warning("could not ack a message (%r); the broker will deliver it again", error)

    def requeue_message(self, message):
        try:
            super().requeue_message(message)
        except BROKER_GONE as error:
            log.warning("could not requeue a message (%r); the broker returns it", error)


# How RPC requests and replies are published (the module's docstring says why).
TRANSIENT = 1
RPC_PUBLISH = {"delivery_mode": TRANSIENT}


class ReplyPublisher(Publisher):
    delivery_mode = TRANSIENT
    use_confirms = False


class RegistryResponder(Responder):
    publisher_cls = ReplyPublisher


class RegistryRpcConsumer(RpcConsumer):
    queue_consumer = QueueConsumer()

    def handle_result(self, message, result, exc_info):
        """nameko's, replying through RegistryResponder."""
        config = self.container.config
        responder = RegistryResponder(
            config[AMQP_URI_CONFIG_KEY],
            get_rpc_exchange(config),
            config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER),
            message,
            ssl=config.get(AMQP_SSL_CONFIG_KEY),
            login_method=config.get(LOGIN_METHOD_CONFIG_KEY),
        )
        result, exc_info = responder.send_response(result, exc_info)
        self.queue_consumer.ack_message(message)
        return result, exc_info


class RegistryRpc(Rpc):
    rpc_consumer = RegistryRpcConsumer()

    def handle_result(self, message, worker_ctx, result, exc_info):
        try:
            return super().handle_result(message, worker_ctx, result, exc_info)
        except BROKER_GONE as error:
            log.warning("could not reply to %s: %r", worker_ctx.call_id, error)
            self.rpc_consumer.queue_consumer.ack_message(message)
            return result, exc_info


rpc = RegistryRpc.decorator(expected_exceptions=RegistryError)


class CorrelatedContainer(ServiceContainer):
    """nameko's container, running each worker under the correlation id of what it
    serves (its RPC's or HTTP request's context data; a timer's worker gets a new one)
    and logging one line when a worker other than an HTTP request's is done (those have
    the web server's access line). Installed by deploy/config.yaml
    (SERVICE_CONTAINER_CLS); nameko calls these hooks in the worker's green thread. A
    dependency provider's worker_setup could do the same, but would have to be declared
    on every service class; this is one place for all of them."""

    def _worker_setup(self, worker_ctx: WorkerContext) -> None:
        correlation_id = worker_ctx.data.get(CORRELATION_ID) or new_correlation_id()
        worker_ctx.data[CORRELATION_ID] = correlation_id  # carried on by its RPC calls
        current_correlation_id.set(correlation_id)
        worker_started.set(time.monotonic())
        super()._worker_setup(worker_ctx)

    def _worker_result(self, worker_ctx: WorkerContext, result: Any, exc_info: Any) -> None:
        # A failure is logged by nameko: one line if expected (shared.refusals).
        entrypoint = worker_ctx.entrypoint
        if exc_info is None and not isinstance(entrypoint, HttpRequestHandler):
            quiet = isinstance(entrypoint, Timer) or entrypoint.method_name in PROBES
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s in %.0f ms",
                what_was_done(worker_ctx),
                (time.monotonic() - worker_started.get()) * 1000,
            )
        super()._worker_result(worker_ctx, result, exc_info)


def what_was_done(worker_ctx: WorkerContext) -> str:
    """`licensing.transition answered`, `facilities.follow_licence handled
    jvreg.license.granted lic_… #3`."""
    name = f"{worker_ctx.service_name}.{worker_ctx.entrypoint.method_name}"
    event = worker_ctx.args[0] if worker_ctx.args else None
    if isinstance(event, dict) and {"type", "subject", "sequence"} <= event.keys():
        return f"{name} handled {event['type']} {event['subject']} #{event['sequence']}"
    return f"{name} answered"
