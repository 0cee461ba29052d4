"""Events are contracts: every payload model of every service's contract module carries
an example that validates, every subscription takes exactly the producer's models its
pattern matches, and every consumer's handler accepts every example payload it
subscribes to, read through the very path its messages take (`shared.inbox`)."""

import importlib
import typing

import pytest
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from shared.contract import EVENT_TYPES, EventPayload, Subscription, example, topic_matches
from shared.envelope import aggregate_event
from shared.inbox import CloudEventHandler, InvalidCloudEvent, parse_cloud_event, payload_of

SERVICES = ("ventures", "facilities", "licensing", "investments", "notifications")
SERVICE_CLASSES = {
    "ventures": "VenturesService",
    "facilities": "FacilitiesService",
    "licensing": "LicensingService",
    "investments": "InvestmentsService",
    "notifications": "NotificationsService",
}


def contract(service: str):
    return importlib.import_module(f"services.{service}.contract")


PAYLOADS = [
    (service, routing_key, model)
    for service in SERVICES
    for routing_key, model in contract(service).EVENTS.items()
]
SUBSCRIPTIONS = [
    (service, subscription)
    for service in SERVICES
    for subscription in contract(service).SUBSCRIPTIONS
]
# Each subscription, with each event type of its producer that it takes.
SUBSCRIBED = [
    (service, subscription, routing_key)
    for service, subscription in SUBSCRIPTIONS
    for routing_key in contract(subscription.source).EVENTS
    if topic_matches(subscription.pattern, routing_key)
]


def queue_id(value):
    return value.queue if isinstance(value, Subscription) else None


@pytest.mark.parametrize("service", SERVICES)
def test_every_contract_names_its_service_events_and_subscriptions(service):
    module = contract(service)
    assert service == module.SERVICE
    assert isinstance(module.EVENTS, dict) and isinstance(module.SUBSCRIPTIONS, list)


def test_the_contracts_publish_every_event_type_of_the_registry_and_no_other():
    assert {routing_key for _, routing_key, _ in PAYLOADS} == EVENT_TYPES
    assert len(PAYLOADS) == len(EVENT_TYPES)  # one producer per type


@pytest.mark.parametrize("service, routing_key, model", PAYLOADS, ids=lambda v: str(v))
def test_every_payload_model_has_an_example_that_validates(service, routing_key, model):
    assert issubclass(model, EventPayload)
    assert (model.service, model.routing_key) == (service, routing_key)
    examples = model.model_config["json_schema_extra"]["examples"]
    assert examples
    for data in examples:
        payload = model.model_validate(data)
        event = aggregate_event(payload)
        assert event.source == f"/jvreg/{service}"
        assert event.type == f"jvreg.{routing_key}"
        # The data on the wire reads back as the same payload.
        assert model.model_validate(event.data) == payload


@pytest.mark.parametrize("service, subscription", SUBSCRIPTIONS, ids=queue_id)
def test_every_subscription_takes_the_producers_models_its_pattern_matches(service, subscription):
    producer = contract(subscription.source).EVENTS
    assert subscription.source != service
    assert subscription.queue.startswith(f"{service}.")
    matching = {key for key in producer if topic_matches(subscription.pattern, key)}
    assert set(subscription.accepts) == matching != set()
    for routing_key, model in subscription.accepts.items():
        assert model is producer[routing_key]


def handlers(service: str) -> dict[str, tuple[CloudEventHandler, typing.Any]]:
    """The service's consumers of other services' events by queue: each entrypoint and
    the method it runs."""
    module = importlib.import_module(f"services.{service}.service")
    service_class = getattr(module, SERVICE_CLASSES[service])
    found = {}
    for name in dir(service_class):
        method = getattr(service_class, name)
        for entrypoint in getattr(method, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, CloudEventHandler) and entrypoint.source_service != service:
                found[entrypoint.queue_name] = (entrypoint, method.__wrapped__)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_event_handler_is_bound_as_its_subscription_says(service):
    subscriptions = {
        subscription.queue: subscription for subscription in contract(service).SUBSCRIPTIONS
    }
    found = handlers(service)
    assert set(found) == set(subscriptions)
    for queue, (entrypoint, _) in found.items():
        subscription = subscriptions[queue]
        assert (entrypoint.source_service, entrypoint.pattern) == (
            subscription.source,
            subscription.pattern,
        )


@pytest.mark.parametrize(
    "service, subscription, routing_key",
    SUBSCRIBED,
    ids=lambda v: v.queue if isinstance(v, Subscription) else v,
)
def test_every_consumer_accepts_every_example_payload_it_subscribes_to(
    service, subscription, routing_key
):
    model = contract(subscription.source).EVENTS[routing_key]
    _, method = handlers(service)[subscription.queue]
    reads = list(typing.get_type_hints(method).values())[1]  # (event, payload) -> ...
    for data in model.model_config["json_schema_extra"]["examples"]:
        published = aggregate_event(model.model_validate(data)).wire()
        event = parse_cloud_event(published)
        payload = payload_of(subscription, event)
        assert isinstance(payload, model) and isinstance(payload, reads)


@pytest.mark.parametrize("service, subscription", SUBSCRIPTIONS, ids=queue_id)
def test_data_that_breaks_the_producers_contract_is_refused_at_once(service, subscription):
    routing_key, model = next(iter(subscription.accepts.items()))
    event = aggregate_event(model.model_validate(example(model)))
    broken = parse_cloud_event({**event.wire(), "data": {"change": {}}})
    with pytest.raises(InvalidCloudEvent, match=f"breaks {subscription.source}'s contract"):
        payload_of(subscription, broken)
