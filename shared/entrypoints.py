"""nameko's RPC entrypoint, with two changes every service needs:

- a RegistryError (not found, conflict, invalid input...) is an answer to the caller,
  not a failure of the service: nameko logs it as expected instead of as an error;
- a reply that cannot be sent because the broker went away is logged, not raised.
  nameko's own entrypoint raises, and an exception in a worker's result handler kills
  the whole container: a RabbitMQ restart during a request would end the service
  process. The request was carried out; only its answer is lost (the caller gets its
  503 when its bounded wait ends). The request is acked if its channel still lives;
  if the broker went away, it delivers the request again once the service has
  reconnected, and a command still runs once (its command key is recorded with its
  effect, shared.mongo)."""

import logging

from kombu.exceptions import OperationalError
from nameko.rpc import Rpc

from shared.errors import RegistryError

log = logging.getLogger(__name__)


class RegistryRpc(Rpc):
    def handle_result(self, message, worker_ctx, result, exc_info):
        try:
            return super().handle_result(message, worker_ctx, result, exc_info)
        except (OperationalError, ConnectionError, OSError) as error:
            log.warning("could not reply to %s: %r", worker_ctx.call_id, error)
            self.rpc_consumer.queue_consumer.ack_message(message)
            return result, exc_info


rpc = RegistryRpc.decorator(expected_exceptions=RegistryError)
