"""`jvreg broker-users`: create or update the registry's RabbitMQ users (every service's
and ops') with passwords given in the environment. Compose's `broker-users` step runs
it before any service starts; `make dev` creates the same users itself."""

import os

import click
import requests

from shared import messaging
from shared.broker_users import create_users_for
from shared.settings import Settings


def password_variable(name: str) -> str:
    """The environment variable holding the broker password of `name` (a service or ops)."""
    return f"JVREG_BROKER_PASSWORD_{name.upper()}"


@click.command("broker-users")
def broker_users():
    """Create or update every service's broker user (and ops'), with the passwords in
    JVREG_BROKER_PASSWORD_<SERVICE>, through JVREG_BROKER_ADMIN_URL."""
    settings = Settings()
    names = (*messaging.SERVICES, messaging.OPS)
    if missing := [password_variable(n) for n in names if not os.environ.get(password_variable(n))]:
        raise click.ClickException("set " + ", ".join(missing))
    passwords = {name: os.environ[password_variable(name)] for name in names}
    try:
        create_users_for(settings, passwords)
    except requests.RequestException as error:
        raise click.ClickException(
            f"RabbitMQ's management API refused or failed: {error}"
        ) from None
    for name in names:
        click.echo(f"broker user {settings.broker_user_of(name)}: ok")
