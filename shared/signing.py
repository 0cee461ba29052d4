"""Signed documents: Ed25519 signatures over canonical JSON (RFC 8785, JCS), made with
a key ring of keys that each have a key id (`kid`) and a validity window, so that keys
can be rotated while what an earlier key signed still verifies.

A signed document is `{"payload": {...}, "kid": "...", "signature": "<base64url>"}`:
the signature is over the JCS bytes of the payload, which carries the moment it was
signed (`signed_at`). A verifier needs only the published public keys (`PublishedKeys`,
JWK-like OKP entries): it accepts a signature made by a published key within that key's
window. The key ring (private keys) lives in a file only the gateway reads
(`JVREG_SIGNING_KEYS_FILE`); `jvreg signing-keys` writes it."""

import base64
import os
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.codec import rfc3339

# A signature claiming to be made later than this past the verifier's clock is refused:
# clocks disagree a little, a document from the future is forged or misdated.
CLOCK_SKEW = timedelta(minutes=5)
KEY_EXAMPLE: dict[str, Any] = {
    "kty": "OKP",
    "crv": "Ed25519",
    "alg": "EdDSA",
    "use": "sig",
    "kid": "jvreg-20261130-3fa2c1",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    "not_before": "2026-11-30T17:00:00.000Z",
    "not_after": None,
}


MOMENT = TypeAdapter(AwareDatetime)


class NotGenuine(Exception):
    """A signed document that does not verify, and why (the first reason found)."""


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(document: Any) -> bytes:
    """The RFC 8785 (JCS) bytes of a JSON document: the same for every equal document,
    whatever the order of its members or the spelling of its strings' escapes."""
    return rfc8785.dumps(document)


class Window(BaseModel):
    """When a key signs: from `not_before`, until `not_after` (open when null)."""

    not_before: AwareDatetime
    not_after: AwareDatetime | None = None

    def holds(self, moment: datetime) -> bool:
        return self.not_before <= moment and (self.not_after is None or moment < self.not_after)


class PublicKey(Window):
    """A published verification key: a JWK (RFC 8037 OKP, Ed25519) with its window."""

    model_config = ConfigDict(json_schema_extra={"examples": [KEY_EXAMPLE]})

    kty: Literal["OKP"] = "OKP"
    crv: Literal["Ed25519"] = "Ed25519"
    alg: Literal["EdDSA"] = "EdDSA"
    use: Literal["sig"] = "sig"
    kid: str
    x: str = Field(description="the public key, base64url without padding")

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(from_b64url(self.x)).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class PublishedKeys(BaseModel):
    """Every key a verifier may meet: the one signing now, those before it (so that what
    they signed still verifies) and one published ahead of its window."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"keys": [KEY_EXAMPLE]}]})

    keys: list[PublicKey]

    def named(self, kid: str) -> PublicKey | None:
        return next((key for key in self.keys if key.kid == kid), None)


class SigningKey(Window):
    """A key of the ring: its id, window and private key (`d`, base64url, as in a JWK)."""

    kid: str
    d: str = Field(repr=False)

    @classmethod
    def generate(cls, not_before: datetime) -> "SigningKey":
        private = Ed25519PrivateKey.generate().private_bytes_raw()
        kid = f"jvreg-{not_before:%Y%m%d}-{secrets.token_hex(3)}"
        return cls(kid=kid, d=b64url(private), not_before=not_before)

    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(from_b64url(self.d))

    def public(self) -> PublicKey:
        raw = self.private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return PublicKey(
            kid=self.kid, x=b64url(raw), not_before=self.not_before, not_after=self.not_after
        )

    def sign(self, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
        """`payload` signed now: the document with `signed_at` added to its payload."""
        payload = {**payload, "signed_at": rfc3339(now)}
        signature = self.private_key().sign(canonical(payload))
        return {"payload": payload, "kid": self.kid, "signature": b64url(signature)}


class NoSigningKey(Exception):
    """No key of the ring may sign now."""


class KeyRing(BaseModel):
    keys: list[SigningKey] = []

    def signing_key(self, now: datetime) -> SigningKey:
        """The newest key whose window holds `now`."""
        usable = [key for key in self.keys if key.holds(now)]
        if not usable:
            raise NoSigningKey(f"none of the {len(self.keys)} signing key(s) is valid now")
        return max(usable, key=lambda key: key.not_before)

    def published(self) -> PublishedKeys:
        return PublishedKeys(keys=[key.public() for key in self.keys])

    def rotated(self, not_before: datetime) -> tuple["KeyRing", SigningKey]:
        """The ring with a new key signing from `not_before`; every key that would still
        sign then stops there (what it signed before stays verifiable)."""
        new = SigningKey.generate(not_before)
        kept = [
            key.model_copy(update={"not_after": not_before}) if key.holds(not_before) else key
            for key in self.keys
        ]
        return KeyRing(keys=[*kept, new]), new

    def without(self, kid: str) -> "KeyRing":
        """The ring without a key (a compromised one: what it signed no longer verifies)."""
        if not any(key.kid == kid for key in self.keys):
            raise KeyError(kid)
        return KeyRing(keys=[key for key in self.keys if key.kid != kid])


def verify(document: Any, keys: PublishedKeys, now: datetime) -> dict[str, Any]:
    """The payload of a genuine signed document, or NotGenuine saying why not: its key
    is unknown, it claims to be signed outside that key's window (or in the future), or
    its signature does not match its payload."""
    if not isinstance(document, dict) or not {"payload", "kid", "signature"} <= document.keys():
        raise NotGenuine("not a signed document: it needs payload, kid and signature")
    payload, kid = document["payload"], document["kid"]
    if not isinstance(payload, dict) or not isinstance(kid, str):
        raise NotGenuine("not a signed document: payload must be an object, kid a string")
    key = keys.named(kid)
    if key is None:
        raise NotGenuine(f"signed with key {kid!r}, which is not among the published keys")
    try:
        signed_at = MOMENT.validate_python(payload.get("signed_at"))
    except ValidationError:
        raise NotGenuine("the payload has no valid signed_at") from None
    if signed_at > now + CLOCK_SKEW:
        raise NotGenuine(f"it claims to be signed at {rfc3339(signed_at)}, in the future")
    if not key.holds(signed_at):
        until = rfc3339(key.not_after) if key.not_after else "on"
        raise NotGenuine(
            f"it claims to be signed at {rfc3339(signed_at)}, outside the window of key "
            f"{kid} ({rfc3339(key.not_before)} to {until})"
        )
    try:
        signature = from_b64url(document["signature"])
        message = canonical(payload)
    except (TypeError, ValueError, AttributeError):
        raise NotGenuine("the signature or payload cannot be read") from None
    if not key.verifies(signature, message):
        raise NotGenuine(f"the signature does not match the payload under key {kid}: altered")
    return payload


def read_key_ring(path: Path) -> KeyRing | None:
    """The key ring in `path`, or None when there is none; read again when it changes
    (a rotation takes effect without a restart)."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    # Every write is a new file (write_key_ring), so its inode tells it apart even when
    # two writes fall within one tick of the file system's clock.
    return _parsed_key_ring(path, (found.st_ino, found.st_mtime_ns, found.st_size))


@lru_cache(maxsize=4)
def _parsed_key_ring(path: Path, version: tuple[int, int, int]) -> KeyRing:
    return KeyRing.model_validate_json(path.read_bytes())


def write_key_ring(path: Path, ring: KeyRing) -> None:
    """Replace the key ring at once (a reader sees the old or the new one, never half),
    readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(ring.model_dump_json(indent=2) + "\n")
    os.replace(partial, path)
