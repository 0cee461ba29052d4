"""JVREG_AMQP_URI with several addresses: the nodes of one RabbitMQ cluster, separated
by `;`, which kombu (under nameko) tries in turn."""

import pytest
from kombu import Connection
from pydantic import ValidationError

from shared.broker_users import vhost_of, with_credentials
from shared.settings import Settings, amqp_addresses

from support import amqp_uri_for

CLUSTER = "amqp://guest:guest@127.0.0.1:5701/;amqp://guest:guest@127.0.0.1:5702/"


def test_one_address_is_a_list_of_one():
    assert amqp_addresses("amqp://guest:guest@127.0.0.1:5672/") == [
        "amqp://guest:guest@127.0.0.1:5672/"
    ]


def test_several_addresses_are_taken_in_order():
    settings = Settings(amqp_uri=CLUSTER)
    assert amqp_addresses(settings.amqp_uri) == [
        "amqp://guest:guest@127.0.0.1:5701/",
        "amqp://guest:guest@127.0.0.1:5702/",
    ]


def test_kombu_fails_over_through_the_same_addresses_in_the_same_order():
    connection = Connection(CLUSTER)
    assert connection.alt == amqp_addresses(CLUSTER)
    assert connection.port == 5701
    connection.maybe_switch_next()
    assert connection.port == 5702


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("amqp://127.0.0.1:5701/; amqp://127.0.0.1:5702/", "separate the addresses"),
        ("amqp://127.0.0.1:5701/;", "separate the addresses"),
        ("amqp://127.0.0.1:5701/;http://127.0.0.1:5702/", "is not an amqp:// or amqps:// URL"),
        ("amqp://127.0.0.1:5701/;amqp:///", "is not an amqp:// or amqps:// URL"),
        ("amqp://127.0.0.1:5701/a;amqp://127.0.0.1:5702/b", "the same vhost"),
    ],
)
def test_a_wrong_list_is_refused_naming_the_setting(value, why):
    with pytest.raises(ValidationError) as raised:
        Settings(amqp_uri=value)
    assert raised.value.errors()[0]["loc"] == ("amqp_uri",)
    assert why in str(raised.value)


def test_the_default_vhost_is_named_with_or_without_its_slash():
    assert Settings(amqp_uri="amqp://127.0.0.1:5701;amqp://127.0.0.1:5702/").amqp_uri


def test_the_vhost_and_the_credentials_apply_to_every_address():
    on_vhost = amqp_uri_for(CLUSTER, "jvreg test")
    assert on_vhost == (
        "amqp://guest:guest@127.0.0.1:5701/jvreg%20test;amqp://guest:guest@127.0.0.1:5702/jvreg%20test"
    )
    assert vhost_of(on_vhost) == "jvreg test"
    assert with_credentials(on_vhost, "jvreg-licensing", "p@ss") == (
        "amqp://jvreg-licensing:p%40ss@127.0.0.1:5701/jvreg%20test;"
        "amqp://jvreg-licensing:p%40ss@127.0.0.1:5702/jvreg%20test"
    )
