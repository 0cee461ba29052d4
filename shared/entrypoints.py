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
  keeps it to one effect."""

import logging

from kombu.exceptions import OperationalError
from nameko import messaging
from nameko.rpc import Rpc, RpcConsumer

from shared.errors import RegistryError

log = logging.getLogger(__name__)
# What a publish, ack or requeue raises when the broker went away.
BROKER_GONE = (OperationalError, ConnectionError, OSError)


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


class RegistryRpcConsumer(RpcConsumer):
    queue_consumer = QueueConsumer()


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
