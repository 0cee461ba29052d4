"""`jvreg broker-users` (compose's `broker-users` step): every service's broker user and
ops', with the passwords from the environment, each allowed its own exchange only."""

import uuid
from urllib.parse import quote

import pytest
from amqp.exceptions import AccessRefused
from click.testing import CliRunner
from kombu import Connection

from ops.broker import password_variable
from ops.main import cli
from shared import messaging
from shared.broker_users import with_credentials

NAMES = (*messaging.SERVICES, messaging.OPS)


@pytest.fixture
def users(backends, rabbit_management, amqp_uri, monkeypatch):
    """Runs the command on this test's vhost with users of this test's own names;
    returns each name's AMQP URI. The users are removed afterwards."""
    template = f"jvreg-cmdtest{uuid.uuid4().hex[:6]}-{{service}}"
    monkeypatch.setenv("JVREG_AMQP_URI", amqp_uri)
    monkeypatch.setenv("JVREG_BROKER_ADMIN_URL", backends["management_url"])
    monkeypatch.setenv("JVREG_BROKER_USER", template)
    passwords = {name: uuid.uuid4().hex for name in NAMES}
    for name, password in passwords.items():
        monkeypatch.setenv(password_variable(name), password)
    result = CliRunner().invoke(cli, ["broker-users"])
    yield (
        result,
        {
            name: with_credentials(amqp_uri, template.format(service=name), passwords[name])
            for name in NAMES
        },
    )
    for name in NAMES:
        user = quote(template.format(service=name), safe="")
        rabbit_management.call("DELETE", f"users/{user}")


def publish(uri: str, exchange: str, user: str) -> None:
    with Connection(uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        messaging.events_exchange(exchange.split(".")[0])(channel).declare()
        connection.Producer(channel).publish(
            {}, exchange=exchange, routing_key="license.granted", user_id=user
        )


def test_every_service_gets_a_user_that_publishes_only_on_its_own_exchange(users):
    result, uris = users
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == len(NAMES)
    licensing_user = uris["licensing"].split("//")[1].split(":")[0]
    publish(uris["licensing"], "licensing.events", licensing_user)
    with pytest.raises(AccessRefused):
        publish(
            uris["facilities"],
            "licensing.events",
            licensing_user.replace("licensing", "facilities"),
        )


def test_a_missing_password_is_named_and_nothing_is_created(monkeypatch, backends, amqp_uri):
    monkeypatch.setenv("JVREG_AMQP_URI", amqp_uri)
    monkeypatch.setenv("JVREG_BROKER_ADMIN_URL", backends["management_url"])
    for name in NAMES:
        monkeypatch.setenv(password_variable(name), "x" * 24)
    monkeypatch.delenv(password_variable("licensing"))
    result = CliRunner().invoke(cli, ["broker-users"])
    assert result.exit_code == 1
    assert "JVREG_BROKER_PASSWORD_LICENSING" in result.output
    assert ": ok" not in result.output
