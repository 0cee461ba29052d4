"""The registry's RPC entrypoint on the real broker: a reply that cannot be sent (the
broker went away mid-request) is logged, and the service lives on."""

import pytest
from kombu.exceptions import OperationalError
from nameko import rpc as nameko_rpc
from nameko.exceptions import RpcTimeout
from nameko.standalone.rpc import ServiceRpcProxy

from shared.entrypoints import rpc


class CountingService:
    name = "counting"
    calls: list[str] = []

    @rpc
    def record(self, label: str) -> int:
        CountingService.calls.append(label)
        return len(CountingService.calls)


def test_a_reply_that_cannot_be_sent_leaves_the_service_running(
    service_config, container_factory, monkeypatch
):
    CountingService.calls = []
    container = container_factory(CountingService, service_config)
    container.start()
    send_response = nameko_rpc.Responder.send_response

    def broker_gone(self, result, exc_info):
        raise OperationalError("[Errno 111] ECONNREFUSED")

    monkeypatch.setattr(nameko_rpc.Responder, "send_response", broker_gone)
    with ServiceRpcProxy("counting", service_config, timeout=2) as proxy:
        with pytest.raises(RpcTimeout):
            proxy.record("lost reply")
        monkeypatch.setattr(nameko_rpc.Responder, "send_response", send_response)
        # nameko's own entrypoint would have killed the container by now.
        assert proxy.record("answered") == 2

    assert not container._died.ready()
    # Carried out once: the request whose reply was lost was acked, not run again.
    assert CountingService.calls == ["lost reply", "answered"]
