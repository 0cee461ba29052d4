"""RPC to the registry's services with a bounded wait: a service that is down or
slow makes the gateway answer 503, never hang."""

import eventlet
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy

import shared.rpc_errors  # noqa: F401 - the services' refusals arrive as their own types
from shared.entrypoints import BROKER_GONE, RPC_PUBLISH
from shared.errors import ServiceUnavailable
from shared.messaging import SERVICES
from shared.settings import Settings

GATEWAY = "gateway"
# The services behind the gateway: its /health and /metrics ask each of them.
BACKEND_SERVICES = tuple(service for service in SERVICES if service != GATEWAY)


class BoundedServiceProxy:
    def __init__(self, proxy, service: str, timeout: float):
        self._proxy = proxy
        self._service = service
        self._timeout = timeout

    def within(self, timeout: float) -> "BoundedServiceProxy":
        return BoundedServiceProxy(self._proxy, self._service, timeout)

    def __getattr__(self, method: str):
        method_proxy = getattr(self._proxy, method)

        def call(*args, **kwargs):
            try:
                with eventlet.Timeout(self._timeout):
                    return method_proxy(*args, **kwargs)
            except eventlet.Timeout:
                raise ServiceUnavailable(
                    f"the {self._service} service did not answer within {self._timeout:g} s; "
                    "try again shortly"
                ) from None
            except UnknownService:
                raise ServiceUnavailable(f"the {self._service} service is not running") from None
            except BROKER_GONE as error:  # the request could not be sent: nothing was asked
                raise ServiceUnavailable(
                    f"the message broker is unreachable ({error}); the {self._service} "
                    "service was not asked; try again shortly"
                ) from None

        return call


class ServiceClient(RpcProxy):
    def setup(self):
        self.timeout = Settings.from_config(self.container.config).rpc_timeout_seconds
        # A request no instance picked up in time expires in the queue, so a command
        # the caller was told failed (503) is not carried out later.
        self.options["expiration"] = self.timeout  # seconds, as kombu takes it
        # Transient, but confirmed: `mandatory` then tells at once of a service whose
        # queue was never declared (UnknownService). Why transient: shared.entrypoints.
        self.options.update(RPC_PUBLISH)
        super().setup()

    def get_dependency(self, worker_ctx):
        proxy = super().get_dependency(worker_ctx)
        return BoundedServiceProxy(proxy, self.target_service, self.timeout)
