"""`jvreg keys`: create, list, revoke and rotate API keys, straight on the gateway's
database (like `jvreg reconcile`), so ops can act even when no ops key is at hand."""

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
from pydantic import ValidationError

from services.gateway.keys import ApiKey, ApiKeyStore, CreateApiKey, RotateApiKey
from shared.errors import RegistryError
from shared.mongo import connect
from shared.pagination import every_item
from shared.settings import Settings

CREATED_BY = "jvreg-cli"


@contextmanager
def key_store() -> Iterator[ApiKeyStore]:
    settings = Settings()
    client = connect(settings.mongo_uri, appname="jvreg-keys")
    try:
        db = client[settings.database_name("gateway")]
        ApiKeyStore.ensure_indexes(db)
        yield ApiKeyStore(client, db)
    except (RegistryError, ValidationError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        client.close()


def _when(moment) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def echo_key(key: ApiKey, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(key.model_dump(mode="json")))
        return
    click.echo(
        f"{key.id:28} {key.role:9} {key.owner[:30]:30} {_when(key.created_at):25} "
        f"{_when(key.expires_at):25} {_when(key.revoked_at):25} {_when(key.last_used_at)}"
    )


def echo_created(created, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(created.model_dump(mode="json")))
        return
    click.echo(f"created {created.id} ({created.role}, {created.owner})")
    if created.expires_at:
        click.echo(f"expires at {_when(created.expires_at)}")
    click.echo(f"key (shown only now): {created.key}")


@click.group()
def keys():
    """API keys: create, list, revoke, rotate (on the gateway's database)."""


json_option = click.option("--json", "as_json", is_flag=True, help="JSON lines")
expiry_options = [
    click.option("--expires-in-days", type=int, default=None, help="the key ends after this"),
    click.option("--expires-at", default=None, help="the key ends at this ISO 8601 moment"),
]


def with_expiry(command):
    for option in reversed(expiry_options):
        command = option(command)
    return command


@keys.command("create")
@click.option("--role", type=click.Choice(["investor", "regulator", "ops"]), required=True)
@click.option("--owner", required=True, help="the organisation the key belongs to")
@with_expiry
@json_option
def create_key(role, owner, expires_in_days, expires_at, as_json):
    """Create a key; the raw key is printed once."""
    with key_store() as store:
        command = CreateApiKey(
            role=role, owner=owner, expires_in_days=expires_in_days, expires_at=expires_at
        )
        echo_created(store.create(command, created_by=CREATED_BY), as_json)


@keys.command("list")
@click.option("--owner", default=None, help="only this organisation's keys")
@json_option
def list_keys(owner, as_json):
    """Every key (never a raw key): id, role, owner, created, expires, revoked, last used."""
    with key_store() as store:
        found = every_item(
            lambda after, limit: [k.model_dump() for k in store.find(owner, after, limit)]
        )
    if not as_json:
        click.echo(
            f"{'id':28} {'role':9} {'owner':30} {'created':25} {'expires':25} "
            f"{'revoked':25} last used"
        )
    for item in found:
        echo_key(ApiKey(**item), as_json)
    if not as_json:
        click.echo(f"{len(found)} key(s)")


@keys.command("revoke")
@click.argument("key_id")
def revoke_key(key_id):
    """End a key at once: the next request with it is 401."""
    with key_store() as store:
        key = store.revoke(key_id)
    click.echo(f"revoked {key.id} at {_when(key.revoked_at)}")


@keys.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace-seconds",
    type=int,
    default=0,
    show_default=True,
    help="how long the old key keeps working",
)
@with_expiry
@json_option
def rotate_key(key_id, grace_seconds, expires_in_days, expires_at, as_json):
    """A new key of the same role and owner; the old one ends after the grace."""
    with key_store() as store:
        command = RotateApiKey(
            grace_seconds=grace_seconds, expires_in_days=expires_in_days, expires_at=expires_at
        )
        echo_created(store.rotate(key_id, command, rotated_by=CREATED_BY), as_json)
