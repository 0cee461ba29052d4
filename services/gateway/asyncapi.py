"""The AsyncAPI 3.0 document of the registry's events, generated from the services'
contract modules (each one's EVENTS and SUBSCRIPTIONS) and the broker topology every
service declares (shared.messaging), so the document cannot drift from what is
published and consumed; and the event catalogue (docs/events.md) rendered from it.

    python -m services.gateway.asyncapi --catalogue docs/events.md
    python -m services.gateway.asyncapi --document asyncapi.json
"""

import argparse
import inspect
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import version
from typing import Any, Protocol

from kombu import Queue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.facilities import contract as facilities
from services.investments import contract as investments
from services.licensing import contract as licensing
from services.notifications import contract as notifications
from services.search import contract as search
from services.ventures import contract as ventures
from shared import messaging
from shared.contract import EventPayload, Subscription
from shared.envelope import EVENT_TYPE_PREFIX, CloudEvent, aggregate_event
from shared.settings import Settings

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
SCHEMAS = "#/components/schemas/"
ENVELOPE = "CloudEvent"
# What each attribute of the envelope means (CloudEvents 1.0 and our extension).
ATTRIBUTES = {
    "specversion": "CloudEvents version, always 1.0",
    "id": "the event's id, stable across re-sends: consumers deduplicate on it",
    "source": "`/jvreg/<service>`, the publishing service",
    "type": "`jvreg.` + the routing key, e.g. `jvreg.license.granted`",
    "subject": "the id of the aggregate that changed (a venture, plant, licence, flow or "
    "`fx:<currency>:<date>` rate)",
    "time": "when the change was committed, RFC 3339 in UTC",
    "datacontenttype": "the media type of `data`, always application/json",
    "sequence": "extension attribute: +1 with every change of the aggregate named by "
    "`subject`, starting at 1; consumers apply an aggregate's events in this order",
    "correlationid": "extension attribute: the correlation id of the request that caused "
    "the change (the caller's `X-Request-Id` or W3C trace id, else one the gateway made); "
    "the consumer that applies the event logs under it; absent or null when no request did",
    "data": "the event's payload: the aggregate after the change, and the change itself",
}
# The id, time and correlation id of the example events, fixed so the catalogue is
# reproducible.
EXAMPLE_ID = "5b0c7d2e-3c1a-4c53-9a4e-5f0d1b8e2a71"
EXAMPLE_TIME = datetime(2026, 11, 27, 18, 30, 11, 572000, tzinfo=UTC)
EXAMPLE_CORRELATION_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Contract(Protocol):
    """A service's contract module (services/<service>/contract.py)."""

    @property
    def SERVICE(self) -> str: ...
    @property
    def EVENTS(self) -> Mapping[str, type[BaseModel]]: ...
    @property
    def SUBSCRIPTIONS(self) -> Sequence[Subscription]: ...


CONTRACTS: tuple[Contract, ...] = (
    ventures,
    facilities,
    licensing,
    investments,
    notifications,
    search,
)
# A queue of each instance of its service (the search service's): the name's
# `{instance}` is the instance's JVREG_SEARCH_INSTANCE.
INSTANCE = "{instance}"


@cache
def asyncapi_document() -> dict[str, Any]:
    """The registry's AsyncAPI document, as the gateway serves it at /asyncapi.json."""
    return document_of(CONTRACTS)


def document_of(services: Sequence[Contract]) -> dict[str, Any]:
    publishers = [service for service in services if service.EVENTS]
    models = {model for service in publishers for model in service.EVENTS.values()}
    models |= {m for service in services for s in service.SUBSCRIPTIONS for m in s.accepts.values()}
    names, schemas = payload_schemas(models)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "JV Pharma Registry events",
            "version": version("jvreg"),
            "description": (
                "Every change in the registry is a fact published as a CloudEvents 1.0 "
                "JSON document (structured mode, content type "
                f"`{messaging.CLOUDEVENTS_CONTENT_TYPE}`) to its service's topic "
                "exchange `<service>.events`, with the event type as routing key. "
                "Delivery is at least once: deduplicate on `id`, apply an aggregate's "
                "events in `sequence` order."
            ),
        },
        "defaultContentType": messaging.CLOUDEVENTS_CONTENT_TYPE,
        "servers": {
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ as `make dev` runs it; a deployment's is "
                "JVREG_AMQP_URI. Each service publishes as a broker user of its own.",
            }
        },
        "channels": {},
        "operations": {},
        "components": {"schemas": {ENVELOPE: envelope_schema(), **schemas}, "messages": {}},
    }
    for service in publishers:
        publish(document, service, names)
    for service in publishers:
        log_events(document, service)
    for service in services:
        for subscription in service.SUBSCRIPTIONS:
            consume(document, service.SERVICE, subscription)
    return document


def payload_schemas(models: set[type[BaseModel]]) -> tuple[dict[type[BaseModel], str], dict]:
    """Each payload model's JSON Schema (as it is on the wire: serialised) and those of
    the models it uses, under components/schemas; and the name of each payload's."""
    ordered = sorted(models, key=lambda model: (model.__module__, model.__qualname__))
    references, definitions = models_json_schema(
        [(model, "serialization") for model in ordered], ref_template=SCHEMAS + "{model}"
    )
    names = {
        model: references[(model, "serialization")]["$ref"].removeprefix(SCHEMAS)
        for model in ordered
    }
    return names, definitions.get("$defs", {})


def envelope_schema() -> dict[str, Any]:
    """The CloudEvents envelope (shared.envelope.CloudEvent), each attribute described."""
    schema = CloudEvent.model_json_schema(mode="serialization")
    schema["description"] = (
        "A CloudEvents 1.0 event in structured mode: the message body is the whole event."
    )
    for name, attribute in schema["properties"].items():
        attribute.pop("title", None)
        attribute["description"] = ATTRIBUTES[name]
    return schema


def exchange_binding(service: str) -> dict[str, Any]:
    exchange = messaging.events_exchange(service)
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": exchange.name,
                "type": exchange.type,
                "durable": exchange.durable,
                "autoDelete": exchange.auto_delete,
                "vhost": "/",
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }


def publish(document: dict[str, Any], service: Contract, names: Mapping[type, str]) -> None:
    """The service's exchange as a channel carrying a message per event type, and the
    service's send operation (through its outbox relay)."""
    exchange = messaging.events_exchange(service.SERVICE).name
    messages = document["components"]["messages"]
    for routing_key, model in service.EVENTS.items():
        messages[routing_key] = event_message(service.SERVICE, routing_key, model, names[model])
    document["channels"][exchange] = {
        "address": exchange,
        "title": exchange,
        "description": f"The {service.SERVICE} service's topic exchange: each event is "
        "published with its type as routing key.",
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in service.EVENTS},
        "bindings": exchange_binding(service.SERVICE),
    }
    document["operations"][f"{service.SERVICE}.publish"] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{exchange}"},
        "title": f"{service.SERVICE} publishes its events",
        "tags": [{"name": service.SERVICE}],
        "description": "Written in the same MongoDB transaction as the change (the "
        "outbox), then published with publisher confirms and `mandatory`; the AMQP "
        "properties `message_id` and `type` carry the event's id and type, and "
        "`user_id` the service's broker user, which the broker checks and consumers "
        "require.",
        "messages": [{"$ref": f"#/channels/{exchange}/messages/{key}"} for key in service.EVENTS],
        "bindings": {
            "amqp": {
                "deliveryMode": 2,
                "mandatory": True,
                "userId": Settings.model_fields["broker_user"].default.format(
                    service=service.SERVICE
                ),
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def event_message(service: str, routing_key: str, model: type[BaseModel], name: str) -> dict:
    meaning = inspect.getdoc(model) or routing_key
    envelope = {
        "allOf": [{"$ref": SCHEMAS + ENVELOPE}],
        "properties": {
            "source": {"const": f"/jvreg/{service}"},
            "type": {"const": EVENT_TYPE_PREFIX + routing_key},
            "data": {"$ref": SCHEMAS + name},
        },
    }
    return {
        "name": routing_key,
        "title": routing_key,
        "summary": meaning.split("\n\n")[0].replace("\n", " "),
        "description": meaning,
        "contentType": messaging.CLOUDEVENTS_CONTENT_TYPE,
        "payload": envelope,
        "examples": [
            {"name": f"{routing_key} example {n}", "payload": example_event(model, data)}
            for n, data in enumerate(examples_of(model), start=1)
        ],
        "bindings": {
            "amqp": {
                "contentEncoding": "utf-8",
                "messageType": EVENT_TYPE_PREFIX + routing_key,
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def examples_of(model: type[BaseModel]) -> list[dict[str, Any]]:
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if not isinstance(examples, list):
        return []
    return [dict(example) for example in examples if isinstance(example, dict)]


def example_event(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """The whole event an example payload travels in, as its producer builds it."""
    if not issubclass(model, EventPayload):
        raise TypeError(f"{model.__name__} is not an EventPayload of a contract")
    event = aggregate_event(model.model_validate(data))
    fixed = {"id": EXAMPLE_ID, "time": EXAMPLE_TIME, "correlationid": EXAMPLE_CORRELATION_ID}
    return event.model_copy(update=fixed).wire()


def queue_channel(queue: Queue, messages: Mapping[str, Any], description: str) -> dict:
    """A consumer's queue: a quorum queue with its delivery limit and dead-letter
    exchange, bound to an exchange with a pattern (the `x-` members)."""
    return {
        "address": queue.name,
        "title": queue.name,
        "description": description,
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": queue.name,
                    "durable": queue.durable,
                    "exclusive": queue.exclusive,
                    "autoDelete": queue.auto_delete,
                    "vhost": "/",
                    # kombu sets a Queue's declared attributes at run time, untyped.
                    "x-arguments": dict(queue.queue_arguments or {}),  # type: ignore[attr-defined]
                },
                "x-bound-to": {"exchange": queue.exchange.name, "routingKey": queue.routing_key},
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def receive(
    document: dict[str, Any],
    consumer: str,
    operation: str,
    queue: Queue,
    keys: Sequence[str],
    title: str,
    description: str,
) -> None:
    document["channels"][queue.name] = queue_channel(queue, dict.fromkeys(keys), description)
    document["operations"][operation] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{queue.name}"},
        "title": title,
        "tags": [{"name": consumer}],
        "description": description,
        "messages": [{"$ref": f"#/channels/{queue.name}/messages/{key}"} for key in keys],
        "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def consume(document: dict[str, Any], consumer: str, subscription: Subscription) -> None:
    per_instance = INSTANCE in subscription.queue
    declare = messaging.instance_queue if per_instance else messaging.consumer_queue
    queue = declare(subscription.queue, subscription.source, subscription.pattern)
    instances = (
        f" Each instance of {consumer} has a queue of its own (`{INSTANCE}` is its "
        "JVREG_SEARCH_INSTANCE), so that each gets every event; the broker deletes one "
        "unused for a week."
        if per_instance
        else ""
    )
    receive(
        document,
        consumer,
        subscription.queue,
        queue,
        list(subscription.accepts),
        f"{consumer} consumes {subscription.pattern} from {queue.exchange.name}",
        f"Per aggregate, each event is applied once and in `sequence` order: the "
        f"consumer keeps the last applied sequence, in the transaction of the effect, and "
        f"skips an event at or below it. A message whose handler "
        f"failed {messaging.DELIVERY_LIMIT} times, or that is not a valid event of "
        f"{subscription.source}'s contract, or was not published by its broker user, "
        f"goes to `{messaging.DEAD_LETTER_QUEUE}` with the error." + instances,
    )
    if per_instance:
        document["channels"][queue.name]["parameters"] = {
            "instance": {"description": "the instance's name, JVREG_SEARCH_INSTANCE"}
        }


def log_events(document: dict[str, Any], service: Contract) -> None:
    queue = messaging.event_log_queue(service.SERVICE)
    receive(
        document,
        service.SERVICE,
        queue.name,
        queue,
        list(service.EVENTS),
        f"{service.SERVICE} keeps its own events in its event log",
        "The catch-all queue on the service's own exchange: it makes every event "
        "routable (so a `mandatory` publish fails only on misconfiguration) and feeds "
        "the service's event log, its audit trail.",
    )


# --- the event catalogue (docs/events.md), rendered from the document ---------------

CATALOGUE_COMMAND = "python -m services.gateway.asyncapi --catalogue docs/events.md"


def event_catalogue(document: Mapping[str, Any]) -> str:
    """Markdown: per exchange and event type, what it means, who publishes and who
    consumes it, its payload's fields and an example."""
    schemas = document["components"]["schemas"]
    lines = [
        "# Event catalogue",
        "",
        f"Generated from the AsyncAPI {document['asyncapi']} document "
        "(`services/gateway/asyncapi.py`) by "
        f"`{CATALOGUE_COMMAND}`: edit the contract modules "
        "(`services/<service>/contract.py`), not this file.",
        "",
        document["info"]["description"],
        "",
        "## The envelope",
        "",
        "| attribute | type | description |",
        "|---|---|---|",
    ]
    envelope = schemas[ENVELOPE]
    for name, attribute in envelope["properties"].items():
        lines.append(f"| `{name}` | {type_of(attribute, schemas)} | {cell(attribute)} |")
    lines += ["", "## Exchanges", ""]
    for channel_id, channel in document["channels"].items():
        if channel["bindings"]["amqp"]["is"] == "routingKey":
            lines += exchange_section(document, channel_id, channel)
    lines += queues_section(document)
    return "\n".join(lines).rstrip() + "\n"


def exchange_section(document: Mapping[str, Any], channel_id: str, channel: Mapping) -> list[str]:
    exchange = channel["bindings"]["amqp"]["exchange"]
    publishers = operations_on(document, channel_id, "send")
    lines = [
        f"### `{channel['address']}`",
        "",
        f"{channel['description']} A {exchange['type']} exchange, "
        f"{'durable' if exchange['durable'] else 'transient'}; published by "
        + ", ".join(f"`{operation_id}`" for operation_id, _ in publishers)
        + ".",
        "",
    ]
    # Events of one aggregate often share their payload's fields: listed once.
    tables: dict[tuple, str] = {}
    for key in channel["messages"]:
        lines += message_section(document, key, publishers, tables)
    return lines


def message_section(
    document: Mapping[str, Any], key: str, publishers: list, tables: dict[tuple, str]
) -> list[str]:
    schemas = document["components"]["schemas"]
    message = document["components"]["messages"][key]
    payload = schemas[message["payload"]["properties"]["data"]["$ref"].removeprefix(SCHEMAS)]
    lines = [f"#### `{key}`", "", message["description"], ""]
    for operation_id, operation in publishers:
        user = operation["bindings"]["amqp"]["userId"]
        lines.append(f"- **Published by** `{operation_id}` (broker user `{user}`)")
    for queue, operation in consumers_of(document, key):
        bound = document["channels"][queue]["bindings"]["amqp"]["x-bound-to"]
        lines.append(
            f"- **Consumed by** {service_of(operation)}: queue `{queue}` "
            f"(`{bound['routingKey']}` on `{bound['exchange']}`)"
        )
    rows = tuple(fields(payload, schemas))
    lines += [
        "",
        f"`type` `{message['payload']['properties']['type']['const']}`, "
        f"`data` ({payload.get('title', '')})",
    ]
    if rows in tables:
        lines[-1] += f" has the fields of `{tables[rows]}` above."
    else:
        tables[rows] = key
        lines[-1] += ":"
        lines += ["", "| field | type | required | description |", "|---|---|---|---|"]
        lines += [
            f"| `{path}` | {kind} | {required} | {text} |" for path, kind, required, text in rows
        ]
    for example in message.get("examples", []):
        lines += ["", "```json", json.dumps(example["payload"], indent=2), "```"]
    return lines + [""]


def queues_section(document: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Consumer queues",
        "",
        "Quorum queues declared alike by every consumer and publisher (`shared/messaging.py`).",
        "",
        "| queue | consumer | bound to | pattern | arguments |",
        "|---|---|---|---|---|",
    ]
    for operation in document["operations"].values():
        if operation["action"] != "receive":
            continue
        channel = document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[1]]
        amqp = channel["bindings"]["amqp"]
        arguments = ", ".join(f"`{k}`: `{v}`" for k, v in amqp["queue"]["x-arguments"].items())
        lines.append(
            f"| `{channel['address']}` | {service_of(operation)} | "
            f"`{amqp['x-bound-to']['exchange']}` | `{amqp['x-bound-to']['routingKey']}` | "
            f"{arguments} |"
        )
    return lines + [""]


def service_of(operation: Mapping[str, Any]) -> str:
    """The service that carries an operation out (its tag)."""
    return str(operation["tags"][0]["name"])


def operations_on(document: Mapping[str, Any], channel_id: str, action: str) -> list:
    return [
        (operation_id, operation)
        for operation_id, operation in document["operations"].items()
        if operation["action"] == action
        and operation["channel"]["$ref"] == f"#/channels/{channel_id}"
    ]


def consumers_of(document: Mapping[str, Any], key: str) -> list:
    return [
        (operation["channel"]["$ref"].rsplit("/", 1)[1], operation)
        for operation in document["operations"].values()
        if operation["action"] == "receive"
        and any(ref["$ref"].endswith(f"/messages/{key}") for ref in operation["messages"])
    ]


def resolved(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].removeprefix(SCHEMAS)]
    return schema


def type_of(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        target = resolved(schema, schemas)
        return "object" if "properties" in target else type_of(target, schemas)
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(type_of(option, schemas) for option in schema[union])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}), schemas)}"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


def cell(schema: Mapping[str, Any]) -> str:
    return " ".join(str(schema.get("description", "")).split()).replace("|", "\\|")


def fields(
    schema: Mapping[str, Any], schemas: Mapping[str, Any], prefix: str = "", seen: tuple = ()
) -> list[tuple[str, str, str, str]]:
    """One row per field of an object schema, nested objects' fields after their own
    row (`a.b`, `items[].c`)."""
    rows = []
    required = set(schema.get("required", ()))
    for name, field in schema.get("properties", {}).items():
        path = prefix + name
        rows.append((path, type_of(field, schemas), "yes" if name in required else "", cell(field)))
        for nested, suffix in nested_objects(field, schemas):
            ref = nested.get("title", "")
            if ref not in seen:
                rows += fields(nested, schemas, f"{path}{suffix}.", (*seen, ref))
    return rows


def nested_objects(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> list:
    """The object schemas `schema` holds: itself, its union's options, its items."""
    schema = resolved(schema, schemas)
    if "properties" in schema:
        return [(schema, "")]
    if schema.get("type") == "array":
        return [
            (inner, "[]" + suffix)
            for inner, suffix in nested_objects(schema.get("items", {}), schemas)
        ]
    options = schema.get("anyOf", schema.get("oneOf", []))
    return [found for option in options for found in nested_objects(option, schemas)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.gateway.asyncapi", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--catalogue", metavar="FILE", help="write the event catalogue (Markdown)")
    parser.add_argument("--document", metavar="FILE", help="write the AsyncAPI document (JSON)")
    arguments = parser.parse_args(argv)
    if not (arguments.catalogue or arguments.document):
        parser.error("say what to write: --catalogue FILE and/or --document FILE")
    document = asyncapi_document()
    if arguments.catalogue:
        with open(arguments.catalogue, "w", encoding="utf-8") as out:
            out.write(event_catalogue(document))
    if arguments.document:
        with open(arguments.document, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")


if __name__ == "__main__":
    main()
