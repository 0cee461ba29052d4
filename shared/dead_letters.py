"""The dead-letter path: where a message goes when it can never be applied (not a
valid CloudEvent) or kept failing up to the delivery limit, with the error that
stopped it, so ops can read it (`jvreg dlq list`) and send it back (`jvreg dlq requeue`)
once the cause is fixed. Nothing is acknowledged away without being kept here, until
ops discard it (`jvreg dlq discard`, which prints what it removes)."""

import builtins
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from kombu import Connection, Exchange, Message
from nameko.amqp.publish import Publisher

from shared import messaging
from shared.settings import Settings

log = logging.getLogger(__name__)

ERROR_HEADER = "x-jvreg-error"
QUEUE_HEADER = "x-jvreg-queue"
ATTEMPTS_HEADER = "x-jvreg-attempts"
# Times a handler failed on the message so far, carried by the copy sent to try again.
FAILURES_HEADER = "x-jvreg-failures"
# The broker's returns of the earlier copies of a message sent back to its queue's tail.
RETURNS_HEADER = "x-jvreg-returns"
# On a copy: the broker user that published the original (see publisher_of).
PUBLISHER_HEADER = "x-jvreg-publisher"
# Headers the broker sets on a delivery; a message sent back starts without them.
BROKER_HEADERS = ("x-death", "x-first-death", "x-last-death", "x-delivery-count")


def broker_returns(message: Message) -> int:
    """How many times the broker returned this copy of the message to its queue: its
    consumer stopped while holding it (quorum queues count them in `x-delivery-count`)."""
    return int((message.headers or {}).get("x-delivery-count") or 0)


def returns_in_all(message: Message) -> int:
    """The broker's returns of this copy and of the copies before it."""
    return int((message.headers or {}).get(RETURNS_HEADER) or 0) + broker_returns(message)


def delivery_attempts(message: Message) -> int:
    """How many times a handler has tried this message, this time included. Counted by
    the consumer and not by the broker, whose `x-delivery-count` also counts the
    returns of a consumer that died holding the message."""
    return int((message.headers or {}).get(FAILURES_HEADER) or 0) + 1


def broker_user(amqp_uri: str) -> str:
    """The user a connection to `amqp_uri` logs in as (the transport's default user when
    the URI names none)."""
    return str(Connection(amqp_uri).info()["userid"])


def publisher_of(message: Message, forwarders: Collection[str]) -> str | None:
    """The broker user that published the event in `message`: its `user_id`, which
    RabbitMQ checks against the publishing connection's user, or, for a copy that one
    of `forwarders` sent (a consumer to the tail of its own queue or to the dead
    letters, ops back from them), the publisher that forwarder recorded on it."""
    user = message.properties.get("user_id")
    headers = message.headers or {}
    if user in forwarders and PUBLISHER_HEADER in headers:
        return headers[PUBLISHER_HEADER] or None
    return user


def dead_letter(
    amqp_uri: str, message: Message, queue: str, error: str, forwarders: Collection[str]
) -> None:
    """Publish a copy of `message` to the dead-letter exchange with why it failed,
    waiting for the broker's confirm. The caller acks the original only afterwards."""
    headers = dict(message.headers or {})
    headers.update(
        {
            ERROR_HEADER: error[:2000],
            QUEUE_HEADER: queue,
            ATTEMPTS_HEADER: delivery_attempts(message),
        }
    )
    publisher = Publisher(
        amqp_uri,
        use_confirms=True,
        mandatory=True,
        delivery_mode=2,
        declare=[messaging.dead_letter_exchange(), messaging.dead_letter_queue()],
    )
    republish(
        publisher,
        message,
        messaging.dead_letter_exchange(),
        message.delivery_info.get("routing_key", ""),
        headers,
        forwarders,
    )


def republish(
    publisher: Publisher,
    message: Message,
    exchange: Exchange,
    routing_key: str,
    headers: dict,
    forwarders: Collection[str],
) -> None:
    """Publish `message` again, byte for byte, with its identifying properties, as the
    publisher's own user, recording who published the original."""
    publisher.publish(
        message.body,
        exchange=exchange,
        routing_key=routing_key,
        headers={**headers, PUBLISHER_HEADER: publisher_of(message, forwarders) or ""},
        user_id=broker_user(publisher.amqp_uri),
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.properties.get("message_id"),
        type=message.properties.get("type"),
        serializer=None,
    )


def requeue_copy(
    amqp_uri: str,
    message: Message,
    queue: str,
    headers: dict,
    forwarders: Collection[str],
    forget: tuple[str, ...] = BROKER_HEADERS,
) -> None:
    """Publish a copy of `message` (with `headers` added, and without those that start
    with one of `forget`) to the tail of `queue`, waiting for the broker's confirm; the
    copy starts a fresh delivery count. The caller acks the original only afterwards."""
    kept = {
        key: value for key, value in (message.headers or {}).items() if not key.startswith(forget)
    }
    publisher = Publisher(amqp_uri, use_confirms=True, mandatory=True, delivery_mode=2)
    republish(publisher, message, Exchange(""), queue, {**kept, **headers}, forwarders)


@dataclass
class DeadLetter:
    queue: str
    event_id: str | None
    type: str | None
    error: str
    attempts: int
    message: Message

    @classmethod
    def of(cls, message: Message) -> "DeadLetter":
        headers = message.headers or {}
        deaths = headers.get("x-death") or [{}]
        queue = headers.get(QUEUE_HEADER) or deaths[0].get("queue", "?")
        error = headers.get(ERROR_HEADER) or (
            f"dead-lettered by the broker: {deaths[0].get('reason', 'unknown reason')}"
        )
        attempts = headers.get(ATTEMPTS_HEADER) or deaths[0].get("count") or 0
        try:
            body = message.decode()
        except Exception:  # an undecodable body is exactly what may land here
            body = None
        body = body if isinstance(body, dict) else {}
        return cls(
            queue=queue,
            event_id=message.properties.get("message_id") or body.get("id"),
            type=message.properties.get("type") or body.get("type"),
            error=error,
            attempts=int(attempts),
            message=message,
        )

    def summary(self) -> dict:
        return {
            "queue": self.queue,
            "event_id": self.event_id,
            "type": self.type,
            "error": self.error,
            "attempts": self.attempts,
        }


class DeadLetterQueue:
    """Reads and requeues `jvreg.dead-letters` with plain AMQP (kombu)."""

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        # Who may have put a copy here (any registry user): their copies say who
        # published the original, which a message sent back must keep.
        settings = Settings()
        self.forwarders = {
            *(settings.broker_user_of(name) for name in (*messaging.SERVICES, messaging.OPS)),
            broker_user(amqp_uri),
        }

    def _messages(self, connection: Connection) -> Iterator[Message]:
        queue = messaging.dead_letter_queue()(connection.channel())
        queue.declare()
        while (message := queue.get(no_ack=False, accept=None)) is not None:
            yield message

    def list(self) -> list[dict]:
        """Every dead letter, left in place (unacked messages return to the queue
        when the channel closes)."""
        with Connection(self.amqp_uri) as connection:
            return [DeadLetter.of(message).summary() for message in self._messages(connection)]

    def _letters(self, connection: Connection, event_id: str | None) -> Iterator[DeadLetter]:
        """Every dead letter (or those of `event_id`), each to be acked or left."""
        for message in list(self._messages(connection)):
            letter = DeadLetter.of(message)
            if event_id is None or letter.event_id == event_id:
                yield letter

    def requeue(self, event_id: str | None = None) -> int:
        """Send dead letters (all, or those of one event id) back to the queue each
        came from; returns how many were sent. Each is removed from the dead-letter
        queue only after the broker confirmed its return."""
        sent = 0
        with Connection(self.amqp_uri) as connection:
            for letter in self._letters(connection, event_id):
                # The default exchange routes by queue name: back to that queue only,
                # as a fresh message (its dead-lettering headers dropped).
                requeue_copy(
                    self.amqp_uri,
                    letter.message,
                    letter.queue,
                    {},
                    self.forwarders,
                    ("x-jvreg-", *BROKER_HEADERS),
                )
                letter.message.ack()
                sent += 1
        return sent

    def discard(self, event_id: str) -> builtins.list[dict]:  # `list` is a method here
        """Remove the dead letters of `event_id` for good (a message that can never be
        applied, e.g. from a faulty producer); returns each, with its body, so the
        caller can keep a record of what was thrown away."""
        discarded = []
        with Connection(self.amqp_uri) as connection:
            for letter in self._letters(connection, event_id):
                body = letter.message.body
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
                discarded.append({**letter.summary(), "body": text})
                letter.message.ack()
        return discarded
