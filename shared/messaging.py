"""The AMQP topology every service agrees on: event exchanges, consumer queues and
the dead-letter path. Declared by publishers and consumers alike, with identical
arguments, so whichever side starts first the other finds what it expects."""

from kombu import Exchange, Queue

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
# Every registry process, each connecting to the broker as a user of its own.
SERVICES = ("ventures", "facilities", "licensing", "investments", "notifications", "gateway")
# The broker user of `jvreg dlq` (ops), which may send dead letters back to any queue.
OPS = "ops"


def events_exchange(service: str) -> Exchange:
    """`<service>.events`, the topic exchange nameko names and we publish to."""
    return Exchange(f"{service}.events", type="topic", durable=True)


def dead_letter_exchange() -> Exchange:
    return Exchange(DEAD_LETTER_EXCHANGE, type="topic", durable=True)


def dead_letter_queue() -> Queue:
    return Queue(DEAD_LETTER_QUEUE, exchange=dead_letter_exchange(), routing_key="#", durable=True)


def consumer_queue(name: str, source_service: str, pattern: str) -> Queue:
    """A durable quorum queue with a delivery limit: a message that keeps killing its
    consumer is dead-lettered by the broker rather than delivered forever."""
    return Queue(
        name,
        exchange=events_exchange(source_service),
        routing_key=pattern,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": BROKER_DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        },
    )


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
