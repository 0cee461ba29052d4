"""API keys: who is calling, in which role. Keys are random 256-bit tokens stored
only as SHA-256 digests (a slow hash adds nothing for keys this long); the raw key
is shown once, when it is created."""

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.errors import Forbidden, Unauthorized
from shared.mongo import MongoStore, Repository
from shared.settings import Settings

Role = Literal["investor", "regulator", "ops"]
KEY_PREFIX = "jvk_"
OwnerName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    owner: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)
    ] = Field(description="the organisation the key belongs to, e.g. 'Lahore Pharma Holdings'")


class ApiKeyCreated(BaseModel):
    id: str
    role: Role
    owner: str
    key: str = Field(description="the raw key; shown only in this response")
    created_at: datetime


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


def digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyStore(Repository):
    @classmethod
    def ensure_indexes(cls, db):
        db.api_keys.create_index("digest", unique=True)

    def create(
        self, role: str, owner: str, created_by: str, raw_key: str | None = None
    ) -> ApiKeyCreated:
        raw_key = raw_key or KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(6)
        now = datetime.now(UTC)
        self.db.api_keys.insert_one(
            {
                "_id": key_id,
                "digest": digest(raw_key),
                "role": role,
                "owner": owner,
                "created_by": created_by,
                "created_at": now,
            }
        )
        return ApiKeyCreated(id=key_id, role=role, owner=owner, key=raw_key, created_at=now)

    def ensure_bootstrap_ops_key(self, raw_key: str) -> None:
        if self.db.api_keys.find_one({"digest": digest(raw_key)}) is None:
            self.create("ops", "platform-ops", created_by="bootstrap", raw_key=raw_key)

    def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, raw_key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not raw_key.strip():
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        doc = self.db.api_keys.find_one({"digest": digest(raw_key.strip()), "revoked_at": None})
        if doc is None:
            raise Unauthorized("unknown or revoked API key")
        return Principal(key_id=doc["_id"], role=doc["role"], owner=doc["owner"])


class ApiKeys(MongoStore):
    """The gateway's database of API keys; installs the bootstrap ops key at start."""

    def __init__(self, **kwargs):
        super().__init__(ApiKeyStore, **kwargs)

    def setup(self):
        super().setup()
        ops_key = Settings.from_config(self.container.config).ops_key
        if ops_key:
            self.repository().ensure_bootstrap_ops_key(ops_key)
