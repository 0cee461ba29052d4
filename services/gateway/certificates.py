"""Licence certificates: what the register says was granted, signed by the gateway
with the registry's Ed25519 key (shared/signing.py), as JSON and as a QR code.

The gateway signs because it is the one part that reads a licence, its plant and its
venture together (from their owners, by RPC). A certificate is made when it is asked
for, from the licence's history, and signed then by the key in use: nothing to store,
and a rotation needs nothing re-signed. Detail: docs/licensing.md, "Certificates"."""

import io
import logging
from datetime import datetime
from typing import Any

import segno
from nameko.dependency_providers import DependencyProvider
from pydantic import BaseModel, ConfigDict, Field

from services.licensing.contract import Licence, LicenceStatus, LicenceType
from shared.clock import utcnow
from shared.codec import dumps, to_jsonable
from shared.errors import Conflict, ServiceUnavailable
from shared.settings import Settings
from shared.signing import KEY_EXAMPLE, KeyRing, NoSigningKey, PublishedKeys, read_key_ring

log = logging.getLogger(__name__)

FORMAT = "jvreg-licence-certificate/1"
# The events that issue a licence: its grant and each renewal (a reinstatement lifts a
# suspension of the same issue).
ISSUING_EVENTS = ("license.granted", "license.renewed")

PAYLOAD_EXAMPLE: dict[str, Any] = {
    "format": FORMAT,
    "issuer": "JV Pharma Registry",
    "license_number": "lic_6652b1e5c8f3a04d2e3f4051",
    "license_type": "dml_formulation",
    "product": None,
    "plant": {"id": "fac_6651a0d4b7e2f93c1d2e3f40", "name": "Rashakai Formulation Plant 1"},
    "venture": {"id": "jv_6650f1c2a9d3e81b2c4d5e6f", "name": "Indus-Yangtze API Works"},
    "valid_from": "2026-12-14T08:15:00.000Z",
    "valid_until": "2031-12-14T23:59:59.999Z",
    "decision_ref": "DRAP/LIC/2026/0412",
    "issued_at": "2026-12-14T08:15:00.000Z",
    "signed_at": "2026-12-20T10:02:11.318Z",
}
CERTIFICATE_EXAMPLE: dict[str, Any] = {
    "payload": PAYLOAD_EXAMPLE,
    "kid": KEY_EXAMPLE["kid"],
    "signature": "q0Vb2K0n0Yt3o3s8bqJ8yq1C1xS1u0dD4o2cEw0bH7T1x9y4p6hXk2m1hN3xg2W0v"
    "0oTn1bX3c6dV8sQmZ5pBw",
}


class Named(BaseModel):
    id: str
    name: str


class CertificatePayload(BaseModel):
    """What was granted, as the register holds it. `valid_from` is the first grant,
    `issued_at` and `decision_ref` the latest grant or renewal, `valid_until` the end
    of that one; the names are those registered when the certificate was signed."""

    model_config = ConfigDict(json_schema_extra={"examples": [PAYLOAD_EXAMPLE]})

    format: str = Field(FORMAT, description="what this document is, and its version")
    issuer: str = "JV Pharma Registry"
    license_number: str = Field(description="the licence's id in the register")
    license_type: LicenceType
    product: str | None = None
    plant: Named
    venture: Named
    valid_from: datetime
    valid_until: datetime
    decision_ref: str
    issued_at: datetime
    signed_at: datetime | None = Field(None, description="added by the signature")


class Certificate(BaseModel):
    """A signed certificate: Ed25519 (`kid`'s key) over the RFC 8785 bytes of `payload`."""

    model_config = ConfigDict(json_schema_extra={"examples": [CERTIFICATE_EXAMPLE]})

    payload: CertificatePayload
    kid: str = Field(description="the key that signed it: /.well-known/jvreg-keys.json")
    signature: str = Field(description="Ed25519 signature, base64url without padding")


class CertificateStatus(BaseModel):
    """Whether the licence a certificate names is in force, according to the register
    now: granted and before its valid_until."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "license_number": PAYLOAD_EXAMPLE["license_number"],
                    "status": "suspended",
                    "valid_until": PAYLOAD_EXAMPLE["valid_until"],
                    "in_force": False,
                    "checked_at": "2027-03-02T09:30:00.000Z",
                }
            ]
        }
    )

    license_number: str
    status: LicenceStatus
    valid_until: datetime | None
    in_force: bool
    checked_at: datetime


def certificate_payload(
    licence: dict, history: list[dict], facility: dict, venture: dict
) -> dict[str, Any]:
    """The payload of a licence's certificate (as JSON), from the licence, its history
    (in order) and its plant and venture; 409 when it was never granted."""
    issues = [entry for entry in history if entry["event"] in ISSUING_EVENTS]
    if not issues:
        raise Conflict(
            f"licence {licence['id']} has never been granted (it is {licence['status']}): "
            "it has no certificate",
            extra={"current": licence["status"]},
        )
    latest = issues[-1]
    payload = CertificatePayload(
        license_number=licence["id"],
        license_type=licence["type"],
        product=licence.get("product"),
        plant=Named(id=facility["id"], name=facility["name"]),
        venture=Named(id=venture["id"], name=venture["name"]),
        valid_from=issues[0]["time"],
        valid_until=latest["fields"]["valid_until"],
        decision_ref=latest["fields"]["decision_ref"],
        issued_at=latest["time"],
    )
    return to_jsonable(payload.model_dump(exclude={"signed_at"}))


def in_force(licence: dict, now: datetime) -> CertificateStatus:
    valid_until = Licence.model_validate(licence).valid_until
    return CertificateStatus(
        license_number=licence["id"],
        status=licence["status"],
        valid_until=valid_until,
        # Expired by its date even before the expiry sweep has marked it so.
        in_force=licence["status"] == "granted" and valid_until is not None and now < valid_until,
        checked_at=now,
    )


def qr_code_svg(certificate: dict, title: str) -> bytes:
    """The certificate's JSON as a QR code, an SVG: `jvreg verify` takes its text."""
    code = segno.make(dumps(certificate), error="m")
    buffer = io.BytesIO()
    code.save(buffer, kind="svg", scale=3, border=4, title=title, xmldecl=False)
    return buffer.getvalue()


class Signer:
    """The key ring as a worker uses it: the key that signs now, and every public key."""

    def __init__(self, ring: KeyRing | None, path: str):
        self._ring = ring
        self._path = path

    def published(self) -> PublishedKeys:
        return self._ring.published() if self._ring else PublishedKeys(keys=[])

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        try:
            if self._ring is None:
                raise NoSigningKey(f"there is no key ring at {self._path}")
            return self._ring.signing_key(now).sign(payload, now)
        except NoSigningKey as missing:
            raise ServiceUnavailable(
                f"the registry cannot sign certificates now: {missing}",
                extra={"retry_after": 60},
            ) from None


class SigningKeys(DependencyProvider):
    """The registry's signing keys (JVREG_SIGNING_KEYS_FILE), read again when the file
    changes, so that `jvreg signing-keys rotate` needs no restart."""

    def setup(self):
        self.path = Settings.from_config(self.container.config).signing_keys_file
        if read_key_ring(self.path) is None:
            log.warning(
                "no signing keys at %s: certificates answer 503 until ops create one "
                "(jvreg signing-keys init --file %s)",
                self.path,
                self.path,
            )

    def get_dependency(self, worker_ctx) -> Signer:
        return Signer(read_key_ring(self.path), str(self.path))
