"""The AMQP topology every service agrees on: event exchanges, consumer queues and
the dead-letter path. Declared by publishers and consumers alike, with identical
arguments, so whichever side starts first the other finds what it expects."""

import kombu.serialization
from kombu import Exchange, Queue
from kombu.utils import json

# Events travel in CloudEvents' structured mode (the RabbitMQ protocol binding): the
# whole event is the JSON body, and this content type says so, so that any CloudEvents
# reader takes the body as an event rather than as the data of a binary-mode one.
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
CLOUDEVENTS_SERIALIZER = "cloudevents"
kombu.serialization.register(
    CLOUDEVENTS_SERIALIZER,
    encoder=json.dumps,
    decoder=json.loads,
    content_type=CLOUDEVENTS_CONTENT_TYPE,
    content_encoding="utf-8",
)
# What an event consumer decodes: CloudEvents, and plain JSON for the events published
# as `application/json` before the content type changed, still queued at an upgrade.
EVENT_CONTENT_TYPES = [CLOUDEVENTS_SERIALIZER, "json"]

DEAD_LETTER_EXCHANGE = "jvreg.dead-letter"
DEAD_LETTER_QUEUE = "jvreg.dead-letters"
# After its handler failed this many times a message goes to the dead-letter queue
# instead of blocking the messages behind it (counted by the consumer, shared.inbox).
DELIVERY_LIMIT = 5
# Deliveries the broker allows a message, counting those returned because their
# consumer died: the backstop for a message that crashes its consumer. Set well above
# DELIVERY_LIMIT, so that a consumer's crash loop (each crash returns every message it
# had not acked) does not dead-letter healthy messages that were merely in flight.
BROKER_DELIVERY_LIMIT = 20
# A message the broker returned this many times (its consumers stopped while holding
# it: crashed, killed, or lost their connection) is sent to the tail of its queue as a
# fresh copy before it reaches BROKER_DELIVERY_LIMIT: in a consumer's crash loop the
# messages at the head of the queue are returned at every crash, healthy or not. The
# copy carries the returns so far; past RETURN_LIMIT in all the consumer dead-letters it,
# as the message may be what stops its consumers.
RETURNS_BEFORE_REFRESH = 10
RETURN_LIMIT = 50
# Every registry process, each connecting to the broker as a user of its own.
SERVICES = (
    "ventures",
    "facilities",
    "licensing",
    "investments",
    "notifications",
    "search",
    "gateway",
)
# The broker user of `jvreg dlq` (ops), which may send dead letters back to any queue.
OPS = "ops"


def events_exchange(service: str) -> Exchange:
    """`<service>.events`, the topic exchange nameko names and we publish to."""
    return Exchange(f"{service}.events", type="topic", durable=True)


def dead_letter_exchange() -> Exchange:
    return Exchange(DEAD_LETTER_EXCHANGE, type="topic", durable=True)


def dead_letter_queue() -> Queue:
    return Queue(DEAD_LETTER_QUEUE, exchange=dead_letter_exchange(), routing_key="#", durable=True)


def consumer_queue(name: str, source_service: str, pattern: str, **arguments) -> Queue:
    """A durable quorum queue with a delivery limit: a message that keeps killing its
    consumer is dead-lettered by the broker rather than delivered forever. `arguments`:
    more queue arguments."""
    return Queue(
        name,
        exchange=events_exchange(source_service),
        routing_key=pattern,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": BROKER_DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            **arguments,
        },
    )


# An instance's own queue (the search service's, `search.<instance>.<source>`) is
# deleted by the broker after a week without a consumer: an instance gone for good
# leaves no queue filling up, and one back after that long rebuilds its index anyway.
INSTANCE_QUEUE_EXPIRES_MS = 7 * 24 * 3600 * 1000


def instance_queue(name: str, source_service: str, pattern: str) -> Queue:
    """consumer_queue, for a queue of one instance of a service: it expires unused."""
    return consumer_queue(name, source_service, pattern, **{"x-expires": INSTANCE_QUEUE_EXPIRES_MS})


def event_log_queue(service: str) -> Queue:
    """Catch-all queue on a service's own exchange. It makes every event routable
    (so `mandatory` publishing only fails on misconfiguration) and feeds the
    service's event log, its audit trail."""
    return consumer_queue(f"{service}.event-log", service, "#")


def publisher_topology(service: str) -> list:
    return [
        dead_letter_exchange(),
        dead_letter_queue(),
        events_exchange(service),
        event_log_queue(service),
    ]
