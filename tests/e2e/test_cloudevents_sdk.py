"""Every event the registry publishes is a CloudEvent to the CNCF CloudEvents SDK: its
auto-detecting RabbitMQ reader (structured or binary mode, chosen from the message's
content type) reads each one captured while a venture goes from registration to a
granted licence and an investment."""

import json
import uuid
from dataclasses import dataclass

from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_rabbitmq_event
from kombu import Connection, Queue, binding

from ops.processes import wait_until
from services.gateway.asyncapi import CONTRACTS
from shared import messaging
from shared.contract import EventPayload

from support import PLANT, created, venture_body

# Every event type's payload model, by routing key, from the producers' contracts.
PAYLOADS = {key: model for contract in CONTRACTS for key, model in contract.EVENTS.items()}
# The services that publish events, each to its `<service>.events` exchange.
PUBLISHERS = [contract.SERVICE for contract in CONTRACTS if contract.EVENTS]
# A rate of its own: FX rates are registry-wide, and the investment reports' tests
# compute with the PKR and CNY rates of their worked example.
RATE_CURRENCY, RATE_DAY = "HKD", "2025-02-14"


@dataclass(frozen=True)
class Captured:
    """A message as the broker delivered it, undecoded."""

    routing_key: str
    message_id: str | None
    content_type: str | None
    headers: dict[str, str]
    body: bytes

    def as_rabbitmq_message(self) -> RabbitMQMessage:
        return RabbitMQMessage(headers=self.headers, content_type=self.content_type, body=self.body)


class Capture:
    """A throw-away queue bound with `#` to every publisher's exchange."""

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        self.queue = Queue(
            f"e2e-cloudevents-{uuid.uuid4().hex[:8]}",
            bindings=[binding(messaging.events_exchange(s), routing_key="#") for s in PUBLISHERS],
            auto_delete=False,
        )
        with Connection(amqp_uri) as connection:
            self.queue(connection.channel()).declare()
        self.messages: list[Captured] = []

    def drain(self) -> None:
        with Connection(self.amqp_uri) as connection:
            bound = self.queue(connection.channel())
            while (message := bound.get(no_ack=True)) is not None:
                self.messages.append(
                    Captured(
                        routing_key=message.delivery_info["routing_key"],
                        message_id=message.properties.get("message_id"),
                        content_type=message.content_type,
                        headers={k: str(v) for k, v in (message.headers or {}).items()},
                        body=message.body,
                    )
                )

    def wait_for(self, expected: set[tuple[str, str]]) -> None:
        """Until a message of each (routing key, subject) has arrived (read as plain
        JSON here, so that the SDK's verdict on each message is the test's assertion)."""

        def arrived() -> bool:
            self.drain()
            seen = {(m.routing_key, json.loads(m.body).get("subject")) for m in self.messages}
            return expected <= seen

        wait_until(arrived, 60, f"events {sorted(expected)}")


def move(regulator, licence_id: str, to: str, **fields) -> dict:
    response = regulator.post(
        f"/v1/licenses/{licence_id}/transitions",
        json={"to": to, "reason": f"DRAP decided: {to}", **fields},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_sdk_reads_every_event_of_a_venture_from_registration_to_investment(
    registry, investor, regulator, ops
):
    capture = Capture(registry["amqp_uri"])

    venture = created(investor, "/v1/ventures", venture_body())
    updated = investor.patch(
        f"/v1/ventures/{venture['id']}",
        json={"description": "Paracetamol and amoxicillin APIs for DRAP-registered makers"},
        headers={"If-Match": '"1"'},
    )
    assert updated.status_code == 200, updated.text
    activated = ops.post(
        f"/v1/ventures/{venture['id']}/status",
        json={"to": "active", "reason": "DRAP site verification completed"},
    )
    assert activated.status_code == 200, activated.text
    plant = created(investor, f"/v1/ventures/{venture['id']}/facilities", PLANT)
    licence = created(
        investor, "/v1/licenses", {"type": "dml_formulation", "facility_id": plant["id"]}
    )
    move(regulator, licence["id"], "under_review")
    move(regulator, licence["id"], "inspection_scheduled", inspection_date="2026-05-04")
    move(regulator, licence["id"], "granted", decision_ref="DRAP/LIC/2026/0412")
    rate = ops.put(f"/v1/fx-rates/{RATE_CURRENCY}/{RATE_DAY}", json={"usd_per_unit": "0.1282"})
    assert rate.status_code in (200, 201), rate.text
    flow = created(
        investor,
        f"/v1/ventures/{venture['id']}/investments",
        {
            "type": "commitment",
            "partner": "Zhejiang Yangtze Pharmaceutical Co.",
            "amount": "20000000.00",
            "currency": RATE_CURRENCY,
            "value_date": RATE_DAY,
        },
    )

    expected = {
        ("venture.registered", venture["id"]),
        ("venture.updated", venture["id"]),
        ("venture.status_changed", venture["id"]),
        ("facility.registered", plant["id"]),
        ("license.submitted", licence["id"]),
        ("license.under_review", licence["id"]),
        ("license.inspection_scheduled", licence["id"]),
        ("license.granted", licence["id"]),
        ("facility.status_changed", plant["id"]),
        ("fx_rate.set", f"fx:{RATE_CURRENCY}:{RATE_DAY}"),
        ("investment.recorded", flow["id"]),
    }
    capture.wait_for(expected)

    events = {}
    for message in capture.messages:
        event = from_rabbitmq_event(message.as_rabbitmq_message())
        assert message.content_type == messaging.CLOUDEVENTS_CONTENT_TYPE  # structured mode
        assert event.get_specversion() == "1.0"
        assert event.get_type() == f"jvreg.{message.routing_key}"
        assert event.get_id() == message.message_id
        assert event.get_datacontenttype() == "application/json"
        payload = PAYLOADS[message.routing_key].model_validate(event.get_data())
        assert isinstance(payload, EventPayload)
        assert event.get_subject() == payload.subject
        assert event.get_extension("sequence") == payload.sequence
        events[(message.routing_key, event.get_subject())] = event
    assert expected <= events.keys()
    # Each was caused by a request through the gateway, whose correlation id it carries.
    assert all(events[key].get_extension("correlationid") for key in expected)

    def data(routing_key: str, subject: str) -> dict:
        return events[(routing_key, subject)].get_data()

    assert data("venture.registered", venture["id"])["venture"]["name"] == venture["name"]
    assert data("venture.updated", venture["id"])["venture"]["description"].startswith(
        "Paracetamol"
    )
    assert data("venture.status_changed", venture["id"])["change"]["to"] == "active"
    assert data("facility.registered", plant["id"])["facility"]["name"] == PLANT["name"]
    assert data("license.submitted", licence["id"])["license"]["facility_id"] == plant["id"]
    granted = data("license.granted", licence["id"])
    assert granted["license"]["status"] == "granted"
    assert granted["license"]["decision_ref"] == "DRAP/LIC/2026/0412"
    assert data("facility.status_changed", plant["id"])["facility"]["status"] == "operational"
    assert (
        data("fx_rate.set", f"fx:{RATE_CURRENCY}:{RATE_DAY}")["fx_rate"]["usd_per_unit"] == "0.1282"
    )
    recorded = data("investment.recorded", flow["id"])["investment"]
    assert (recorded["amount"], recorded["venture_id"]) == ("20000000.00", venture["id"])
    sequences = [
        events[(key, licence["id"])].get_extension("sequence")
        for key in ("license.submitted", "license.under_review", "license.granted")
    ]
    assert sequences == [1, 2, 4]
