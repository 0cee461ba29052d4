"""`jvreg verify FILE|URL`: is a licence certificate genuine (its signature checked
offline against the registry's published keys), and is the licence it names in force
according to the register now? One exit code per answer."""

import json
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
import requests
from pydantic import ValidationError

from services.gateway.certificates import FORMAT, CertificatePayload, CertificateStatus
from shared.clock import utcnow
from shared.codec import rfc3339
from shared.settings import Settings
from shared.signing import NotGenuine, PublishedKeys, verify

IN_FORCE = 0  # genuine, and in force (or genuine, with --offline)
NOT_GENUINE = 1
CANNOT_CHECK = 2  # the certificate or the keys could not be read (and click's usage errors)
NOT_IN_FORCE = 3  # genuine, but suspended, revoked, expired or unknown to the register
STATUS_UNKNOWN = 4  # genuine; the register did not answer
KEYS_PATH = "/.well-known/jvreg-keys.json"
TIMEOUT_SECONDS = 10


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def read_json(source: str) -> Any:
    """The JSON document of a file or URL."""
    if is_url(source):
        response = requests.get(source, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        return response.json()
    return json.loads(Path(source).read_text())


def registry_of(source: str, registry: str | None) -> str:
    """The registry to ask: the one given, else the certificate URL's, else the local one."""
    if registry:
        return registry.rstrip("/")
    if is_url(source):
        parts = urlsplit(source)
        return f"{parts.scheme}://{parts.netloc}"
    return f"http://127.0.0.1:{Settings().gateway_port}"


def give_up(code: int, message: str) -> NoReturn:
    click.echo(message)
    raise SystemExit(code)


def describe(certificate: CertificatePayload, kid: str, signed_at: str) -> str:
    product = f", {certificate.product}" if certificate.product else ""
    return (
        f"GENUINE: signed by the registry's key {kid} at {signed_at}\n"
        f"  licence {certificate.license_number} ({certificate.license_type}{product})\n"
        f"  plant   {certificate.plant.name} ({certificate.plant.id})\n"
        f"  venture {certificate.venture.name} ({certificate.venture.id})\n"
        f"  issued  {rfc3339(certificate.issued_at)} under {certificate.decision_ref}, valid "
        f"{rfc3339(certificate.valid_from)} to {rfc3339(certificate.valid_until)}"
    )


def register_says(registry: str, certificate: CertificatePayload) -> tuple[int, str]:
    """Whether the register holds the licence in force now, as an exit code and a line."""
    url = f"{registry}/v1/public/licenses/{certificate.license_number}/certificate/status"
    try:
        response = requests.get(url, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        return STATUS_UNKNOWN, f"IN FORCE? UNKNOWN: {registry} did not answer ({error})"
    if response.status_code == 404:
        return NOT_IN_FORCE, f"NOT IN FORCE: the register at {registry} has no such licence"
    if response.status_code != 200:
        return STATUS_UNKNOWN, (f"IN FORCE? UNKNOWN: {registry} answered {response.status_code}")
    status = CertificateStatus.model_validate_json(response.content)
    until = rfc3339(status.valid_until) if status.valid_until else "-"
    if not status.in_force:
        why = f"its validity ended {until}" if status.status == "granted" else status.status
        return NOT_IN_FORCE, f"NOT IN FORCE according to the register at {registry}: {why}"
    renewed = (
        f"; renewed since this certificate (which says {rfc3339(certificate.valid_until)})"
        if status.valid_until != certificate.valid_until
        else ""
    )
    return IN_FORCE, f"IN FORCE according to the register at {registry}: until {until}{renewed}"


@click.command("verify")
@click.argument("source", metavar="FILE|URL")
@click.option(
    "--registry",
    envvar="JVREG_REGISTRY_URL",
    help="the registry whose keys and register to use (default: the URL's, else "
    "http://127.0.0.1:JVREG_GATEWAY_PORT)",
)
@click.option(
    "--keys",
    "keys_source",
    metavar="FILE|URL",
    help=f"the published keys to check against (default: the registry's {KEYS_PATH})",
)
@click.option("--offline", is_flag=True, help="check the signature only; do not ask the register")
def verify_command(source: str, registry: str | None, keys_source: str | None, offline: bool):
    """Check a licence certificate (a file, or the URL it is served at): exit 0 when it is
    genuine and in force, 1 when it is not genuine, 3 when the licence is not in force
    (suspended, revoked, expired), 4 when the register did not answer, 2 when the
    certificate or the keys could not be read."""
    registry = registry_of(source, registry)
    keys_source = keys_source or registry + KEYS_PATH
    try:
        document = read_json(source)
    except (OSError, ValueError, requests.RequestException) as error:
        give_up(CANNOT_CHECK, f"CANNOT CHECK: could not read a certificate from {source} ({error})")
    try:
        keys = PublishedKeys.model_validate(read_json(keys_source))
    except (OSError, ValueError, requests.RequestException) as error:
        give_up(CANNOT_CHECK, f"CANNOT CHECK: could not read the keys from {keys_source} ({error})")
    try:
        payload = verify(document, keys, utcnow())
    except NotGenuine as reason:
        give_up(NOT_GENUINE, f"NOT GENUINE: {reason}")
    if payload.get("format") != FORMAT:
        give_up(NOT_GENUINE, f"NOT GENUINE: signed, but not a licence certificate ({FORMAT})")
    try:
        certificate = CertificatePayload.model_validate(payload)
    except ValidationError as error:
        give_up(NOT_GENUINE, f"NOT GENUINE: signed, but not a valid licence certificate ({error})")
    click.echo(describe(certificate, document["kid"], payload["signed_at"]))
    if offline:
        give_up(IN_FORCE, "IN FORCE? not asked (--offline)")
    code, line = register_says(registry, certificate)
    give_up(code, line)
