"""`jvreg signing-keys`: the key ring the gateway signs licence certificates with
(JVREG_SIGNING_KEYS_FILE; shared/signing.py). The gateway reads the file again when it
changes, so a rotation takes effect without a restart."""

from datetime import datetime
from pathlib import Path

import click
from pydantic import ValidationError

from shared.clock import utcnow
from shared.codec import rfc3339
from shared.settings import Settings
from shared.signing import MOMENT, KeyRing, NoSigningKey, read_key_ring, write_key_ring


def ensure_key_ring(path: Path) -> bool:
    """A key ring with one key at `path`, unless there is one already; whether it made
    one (`jvreg dev`, `make up`)."""
    if read_key_ring(path) is not None:
        return False
    ring, _ = KeyRing().rotated(utcnow())
    write_key_ring(path, ring)
    return True


def moment(context, parameter, value: str | None) -> datetime | None:
    try:
        return None if value is None else MOMENT.validate_python(value)
    except ValidationError:
        raise click.BadParameter("an ISO 8601 moment with a time zone") from None


key_file = click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: Settings().signing_keys_file,
    show_default="JVREG_SIGNING_KEYS_FILE, else var/signing-keys.json",
    help="the gateway's key ring",
)


@click.group("signing-keys")
def signing_keys():
    """The keys that sign licence certificates (published at /.well-known/jvreg-keys.json)."""


@signing_keys.command()
@key_file
def init(path: Path):
    """Create the ring with one key, unless there is one (a first start)."""
    made = ensure_key_ring(path)
    click.echo(f"{'created' if made else 'kept'} the key ring at {path}")


@signing_keys.command()
@key_file
@click.option(
    "--not-before",
    callback=moment,
    help="when the new key starts signing (default: now); a later moment publishes it "
    "ahead, for verifiers that keep a copy of the keys",
)
def rotate(path: Path, not_before: datetime | None):
    """Add a key that signs from --not-before; the key signing until then stops there,
    and stays published so that what it signed still verifies. Creates the ring."""
    ring, new = (read_key_ring(path) or KeyRing()).rotated(not_before or utcnow())
    write_key_ring(path, ring)
    click.echo(f"{new.kid} signs from {rfc3339(new.not_before)} ({path})")


@signing_keys.command("list")
@key_file
def list_keys(path: Path):
    """Every key of the ring: its id, its window, and which one signs now."""
    ring = read_key_ring(path)
    if ring is None:
        raise click.ClickException(f"no key ring at {path}: create one with `init`")
    try:
        signing = ring.signing_key(utcnow()).kid
    except NoSigningKey:
        signing = None
    for key in ring.keys:
        until = rfc3339(key.not_after) if key.not_after else "-"
        mark = "signing" if key.kid == signing else ""
        click.echo(f"{key.kid:24} {rfc3339(key.not_before):25} {until:25} {mark}".rstrip())


@signing_keys.command()
@key_file
@click.argument("kid")
def remove(path: Path, kid: str):
    """Withdraw a compromised key: it is no longer published, so nothing it signed
    verifies any more (holders fetch their certificates again, signed by another)."""
    ring = read_key_ring(path)
    try:
        write_key_ring(path, (ring or KeyRing()).without(kid))
    except KeyError:
        raise click.ClickException(f"no key {kid} in {path}") from None
    click.echo(f"removed {kid} ({path})")
