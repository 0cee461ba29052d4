"""The AsyncAPI 3.0 document of the registry's events and the event catalogue rendered
from it: valid against the official AsyncAPI 3.0.0 JSON Schema (tests/schemas/), every
reference resolving, every example a valid message, the broker topology as the services
declare it."""

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jsonschema import Draft7Validator
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.asyncapi import (
    CATALOGUE_COMMAND,
    CONTRACTS,
    asyncapi_document,
    document_of,
    event_catalogue,
)
from shared import messaging
from shared.contract import EVENT_TYPES, EventPayload, Subscription, events_of

SPEC_SCHEMA = json.loads(
    (Path(__file__).parents[1] / "schemas" / "asyncapi-3.0.0.json").read_text()
)


# --- a small contract of two services, in the shape of services/<service>/contract.py


class Actor(BaseModel):
    key_id: str
    role: str
    owner: str


class Plant(BaseModel):
    id: str
    name: str
    sez: str | None = Field(None, description="special economic zone")
    version: int


class PlantRegistered(EventPayload):
    """A plant was registered under a venture: `data` is the plant and who registered it."""

    service = "plants"
    routing_key = "facility.registered"
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plant": {
                        "id": "fac_1",
                        "name": "Rashakai API Plant",
                        "sez": "Rashakai SEZ",
                        "version": 1,
                    },
                    "change": {"key_id": "key_1", "role": "investor", "owner": "Indus Pharma"},
                }
            ]
        }
    )

    plant: Plant
    change: Actor

    @property
    def subject(self) -> str:
        return self.plant.id

    @property
    def sequence(self) -> int:
        return self.plant.version


class PlantClosed(PlantRegistered):
    """A plant stopped producing for good."""

    routing_key = "facility.status_changed"


PLANTS = SimpleNamespace(
    SERVICE="plants",
    EVENTS=events_of(PlantRegistered, PlantClosed),
    SUBSCRIPTIONS=[],
)
LICENSING = SimpleNamespace(
    SERVICE="licensing",
    EVENTS={},
    SUBSCRIPTIONS=[
        Subscription(
            "licensing.follow_plant", "plants", "facility.registered", lambda: PLANTS.EVENTS
        )
    ],
)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document of the small contract above."""
    return document_of([PLANTS, LICENSING])


@pytest.fixture(scope="module", params=["small contract", "registry"])
def any_document(request, document) -> dict[str, Any]:
    """The small contract's document, and the registry's own (/asyncapi.json)."""
    return document if request.param == "small contract" else asyncapi_document()


def test_the_document_is_valid_asyncapi_3(any_document):
    errors = sorted(Draft7Validator(SPEC_SCHEMA).iter_errors(any_document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def test_the_schema_refuses_a_broken_document(document):
    """The validation has teeth: a send operation without its channel is refused."""
    broken = json.loads(json.dumps(document))
    del broken["operations"]["plants.publish"]["channel"]
    assert not Draft7Validator(SPEC_SCHEMA).is_valid(broken)


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def pointed_at(document: dict, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_resolves_and_operations_use_their_channels_messages(any_document):
    for ref in references(any_document):
        pointed_at(any_document, ref)
    for operation in any_document["operations"].values():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/")


def test_a_channel_per_exchange_with_a_message_per_event_type(document):
    channel = document["channels"]["plants.events"]
    assert channel["address"] == "plants.events"
    assert channel["bindings"]["amqp"]["exchange"] | {"name": "plants.events"} == {
        "name": "plants.events",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    assert set(channel["messages"]) == {"facility.registered", "facility.status_changed"}
    message = document["components"]["messages"]["facility.status_changed"]
    assert message["contentType"] == "application/cloudevents+json"
    assert message["payload"]["properties"]["type"] == {"const": "jvreg.facility.status_changed"}
    assert message["description"] == "A plant stopped producing for good."
    publish = document["operations"]["plants.publish"]
    assert publish["action"] == "send"
    assert publish["bindings"]["amqp"]["deliveryMode"] == 2
    assert publish["bindings"]["amqp"]["userId"] == "jvreg-plants"


def test_the_envelope_documents_every_cloudevents_attribute_and_the_sequence(any_document):
    envelope = any_document["components"]["schemas"]["CloudEvent"]
    assert set(envelope["required"]) >= {"specversion", "id", "source", "type", "sequence"}
    assert all(attribute["description"] for attribute in envelope["properties"].values())
    assert "in this order" in envelope["properties"]["sequence"]["description"]


def test_every_example_is_a_valid_message(any_document):
    components = any_document["components"]
    for key, message in components["messages"].items():
        validator = Draft7Validator(
            {"$ref": f"#/components/messages/{key}/payload", "components": components}
        )
        assert message["examples"], f"{key} has no example"
        for example in message["examples"]:
            validator.validate(example["payload"])
        broken = {**message["examples"][0]["payload"], "sequence": 0}
        assert not validator.is_valid(broken)


def test_a_subscription_receives_from_a_quorum_queue_only_what_it_accepts(document):
    operation = document["operations"]["licensing.follow_plant"]
    assert operation["action"] == "receive"
    assert operation["channel"] == {"$ref": "#/channels/licensing.follow_plant"}
    assert [m["$ref"].rsplit("/", 1)[1] for m in operation["messages"]] == ["facility.registered"]
    binding = document["channels"]["licensing.follow_plant"]["bindings"]["amqp"]
    assert binding["is"] == "queue"
    assert binding["queue"]["durable"] is True
    assert binding["queue"]["x-arguments"] == {
        "x-queue-type": "quorum",
        "x-delivery-limit": messaging.BROKER_DELIVERY_LIMIT,
        "x-dead-letter-exchange": messaging.DEAD_LETTER_EXCHANGE,
    }
    assert binding["x-bound-to"] == {
        "exchange": "plants.events",
        "routingKey": "facility.registered",
    }


def test_a_publisher_keeps_every_event_in_its_event_log(document):
    operation = document["operations"]["plants.event-log"]
    assert len(operation["messages"]) == 2
    binding = document["channels"]["plants.event-log"]["bindings"]["amqp"]
    assert binding["x-bound-to"] == {"exchange": "plants.events", "routingKey": "#"}


def test_the_catalogue_says_who_publishes_and_consumes_each_event_and_its_fields(document):
    catalogue = event_catalogue(document)
    section = catalogue[catalogue.index("#### `facility.registered`") :]
    section = section[: section.index("#### `facility.status_changed`")]
    assert "A plant was registered under a venture" in section
    assert "**Published by** `plants.publish` (broker user `jvreg-plants`)" in section
    assert "queue `licensing.follow_plant` (`facility.registered` on `plants.events`)" in section
    assert "| `plant.sez` | string or null |  | special economic zone |" in section
    assert "| `change.role` | string | yes |  |" in section
    assert '"sez": "Rashakai SEZ"' in section
    closed = catalogue[
        catalogue.index("#### `facility.status_changed`") : catalogue.index("\n## Consumer queues")
    ]
    assert "**Published by** `plants.publish`" in closed
    assert "`data` (PlantClosed) has the fields of `facility.registered` above." in closed
    assert "| `licensing.follow_plant` | licensing | `plants.events` | `facility.registered` |" in (
        catalogue
    )
    assert "licensing.follow_plant" not in closed


# --- the registry's own document --------------------------------------------------------


def test_the_registry_documents_every_event_type_of_the_contract():
    document = asyncapi_document()
    assert set(document["components"]["messages"]) == EVENT_TYPES
    for contract in CONTRACTS:
        for routing_key in contract.EVENTS:
            channel = document["channels"][f"{contract.SERVICE}.events"]
            assert routing_key in channel["messages"]


def test_the_registry_documents_every_subscription_with_its_queue():
    document = asyncapi_document()
    for contract in CONTRACTS:
        for subscription in contract.SUBSCRIPTIONS:
            operation = document["operations"][subscription.queue]
            assert operation["tags"] == [{"name": contract.SERVICE}]
            received = {ref["$ref"].rsplit("/", 1)[1] for ref in operation["messages"]}
            assert received == set(subscription.accepts)
            binding = document["channels"][subscription.queue]["bindings"]["amqp"]
            assert binding["x-bound-to"] == {
                "exchange": f"{subscription.source}.events",
                "routingKey": subscription.pattern,
            }


def test_docs_events_md_is_the_catalogue_of_the_current_document():
    catalogue = Path(__file__).parents[2] / "docs" / "events.md"
    assert catalogue.read_text() == event_catalogue(asyncapi_document()), (
        f"docs/events.md is out of date: run {CATALOGUE_COMMAND}"
    )
