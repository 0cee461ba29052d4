"""Web sessions: a signed-in browser holds an opaque session id in an HttpOnly,
SameSite=Strict cookie — never its API key. The gateway's database keeps each session
under the SHA-256 digest of its id (a copy of the database opens no session), found by
equality only, with the key it was opened with and its CSRF token; a TTL index removes
ended ones. Every page checks the key again, so revoking a key (or its expiry) ends its
sessions too, with the same roles as the API.

A visitor of the sign-in form gets an anonymous session first, whose token guards the
form (login CSRF); signing in replaces it with a new one (no session fixation)."""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.gateway.keys import ApiKeyStore, Principal, digest, is_usable
from shared.clock import utcnow
from shared.errors import NotFound
from shared.mongo import MongoStore, Repository

COOKIE = "jvreg_session"
SIGNED_IN_LIFETIME = timedelta(hours=8)
# Long enough to fill in the sign-in form.
ANONYMOUS_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class WebSession:
    id: str  # the raw id, only ever in the cookie
    csrf_token: str
    expires_at: datetime
    principal: Principal | None = None


class SessionStore(Repository):
    @classmethod
    def ensure_indexes(cls, db):
        db.web_sessions.create_index("expires_at", expireAfterSeconds=0)

    @property
    def sessions(self):
        return self.db.web_sessions

    def start(self, principal: Principal | None = None) -> WebSession:
        lifetime = SIGNED_IN_LIFETIME if principal else ANONYMOUS_LIFETIME
        session = WebSession(
            id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            expires_at=utcnow() + lifetime,
            principal=principal,
        )
        self.sessions.insert_one(
            {
                "_id": digest(session.id),
                "csrf_token": session.csrf_token,
                "key_id": principal.key_id if principal else None,
                "expires_at": session.expires_at,
            }
        )
        return session

    def find(self, session_id: str | None) -> WebSession | None:
        """The live session of a cookie's id; None when there is none, it has ended or
        its key no longer works."""
        if not session_id:
            return None
        doc = self.sessions.find_one({"_id": digest(session_id)})
        # The TTL index removes ended sessions within a minute or so; until then, check.
        if doc is None or doc["expires_at"] <= utcnow():
            return None
        principal = None
        if doc["key_id"] is not None:
            principal = self._principal(doc["key_id"])
            if principal is None:
                return None
        return WebSession(session_id, doc["csrf_token"], doc["expires_at"], principal)

    def _principal(self, key_id: str) -> Principal | None:
        try:
            key = ApiKeyStore(self.client, self.db).get(key_id)
        except NotFound:
            return None
        if not is_usable(key, utcnow()):
            return None
        return Principal(key_id=key.id, role=key.role, owner=key.owner)

    def end(self, session_id: str) -> None:
        self.sessions.delete_one({"_id": digest(session_id)})


class WebSessions(MongoStore):
    """The gateway's sessions of signed-in browsers (its own database)."""

    def __init__(self, **kwargs):
        super().__init__(SessionStore, **kwargs)

    def repository(self, command_key: str | None = None) -> SessionStore:
        return SessionStore(self.client, self.db, command_key)
