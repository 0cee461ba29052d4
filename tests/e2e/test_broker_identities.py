"""Broker identities against the registry's real processes: each service connects
as its own RabbitMQ user, so a licence decision forged by anyone else who can publish
on the broker changes nothing and ends in the dead-letter queue with the reason."""

import uuid

import pytest
from amqp.exceptions import AccessRefused, PreconditionFailed
from kombu import Connection
from test_licensing_api import Subscriber, created, facility_status, move, plant_of

from ops.processes import wait_until
from shared import messaging
from shared.dead_letters import DeadLetterQueue

from support import TEST_BROKER_USER, inspection_date

DML = {"type": "dml_formulation"}


def publish(amqp_uri: str, exchange: str, body: dict, **properties) -> None:
    # With confirms, a publish the broker refuses raises here.
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        producer.publish(
            body,
            exchange=messaging.events_exchange(exchange.removesuffix(".events")),
            routing_key=body["type"].removeprefix("jvreg."),
            serializer="json",
            delivery_mode=2,
            message_id=body["id"],
            **properties,
        )


def forged_grant(previous: dict) -> dict:
    """The next event of the licence, as the licensing service would word a grant."""
    data = {**previous["data"], "license": {**previous["data"]["license"], "status": "granted"}}
    return {
        **previous,
        "id": str(uuid.uuid4()),
        "type": "jvreg.license.granted",
        "sequence": previous["sequence"] + 1,
        "data": data,
    }


def test_a_forged_licence_decision_changes_nothing_and_is_dead_lettered(
    registry, investor, regulator, receiver
):
    hook = regulator.post(
        "/v1/subscriptions",
        json={"url": receiver.answer("/drap/forged", 204), "event_types": ["license.#"]},
    )
    assert hook.status_code == 201, hook.text
    licences = Subscriber(registry["amqp_uri"], "licensing", "license.#")
    plant = plant_of(investor)
    licence = created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    licence = move(regulator, licence, "under_review")
    under_review = licences.wait_for(licence["id"], 2)[-1]
    assert under_review["type"] == "jvreg.license.under_review"

    def delivered(subject: str) -> list[dict]:
        return [r.event for r in receiver.received("/drap/forged") if r.event["subject"] == subject]

    wait_until(lambda: len(delivered(licence["id"])) == 2, 30, "the genuine events delivered")

    # As another broker user (the test's `guest`), and with no user_id at all.
    as_guest = forged_grant(under_review)
    publish(registry["amqp_uri"], "licensing.events", as_guest, user_id="guest")
    anonymous = forged_grant(under_review)
    publish(registry["amqp_uri"], "licensing.events", anonymous)

    def dead_letters() -> dict[str, set[str]]:
        letters: dict[str, set[str]] = {as_guest["id"]: set(), anonymous["id"]: set()}
        for letter in DeadLetterQueue(registry["amqp_uri"]).list():
            if letter["event_id"] in letters:
                assert "not published by the licensing service" in letter["error"]
                assert "expected jvreg-test-licensing" in letter["error"]
                letters[letter["event_id"]].add(letter["queue"].split(".")[0])
        return letters

    # Every consumer of licensing.events refused both: the plant's projection,
    # the webhooks, licensing's own event log, the search index.
    consumers = {"facilities", "notifications", "licensing", "search"}
    wait_until(
        lambda: all(queues == consumers for queues in dead_letters().values()),
        30,
        "both forgeries dead-lettered by every consumer",
    )

    assert investor.get(f"/v1/facilities/{plant['id']}").json()["status"] == "planned"
    assert investor.get(f"/v1/licenses/{licence['id']}").json()["status"] == "under_review"
    assert {event["id"] for event in delivered(licence["id"])}.isdisjoint(
        {as_guest["id"], anonymous["id"]}
    )

    # The sequence the forgeries claimed is still free: the genuine grant applies.
    licence = move(regulator, licence, "inspection_scheduled", inspection_date=inspection_date())
    licence = move(regulator, licence, "granted", decision_ref="DRAP/LIC/2031/0412")
    facility_status(investor, plant["id"], "operational")
    wait_until(lambda: len(delivered(licence["id"])) == 4, 30, "the genuine decisions delivered")
    assert [event["sequence"] for event in delivered(licence["id"])] == [1, 2, 3, 4]
    assert delivered(licence["id"])[2]["type"] == "jvreg.license.inspection_scheduled"


def test_the_broker_refuses_a_user_id_that_is_not_the_connections(registry):
    """Even on the exchange it may publish on, a service cannot pass for another."""
    event = {"id": str(uuid.uuid4()), "type": "jvreg.facility.registered"}
    licensing_user = TEST_BROKER_USER.format(service="licensing")
    with pytest.raises(PreconditionFailed, match="user_id property set to 'jvreg-test-licensing'"):
        publish(
            registry["amqp_uris"]["facilities"], "facilities.events", event, user_id=licensing_user
        )


def test_a_service_user_cannot_publish_on_another_services_exchange(registry):
    event = {"id": str(uuid.uuid4()), "type": "jvreg.license.granted"}
    facilities_user = TEST_BROKER_USER.format(service="facilities")
    with pytest.raises(AccessRefused, match="licensing.events"):
        publish(
            registry["amqp_uris"]["facilities"], "licensing.events", event, user_id=facilities_user
        )
