"""API keys: who is calling, in which role, and for how long. Keys are random 256-bit
tokens stored only as SHA-256 digests (a slow hash adds nothing for keys this long);
the raw key is shown once, when it is created or rotated.

A key works until it is revoked or its `expires_at` passes; rotating a key issues a
new one and lets the old one work for a grace period at most.

Each gateway process keeps the keys it verified for a few seconds
(`JVREG_API_KEY_CACHE_SECONDS`), so a request costs no database read: a revocation or
rotation made through this gateway forgets the key at once; one made elsewhere (another
gateway instance, `jvreg keys`) takes effect within that time. Expiry is checked on
every request, cached or not."""

import hashlib
import math
import secrets
import string
import time
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from bson import ObjectId
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from pymongo import ASCENDING
from pymongo.client_session import ClientSession
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.errors import Conflict, Forbidden, NotFound, Unauthorized, field_error
from shared.input_types import ISO_TEXT_ONLY
from shared.mongo import MongoStore, Repository
from shared.settings import Settings

Role = Literal["investor", "regulator", "ops"]
KEY_PREFIX = "jvk_"
OPS_KEY_PREFIX = "jvk_ops_"
BOOTSTRAP = "bootstrap"
BOOTSTRAP_OWNER = "platform-ops"
OwnerName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]

MAX_KEY_LIFETIME_DAYS = 730
MAX_ROTATION_GRACE_SECONDS = 7 * 24 * 3600
# last_used_at is written at most this often per key, so authenticating stays one
# indexed read (plus one small write a minute per key in use).
LAST_USED_RESOLUTION = timedelta(minutes=1)
MIN_BOOTSTRAP_KEY_BITS = 128
HOW_TO_MAKE_AN_OPS_KEY = (
    "python3 -c 'import secrets; print(\"jvk_ops_\" + secrets.token_urlsafe(32))'"
)


class KeyExpiry(BaseModel):
    """When a new key stops working: in some days, at a moment, or never."""

    model_config = ConfigDict(extra="forbid")

    # Strict: JSON `true` is not 1 day, nor "3" 3 days.
    expires_in_days: int | None = Field(
        None,
        ge=1,
        le=MAX_KEY_LIFETIME_DAYS,
        strict=True,
        description="the key stops working after this",
    )
    expires_at: Annotated[AwareDatetime, ISO_TEXT_ONLY] | None = Field(
        None,
        description=f"the key stops working at this moment (at most {MAX_KEY_LIFETIME_DAYS} "
        "days ahead); give this or expires_in_days, not both",
    )


class CreateApiKey(KeyExpiry):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"role": "investor", "owner": "Indus Pharma Holdings", "expires_in_days": 90}
            ]
        }
    )

    role: Role
    owner: OwnerName = Field(
        description="the organisation the key belongs to, e.g. 'Lahore Pharma Holdings'"
    )


class RotateApiKey(KeyExpiry):
    model_config = ConfigDict(json_schema_extra={"examples": [{"grace_seconds": 3600}]})

    grace_seconds: int = Field(
        0,
        ge=0,
        strict=True,  # JSON `false` is not 0 seconds
        le=MAX_ROTATION_GRACE_SECONDS,
        description="how long the old key keeps working; 0 (the default) ends it at once",
    )


API_KEY_EXAMPLE: dict[str, Any] = {
    "id": "key_6745a1c2e4b0f3a9d8c71b20",
    "role": "investor",
    "owner": "Indus Pharma Holdings",
    "created_at": "2025-05-02T09:30:00Z",
    "created_by": "key_6745a0f1e4b0f3a9d8c71b1f",
    "expires_at": "2025-07-31T09:30:00Z",
    "revoked_at": None,
    "last_used_at": "2025-05-06T11:02:41Z",
}


class ApiKey(BaseModel):
    """A key as anyone may see it: never the raw key, never its digest."""

    model_config = ConfigDict(json_schema_extra={"examples": [API_KEY_EXAMPLE]})

    id: str
    role: Role
    owner: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class ApiKeyCreated(ApiKey):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **API_KEY_EXAMPLE,
                    "last_used_at": None,
                    # shortened: a document carrying a whole raw key would be no-store
                    "key": "jvk_Xq3vYp8Rk2Lm…",
                }
            ]
        }
    )

    key: str = Field(description="the raw key; shown only in this response")


class Principal(BaseModel):
    """The caller, as services see it in `actor` fields."""

    key_id: str
    role: Role
    owner: str

    def require(self, *roles: str) -> "Principal":
        if self.role not in roles:
            raise Forbidden(
                f"a {self.role} key may not do this; it needs one of: " + ", ".join(roles)
            )
        return self

    def may_see(self, owner: str) -> bool:
        """Investors see what their organisation registered; others see everything."""
        return self.role != "investor" or owner == self.owner

    def may_manage(self, key: ApiKey) -> bool:
        """Ops manage every key; others only their own organisation's."""
        return self.role == "ops" or key.owner == self.owner


def digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    # ObjectIds grow with time, so ids sort in creation order (stable pagination).
    return f"key_{ObjectId()}"


def expiry(command: KeyExpiry, now: datetime) -> datetime | None:
    """When a key created `now` by `command` expires; bad bounds name the field."""
    if command.expires_in_days is not None and command.expires_at is not None:
        raise field_error(["expires_at"], "give expires_in_days or expires_at, not both")
    if command.expires_in_days is not None:
        return now + timedelta(days=command.expires_in_days)
    if command.expires_at is None:
        return None
    if command.expires_at <= now:
        raise field_error(["expires_at"], "must be in the future")
    if command.expires_at > now + timedelta(days=MAX_KEY_LIFETIME_DAYS):
        raise field_error(["expires_at"], f"must be at most {MAX_KEY_LIFETIME_DAYS} days ahead")
    return command.expires_at


def is_usable(key: ApiKey, now: datetime) -> bool:
    return key.revoked_at is None and (key.expires_at is None or now < key.expires_at)


def end_after_rotation(key: ApiKey, grace_seconds: int, now: datetime) -> dict:
    """The fields that end a rotated key: at once, or when its grace ends (never later
    than it would have expired anyway)."""
    if grace_seconds == 0:
        return {"revoked_at": now}
    grace_end = now + timedelta(seconds=grace_seconds)
    return {"expires_at": min(grace_end, key.expires_at or grace_end)}


def last_used_due(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


# Alphabets random keys are commonly drawn from, smallest first.
ALPHABETS = (
    string.digits,
    string.digits + "abcdef",
    string.digits + "ABCDEF",
    string.digits + string.ascii_lowercase,
    string.ascii_letters + string.digits,
    string.ascii_letters + string.digits + "-_",
    string.ascii_letters + string.digits + "+/=",
    string.printable.strip(),
)


def estimated_entropy_bits(raw_key: str) -> float:
    """An estimate of the guesses a key takes: its length times the bits per character
    of the smallest common alphabet (hex, base64url, …) that holds it. A key that
    repeats a few characters ("aaaa…", "abcabc…") counts only its distinct ones. The
    registry's own prefixes carry nothing."""
    secret = raw_key.removeprefix(OPS_KEY_PREFIX).removeprefix(KEY_PREFIX)
    if not secret:
        return 0.0
    symbols = set(secret)
    alphabet = next((a for a in ALPHABETS if symbols <= set(a)), None)
    size = len(alphabet) if alphabet else len(ALPHABETS[-1]) + len(symbols)
    bits_per_symbol = math.log2(size)
    if len(symbols) < min(len(secret), size) / 2:
        return len(symbols) * bits_per_symbol
    return len(secret) * bits_per_symbol


def weak_bootstrap_key(raw_key: str) -> str | None:
    """Why JVREG_OPS_KEY is too weak to guard the whole registry, or None."""
    bits = estimated_entropy_bits(raw_key)
    if bits >= MIN_BOOTSTRAP_KEY_BITS:
        return None
    return (
        f"JVREG_OPS_KEY is too weak: about {bits:.0f} bits of entropy, the bootstrap ops key "
        f"needs at least {MIN_BOOTSTRAP_KEY_BITS}. Make one with\n  {HOW_TO_MAKE_AN_OPS_KEY}\n"
        "or leave JVREG_OPS_KEY unset and `make dev` generates one."
    )


class VerifiedKeys:
    """The key documents this gateway process found by digest, each for `ttl` seconds;
    unknown keys are never kept (failed authentications are throttled instead)."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float):
        self.ttl = ttl
        self.entries: dict[str, tuple[float, dict]] = {}

    def get(self, key_digest: str) -> dict | None:
        entry = self.entries.get(key_digest)
        if entry is None or time.monotonic() >= entry[0]:
            return None
        return entry[1]

    def keep(self, key_digest: str, doc: dict) -> None:
        if self.ttl <= 0:
            return
        now = time.monotonic()
        if len(self.entries) >= self.MAX_ENTRIES:
            self.entries = {d: e for d, e in self.entries.items() if now < e[0]}
        self.entries[key_digest] = (now + self.ttl, doc)

    def forget(self, key_id: str) -> None:
        self.entries = {d: e for d, e in self.entries.items() if e[1]["_id"] != key_id}


class ApiKeyStore(Repository):
    def __init__(
        self,
        client,
        db,
        command_key: str | None = None,
        verified: VerifiedKeys | None = None,
    ):
        super().__init__(client, db, command_key)
        self.verified = verified or VerifiedKeys(ttl=0)

    @classmethod
    def ensure_indexes(cls, db):
        db.api_keys.create_index("digest", unique=True)
        db.api_keys.create_index([("owner", ASCENDING), ("_id", ASCENDING)])

    @property
    def api_keys(self):
        return self.db.api_keys

    @staticmethod
    def _key(doc: dict) -> ApiKey:
        return ApiKey(id=doc["_id"], **{k: v for k, v in doc.items() if k in ApiKey.model_fields})

    def _insert(
        self,
        role: str,
        owner: str,
        created_by: str,
        expires_at: datetime | None,
        raw_key: str | None = None,
        session: ClientSession | None = None,
    ) -> ApiKeyCreated:
        raw_key = raw_key or new_raw_key()
        created = ApiKeyCreated(
            id=new_key_id(),
            role=role,
            owner=owner,
            created_at=utcnow(),
            created_by=created_by,
            expires_at=expires_at,
            key=raw_key,
        )
        doc = created.model_dump(exclude={"id", "key"})
        self.api_keys.insert_one(
            {"_id": created.id, "digest": digest(raw_key), **doc}, session=session
        )
        return created

    def create(self, command: CreateApiKey, created_by: str) -> ApiKeyCreated:
        return self._insert(command.role, command.owner, created_by, expiry(command, utcnow()))

    def get(self, key_id: str) -> ApiKey:
        doc = self.api_keys.find_one({"_id": key_id})
        if doc is None:
            raise NotFound(f"no API key {key_id}")
        return self._key(doc)

    def find(self, owner: str | None, after: str | None, limit: int) -> list[ApiKey]:
        query: dict = {} if owner is None else {"owner": owner}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.api_keys.find(query).sort("_id", ASCENDING).limit(limit)
        return [self._key(doc) for doc in cursor]

    def revoke(self, key_id: str) -> ApiKey:
        """Ends a key at once; revoking it again keeps the first revocation's time."""
        self.api_keys.update_one(
            {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": utcnow()}}
        )
        self.verified.forget(key_id)
        return self.get(key_id)

    def rotate(self, key_id: str, command: RotateApiKey, rotated_by: str) -> ApiKeyCreated:
        """A new key of the same role and owner; the old one ends with its grace."""
        old = self.get(key_id)
        now = utcnow()
        if not is_usable(old, now):
            raise Conflict(f"API key {key_id} is revoked or expired; create a new one instead")
        new_expiry = expiry(command, now)

        def work(session: ClientSession) -> ApiKeyCreated:
            ended = self.api_keys.update_one(
                # Only one rotation of a key wins; the other changes nothing.
                {"_id": key_id, "revoked_at": None, "replaced_by": None},
                {"$set": end_after_rotation(old, command.grace_seconds, now)},
                session=session,
            )
            if ended.matched_count == 0:
                raise Conflict(f"API key {key_id} was rotated or revoked meanwhile")
            created = self._insert(old.role, old.owner, rotated_by, new_expiry, session=session)
            self.api_keys.update_one(
                {"_id": key_id}, {"$set": {"replaced_by": created.id}}, session=session
            )
            return created

        created = self.transaction(work)
        self.verified.forget(key_id)
        return created

    def install_bootstrap_ops_key(self, raw_key: str) -> None:
        """JVREG_OPS_KEY as an ops key; every earlier bootstrap key stops working, so a
        new JVREG_OPS_KEY is a rotation of the old one. A weak key is refused."""
        if problem := weak_bootstrap_key(raw_key):
            raise ValueError(problem)
        doc = self.api_keys.find_one({"digest": digest(raw_key)})
        if doc is None:
            try:
                key_id = self._insert("ops", BOOTSTRAP_OWNER, BOOTSTRAP, None, raw_key).id
            except DuplicateKeyError:  # another gateway instance installed it just now
                key_id = self.api_keys.find_one({"digest": digest(raw_key)})["_id"]
        else:
            key_id = doc["_id"]
        self.api_keys.update_many(
            {"created_by": BOOTSTRAP, "revoked_at": None, "_id": {"$ne": key_id}},
            {"$set": {"revoked_at": utcnow()}},
        )

    def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, raw_key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not raw_key.strip():
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        key_digest = digest(raw_key.strip())
        # The hot path: a key verified a moment ago, else one equality read on the
        # unique digest index.
        doc = self.verified.get(key_digest)
        if doc is None:
            doc = self.api_keys.find_one({"digest": key_digest})
            if doc is not None:
                self.verified.keep(key_digest, doc)
        now = utcnow()
        if doc is None or not is_usable(self._key(doc), now):
            raise Unauthorized("unknown, revoked or expired API key")
        if last_used_due(doc.get("last_used_at"), now):
            # Conditional on the value read: of several gateways, one writes; either
            # way it was used just now.
            self.api_keys.update_one(
                {"_id": doc["_id"], "last_used_at": doc.get("last_used_at")},
                {"$set": {"last_used_at": now}},
            )
            doc["last_used_at"] = now
        return Principal(key_id=doc["_id"], role=doc["role"], owner=doc["owner"])


class ApiKeys(MongoStore):
    """The gateway's database of API keys; installs the bootstrap ops key at start and
    refuses to start with a weak one."""

    def __init__(self, **kwargs):
        super().__init__(ApiKeyStore, **kwargs)

    def setup(self):
        super().setup()
        settings = Settings.from_config(self.container.config)
        self.verified = VerifiedKeys(settings.api_key_cache_seconds)
        ops_key = settings.ops_key
        if ops_key:
            self.repository().install_bootstrap_ops_key(ops_key)

    def repository(self, command_key: str | None = None) -> ApiKeyStore:
        return ApiKeyStore(self.client, self.db, command_key, self.verified)
