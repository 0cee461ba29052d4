"""`jvreg regulators add NAME`: a RabbitMQ user of a regulator's own, for `jvreg watch`.

It may declare, bind (to `licensing.events` only) and read queues named
`regulator.NAME.*`, and nothing else: it cannot publish on the registry's exchanges
nor read anyone else's queues (shared.broker_users.regulator_permissions)."""

import re
import secrets
import sys

import click
import requests

from shared.broker_users import (
    RabbitAdmin,
    regulator_permissions,
    regulator_queue_prefix,
    vhost_of,
    with_credentials,
)
from shared.settings import Settings

REGULATOR_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def regulator_user(settings: Settings, name: str) -> str:
    return settings.broker_user_of(f"regulator-{name}")


def check_name(ctx, param, value: str) -> str:
    if not REGULATOR_NAME.match(value):
        raise click.BadParameter("lower-case letters, digits and '-', e.g. drap-licensing")
    return value


@click.group()
def regulators():
    """Regulators' broker users (for `jvreg watch`)."""


@regulators.command()
@click.argument("name", callback=check_name)
def add(name: str):
    """Create the broker user of regulator NAME and print its credentials, once."""
    settings = Settings()
    admin = RabbitAdmin(settings.broker_admin_url)
    user = regulator_user(settings, name)
    try:
        if admin.user_exists(user):
            click.echo(
                f"broker user {user} exists already; its password is not shown again", err=True
            )
            sys.exit(1)
        password = secrets.token_urlsafe(24)
        admin.put_user(user, password)
        admin.permit(vhost_of(settings.amqp_uri), user, regulator_permissions(name))
    except requests.RequestException as error:
        raise click.ClickException(
            f"RabbitMQ's management API refused or failed: {error}"
        ) from None
    prefix = regulator_queue_prefix(name)
    click.echo(
        f"broker user: {user}\n"
        f"password:    {password}   (shown only now)\n"
        f"AMQP URI:    {with_credentials(settings.amqp_uri, user, password)}\n"
        f"queues:      {prefix}* (bound to licensing.events)\n"
        f"watch with:  jvreg watch --amqp-uri '<AMQP URI>' --queue {prefix}decisions"
    )
