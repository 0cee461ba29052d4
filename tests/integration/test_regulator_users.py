"""`jvreg regulators add`: a regulator's broker user reads its own queues, bound to the
licensing exchange, and nothing else."""

import uuid
from urllib.parse import quote

import pytest
from amqp.exceptions import AccessRefused
from click.testing import CliRunner
from kombu import Connection, Producer, Queue

from ops.main import cli
from ops.watch import declare, regulator_queue
from shared import messaging


@pytest.fixture
def regulator(backends, rabbit_management, amqp_uri, monkeypatch):
    """`jvreg regulators add` on this test's vhost; the user is removed afterwards."""
    name = f"drap-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("JVREG_AMQP_URI", amqp_uri)
    monkeypatch.setenv("JVREG_BROKER_ADMIN_URL", backends["management_url"])
    result = CliRunner().invoke(cli, ["regulators", "add", name])
    assert result.exit_code == 0, result.output
    printed = dict(line.split(":", 1) for line in result.output.splitlines())
    yield name, printed["AMQP URI"].strip(), result.output
    rabbit_management.call("DELETE", f"users/{quote(f'jvreg-regulator-{name}', safe='')}")


def test_a_regulator_reads_its_own_queue_and_nothing_else(regulator, amqp_uri):
    name, regulator_uri, output = regulator
    assert f"broker user: jvreg-regulator-{name}" in output
    # Again: the password is never shown twice.
    assert CliRunner().invoke(cli, ["regulators", "add", name]).exit_code == 1
    with Connection(amqp_uri) as registry:  # the licensing service's side
        channel = registry.channel()
        messaging.events_exchange("licensing")(channel).declare()
        messaging.event_log_queue("licensing")(channel).declare()

    own = regulator_queue(f"regulator.{name}.decisions", "licensing.events", "license.#")
    with Connection(regulator_uri) as connection:
        declare(connection.channel(), own)
        assert own(connection.channel()).get() is None  # it may read it

    refused = [
        # Another regulator's queue, a service's queue, publishing a decision.
        lambda channel: Queue(f"regulator.other-{name}.decisions")(channel).declare(),
        lambda channel: messaging.event_log_queue("licensing")(channel).get(),
        lambda channel: Producer(channel).publish(
            {}, exchange="licensing.events", routing_key="license.granted"
        ),
        # Binding to another service's exchange.
        lambda channel: declare(
            channel, regulator_queue(f"regulator.{name}.ventures", "ventures.events", "#")
        ),
    ]
    for attempt in refused:
        confirmed = Connection(regulator_uri, transport_options={"confirm_publish": True})
        with confirmed as connection, pytest.raises(AccessRefused):
            attempt(connection.channel())
