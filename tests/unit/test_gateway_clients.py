"""The gateway's bounded RPC client (services/gateway/clients.py): whatever keeps a
service from answering is a 503 the caller can retry, never a 500."""

import errno

import eventlet
import pytest
from kombu.exceptions import OperationalError
from nameko.exceptions import UnknownService

from services.gateway.clients import BoundedServiceProxy
from shared.errors import ServiceUnavailable


class Proxy:
    """A service proxy whose one method does what `effect` does."""

    def __init__(self, effect):
        self.effect = effect

    def caught_up_with_licence(self, *args):
        return self.effect()


def raises(error):
    def effect():
        raise error

    return effect


@pytest.mark.parametrize(
    ("effect", "said"),
    [
        (
            raises(OperationalError(f"[Errno {errno.ECONNREFUSED}] ECONNREFUSED")),
            "the message broker is unreachable",
        ),
        (raises(ConnectionResetError(errno.ECONNRESET, "reset")), "message broker"),
        (raises(UnknownService("facilities")), "the facilities service is not running"),
        (lambda: eventlet.sleep(1), "did not answer within 0.05 s"),
    ],
)
def test_a_service_that_cannot_answer_is_unavailable(effect, said):
    client = BoundedServiceProxy(Proxy(effect), "facilities", timeout=0.05)
    with pytest.raises(ServiceUnavailable, match=said):
        client.caught_up_with_licence("lic_1", "dml_formulation", 3)


def test_an_answer_passes_through():
    client = BoundedServiceProxy(Proxy(lambda: True), "facilities", timeout=1)
    assert client.caught_up_with_licence("lic_1", "dml_formulation", 3) is True
