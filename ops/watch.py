"""`jvreg watch`: a regulator's own durable queue on the registry's events, printed as
one JSON line per event.

The queue outlives the command: what is published while no watcher runs waits in
it (messages are persistent), and the next `jvreg watch --queue` with the same
name carries on from there. An event is acknowledged only after its line has been
written and flushed, so a crash repeats the last event rather than losing it.
"""

import signal
import sys
import time
from contextlib import contextmanager
from typing import TextIO

import click
from amqp.exceptions import ChannelError, NotFound
from kombu import Connection, Exchange, Queue
from kombu.mixins import ConsumerMixin

from shared import codec, messaging
from shared.inbox import InvalidCloudEvent, parse_cloud_event
from shared.settings import Settings

# Heartbeats notice a dead connection that no socket error reports.
HEARTBEAT_SECONDS = 30
# Pause between reconnections when the broker accepts connections but drops them.
RECONNECT_PAUSE_SECONDS = 1


class Stopped(Exception):
    """A signal asked to stop while no message was being handled."""


def regulator_queue(name: str, exchange: str, pattern: str, queue_type: str = "classic") -> Queue:
    """The watcher's own queue: durable, bound to `exchange` with `pattern`, and
    dead-lettering what it rejects to the registry's dead-letter exchange. A quorum
    queue has a replica on every node of a RabbitMQ cluster and outlives the loss of
    one; a classic queue lives on the node it was declared on."""
    events = messaging.events_exchange(exchange.removesuffix(".events"))
    return Queue(
        name,
        # Declared by `declare` only when missing: a regulator's user may not.
        exchange=Exchange(events.name, type=events.type, durable=True, no_declare=True),
        routing_key=pattern,
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": messaging.DEAD_LETTER_EXCHANGE,
            # Classic is the broker's default: said only for quorum, the arguments of a
            # classic queue stay those it was first declared with.
            **({"x-queue-type": queue_type} if queue_type != "classic" else {}),
        },
    )


def declare(channel, queue: Queue) -> None:
    """Declare the watcher's queue. The registry declares its exchanges and the
    dead-letter path; only on a broker it has not run on yet does the watcher declare
    them (which a regulator's broker user, `jvreg regulators add`, may not)."""
    probe = channel.connection.channel()
    try:
        probe.exchange_declare(queue.exchange.name, queue.exchange.type, passive=True)
        probe.close()
    except NotFound:
        messaging.dead_letter_exchange()(channel).declare()
        messaging.dead_letter_queue()(channel).declare()
        Exchange(queue.exchange.name, type=queue.exchange.type, durable=True)(channel).declare()
    queue(channel).declare()


class EventWatcher(ConsumerMixin):
    def __init__(
        self,
        connection: Connection,
        queue: Queue,
        max_events: int | None = None,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
    ):
        self.connection = connection
        self.queue = queue
        self.max_events = max_events
        self.out = out
        self.err = err
        self.printed = 0
        self.connecting = False
        self.handling = False

    def say(self, text: str) -> None:
        print(f"jvreg watch: {text}", file=self.err, flush=True)

    def request_stop(self, signum, frame) -> None:
        self.should_stop = True  # the consume loop notices within a second
        if self.connecting and not self.handling:
            raise Stopped  # do not wait for the next connection retry

    # --- ConsumerMixin hooks -----------------------------------------------------

    def get_consumers(self, Consumer, channel):
        declare(channel, self.queue)
        # One unacknowledged event at a time: the printed order is the queue's order.
        return [
            Consumer(
                queues=[self.queue],
                callbacks=[self.on_message],
                accept=messaging.EVENT_CONTENT_TYPES,
                prefetch_count=1,
            )
        ]

    @contextmanager
    def establish_connection(self):
        self.connecting = True
        try:
            with super().establish_connection() as connection:
                self.connecting = False
                yield connection
        finally:
            self.connecting = False

    def on_connection_error(self, exc, interval):
        self.say(f"cannot reach the broker ({exc}); retrying in {interval:g} s")

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        self.say(
            f"watching queue {self.queue.name} (bound to {self.queue.exchange.name} "
            f"with {self.queue.routing_key})"
        )

    def on_decode_error(self, message, exc):
        self.reject(message, f"undecodable {message.content_type} body: {exc}")

    def run(self, _tokens=1, **kwargs):
        """ConsumerMixin.run, saying what happened when the connection drops."""
        errors = self.connection.connection_errors + self.connection.channel_errors
        while not self.should_stop:
            try:
                for _ in self.consume(limit=None, **kwargs):
                    pass
            except errors as error:
                if self.should_stop:
                    break
                self.say(f"lost the broker connection ({error!r}); reconnecting")
                time.sleep(RECONNECT_PAUSE_SECONDS)

    # --- one message ---------------------------------------------------------------

    def on_message(self, body, message):
        if self.should_stop:
            return  # not acknowledged: it stays in the queue for the next watcher
        self.handling = True
        try:
            self.handle(body, message)
        finally:
            self.handling = False

    def handle(self, body, message):
        try:
            parse_cloud_event(body)
        except InvalidCloudEvent as error:
            self.reject(message, str(error))
            return
        try:
            self.out.write(codec.dumps(body) + "\n")
            self.out.flush()
        except BrokenPipeError:
            # Whoever read our output is gone; the event stays queued.
            self.should_stop = True
            return
        message.ack()
        self.printed += 1
        if self.max_events is not None and self.printed >= self.max_events:
            self.should_stop = True

    def reject(self, message, why: str) -> None:
        """Off to the dead-letter queue (not requeued: it would fail again)."""
        routing_key = message.delivery_info.get("routing_key")
        message_id = message.properties.get("message_id")
        self.say(f"rejected message {message_id} ({routing_key}): {why}")
        message.reject(requeue=False)


def check_exchange(ctx, param, value: str) -> str:
    if not value.endswith(".events") or value == ".events":
        raise click.BadParameter("the registry's exchanges are named <service>.events")
    return value


@click.command()
@click.option("--queue", "queue_name", required=True, help="your durable queue's name")
@click.option(
    "--pattern", default="license.#", show_default=True, help="routing-key pattern to bind"
)
@click.option(
    "--amqp-uri",
    default=lambda: Settings().amqp_uri,
    show_default="JVREG_AMQP_URI",
    help="the registry's RabbitMQ; the nodes of a cluster separated by ';', tried in turn",
)
@click.option(
    "--queue-type",
    type=click.Choice(["classic", "quorum"]),
    default="classic",
    show_default=True,
    help="quorum on a RabbitMQ cluster: the queue outlives the loss of a node "
    "(a queue's type is fixed when it is first declared)",
)
@click.option(
    "--exchange",
    default="licensing.events",
    show_default=True,
    callback=check_exchange,
    help="the events exchange to bind to",
)
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="exit after this many")
def watch(
    queue_name: str,
    pattern: str,
    amqp_uri: str,
    queue_type: str,
    exchange: str,
    max_events: int | None,
):
    """Print the registry's events as JSON lines, from a durable queue of your own.

    Each event is acknowledged only after its line is written; stopped and started
    again with the same --queue, it resumes where it stopped. Messages that are not
    CloudEvents go to the dead-letter queue (reported on stderr)."""
    queue = regulator_queue(queue_name, exchange, pattern, queue_type)
    # Given several addresses, kombu connects to the first that answers and, when the
    # connection drops, fails over to the next (the consume loop reconnects).
    with Connection(amqp_uri, heartbeat=HEARTBEAT_SECONDS) as connection:
        watcher = EventWatcher(connection, queue, max_events)
        signal.signal(signal.SIGINT, watcher.request_stop)
        signal.signal(signal.SIGTERM, watcher.request_stop)
        try:
            # Declare once up front, so that a queue of this name with other
            # arguments is reported instead of retried forever.
            with watcher.establish_connection() as probe:
                declare(probe.default_channel, queue)
            watcher.run()
        except Stopped:
            pass
        except ChannelError as error:
            raise click.ClickException(f"cannot use queue {queue_name}: {error}") from None
