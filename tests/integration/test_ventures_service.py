"""The ventures service in a real nameko container: RPC in, events out."""

import json

import eventlet
import pytest
from kombu import Connection, Queue
from nameko.standalone.rpc import ServiceRpcProxy

from ops.processes import wait_until
from services.ventures.service import VenturesService
from shared import messaging
from shared.errors import Conflict, InvalidInput, PreconditionFailed

from support import venture_body

ACTOR = {"key_id": "key_1", "role": "investor", "owner": "Lahore Pharma Holdings"}


@pytest.fixture
def ventures(service_config, container_factory):
    container = container_factory(VenturesService, service_config)
    container.start()
    store = next(d for d in container.dependencies if d.attr_name == "store")
    with ServiceRpcProxy("ventures", service_config) as proxy:
        yield proxy, store.db


@pytest.fixture
def rpc_client(service_config):
    """A fresh RPC client: a standalone proxy serves one green thread at a time."""
    return lambda: ServiceRpcProxy("ventures", service_config)


@pytest.fixture
def subscriber(amqp_uri):
    queue = Queue(
        "test-ventures-subscriber",
        exchange=messaging.events_exchange("ventures"),
        routing_key="venture.#",
        durable=True,
    )
    with Connection(amqp_uri) as connection:
        queue(connection.channel()).declare()

    def received(count: int) -> list[dict]:
        bodies = []

        def got_all():
            with Connection(amqp_uri) as connection:
                bound = queue(connection.channel())
                while (
                    message := bound.get(no_ack=True, accept=messaging.EVENT_CONTENT_TYPES)
                ) is not None:
                    bodies.append(message.payload)
            return len(bodies) >= count

        wait_until(got_all, 15, f"{count} venture events")
        return bodies

    return received


def test_every_change_is_an_event_in_sequence(ventures, subscriber):
    proxy, db = ventures
    venture = proxy.register_venture(json.dumps(venture_body("Gwadar Vaccines JV")), ACTOR)
    update = json.dumps({"description": "Fill-finish of inactivated vaccines"})
    proxy.update_venture(venture["id"], update, 1, ACTOR)
    proxy.change_venture_status(
        venture["id"], json.dumps({"to": "active", "reason": "DRAP site visit"}), ACTOR
    )
    events = subscriber(3)
    assert [(e["type"], e["sequence"]) for e in events] == [
        ("jvreg.venture.registered", 1),
        ("jvreg.venture.updated", 2),
        ("jvreg.venture.status_changed", 3),
    ]
    assert events[1]["data"]["change"]["fields"]["description"]["to"] == (
        "Fill-finish of inactivated vaccines"
    )
    assert events[2]["data"]["change"] == {
        "from": "registered",
        "to": "active",
        "reason": "DRAP site visit",
        "actor": ACTOR,
    }
    wait_until(lambda: db.event_log.count_documents({}) == 3, 15, "the event log")
    # The relay marks a record sent after the broker's confirm, which may come after
    # the event reached its consumers.
    wait_until(
        lambda: db.outbox.count_documents({"status": "sent"}) == 3, 15, "the outbox marked sent"
    )


def test_names_are_unique_case_insensitively(ventures):
    proxy, _ = ventures
    proxy.register_venture(json.dumps(venture_body("Multan Herbal Medicines")), ACTOR)
    with pytest.raises(Conflict) as caught:
        proxy.register_venture(json.dumps(venture_body("MULTAN  herbal medicines")), ACTOR)
    assert caught.value.errors[0]["loc"] == ["name"]


@pytest.mark.parametrize(
    "look_alike",
    [
        "Multan Herbal Medicine\u0455",  # Cyrillic small dze for the final s
        "\uff2dultan Herbal Medicines",  # full-width M
        "\u041cultan Herbal Medicines",  # Cyrillic capital em
        "multan herbal medicines",
    ],
)
def test_a_look_alike_of_a_registered_name_conflicts_naming_that_venture(ventures, look_alike):
    proxy, db = ventures
    first = proxy.register_venture(json.dumps(venture_body("Multan Herbal Medicines")), ACTOR)
    with pytest.raises(Conflict) as caught:
        proxy.register_venture(json.dumps(venture_body(look_alike)), ACTOR)
    assert caught.value.errors[0]["loc"] == ["name"]
    assert caught.value.extra["existing_venture"] == {"id": first["id"], "name": first["name"]}
    assert first["id"] in caught.value.detail
    assert db.ventures.count_documents({}) == 1


def test_renaming_to_a_look_alike_conflicts_too(ventures):
    proxy, _ = ventures
    first = proxy.register_venture(json.dumps(venture_body("Sialkot Surgical Devices")), ACTOR)
    second = proxy.register_venture(json.dumps(venture_body("Quetta Herbal JV")), ACTOR)
    patch = json.dumps({"name": "Sialkot Surgical Device\u0455"})
    with pytest.raises(Conflict) as caught:
        proxy.update_venture(second["id"], patch, 1, ACTOR)
    assert caught.value.extra["existing_venture"]["id"] == first["id"]


def test_invalid_input_crosses_rpc_naming_the_field(ventures):
    proxy, db = ventures
    with pytest.raises(InvalidInput) as caught:
        proxy.register_venture(json.dumps(venture_body(sector="cosmetics")), ACTOR)
    assert caught.value.errors[0]["loc"] == ["sector"]
    assert db.ventures.count_documents({}) == 0 and db.outbox.count_documents({}) == 0


def test_concurrent_updates_of_one_version_let_exactly_one_through(ventures, rpc_client):
    proxy, db = ventures
    venture = proxy.register_venture(json.dumps(venture_body("Sialkot Surgical Devices")), ACTOR)

    def update(n):
        body = json.dumps({"description": f"writer {n}"})
        try:
            with rpc_client() as writer:
                writer.update_venture(venture["id"], body, 1, ACTOR)
            return "ok"
        except PreconditionFailed:
            return "stale"

    results = list(eventlet.GreenPool(8).imap(update, range(8)))
    assert results.count("ok") == 1 and results.count("stale") == 7
    stored = db.ventures.find_one({"_id": venture["id"]})
    assert stored["version"] == 2
    assert db.outbox.count_documents({"subject": venture["id"]}) == 2


def test_a_command_delivered_twice_is_applied_once(ventures, service_config):
    """An RPC redelivered after the service crashed past its commit, or a client retrying
    with the same Idempotency-Key, carries the same command key: the second delivery
    conflicts instead of registering (and publishing) again."""
    _, db = ventures
    body = json.dumps(venture_body("Hattar Amoxicillin Works"))
    context = {"command_key": "key_1:retry-7f3a"}
    with ServiceRpcProxy("ventures", service_config, context_data=context) as proxy:
        proxy.register_venture(body, ACTOR)
        with pytest.raises(Conflict, match="already carried out"):
            proxy.register_venture(body.replace("Hattar", "Haripur"), ACTOR)
    assert db.ventures.count_documents({}) == 1
    assert db.outbox.count_documents({}) == 1
