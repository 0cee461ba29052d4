"""`jvreg dlq`: what ended in the dead-letter queue, and sending it back."""

import json

import click

from shared.dead_letters import DeadLetterQueue
from shared.settings import Settings


@click.group()
@click.option("--amqp-uri", default=None, help="RabbitMQ (default: JVREG_AMQP_URI)")
@click.pass_context
def dlq(context, amqp_uri):
    """Dead letters: events a consumer could not apply."""
    context.obj = DeadLetterQueue(amqp_uri or Settings().amqp_uri)


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.pass_obj
def list_dead_letters(queue: DeadLetterQueue, as_json: bool):
    """Show every dead letter: queue, event id, type, error, attempts."""
    letters = queue.list()
    if as_json:
        for letter in letters:
            click.echo(json.dumps(letter))
        return
    if not letters:
        click.echo("no dead letters")
        return
    click.echo(f"{'queue':32} {'event id':36} {'type':32} {'attempts':>8}  error")
    for letter in letters:
        click.echo(
            f"{letter['queue']:32} {letter['event_id'] or '-':36} "
            f"{letter['type'] or '-':32} {letter['attempts']:>8}  {letter['error']}"
        )
    click.echo(f"{len(letters)} dead letter(s)")


@dlq.command()
@click.option("--id", "event_id", default=None, help="only the dead letters of this event id")
@click.option("--all", "everything", is_flag=True, help="every dead letter")
@click.pass_obj
def requeue(queue: DeadLetterQueue, event_id: str | None, everything: bool):
    """Send dead letters back to the queue they came from."""
    if bool(event_id) == everything:
        raise click.UsageError("say which: --id EVENT_ID or --all")
    sent = queue.requeue(event_id)
    click.echo(f"requeued {sent} dead letter(s)")
    if event_id and sent == 0:
        raise SystemExit(1)


@dlq.command()
@click.option("--id", "event_id", required=True, help="the event id of the dead letters")
@click.pass_obj
def discard(queue: DeadLetterQueue, event_id: str):
    """Remove the dead letters of one event id for good (one that can never be
    applied), printing each with its body as a JSON line for the record."""
    letters = queue.discard(event_id)
    for letter in letters:
        click.echo(json.dumps(letter))
    click.echo(f"discarded {len(letters)} dead letter(s)")
    if not letters:
        raise SystemExit(1)
