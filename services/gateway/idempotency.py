"""Idempotent commands at the HTTP edge, with the semantics clients know from Stripe.

A command (POST, PUT, PATCH, DELETE) sent with an `Idempotency-Key` is carried out once
per key and caller (the API key id): sent again with the same request, it gets the first
answer replayed (status, body, Location/ETag/Content-Type, plus `Idempotent-Replayed:
true`); with another request, 422; while the first is still running, 409 with
Retry-After. 5xx answers are not kept, so a retry tries again; 4xx answers are.

Records live 24 h in the gateway's database and are found by `_id` only. A TTL index on
`expires_at` removes old ones (MongoDB's TTL monitor walks that index; SecantusDB's
sweeper scans the collection once a minute); until then an expired record counts as
absent. A raw secret shown once (an API key, a webhook signing secret) is never stored:
its replay has the field null and a `replay_notice` saying why.

The services' own command keys (shared/mongo.py) stay underneath: an RPC redelivered
after a crash is still applied once, whatever the gateway remembers.
"""

import hashlib
import io
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Literal

from pymongo.errors import DuplicateKeyError, PyMongoError
from werkzeug.wrappers import Request, Response

from services.gateway.keys import ApiKeyStore
from services.gateway.problems import BadRequest, IdempotencyKeyInUse, IdempotencyKeyReused
from shared import codec
from shared.clock import utcnow
from shared.errors import ServiceUnavailable, Unauthorized
from shared.mongo import MongoStore, Repository

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
RECORD_LIFETIME = timedelta(hours=24)
# A record still running after this long belongs to a gateway that died mid-request:
# no request lasts that long (each of its RPCs is bounded by JVREG_RPC_TIMEOUT_SECONDS).
IN_FLIGHT_LEASE = timedelta(seconds=60)
RETRY_AFTER_SECONDS = 1
REPLAYED_HEADERS = ("Content-Type", "Location", "ETag")
# Response fields holding a secret shown only once (ApiKeyCreated.key,
# SubscriptionCreated.secret): never written to the database.
SECRET_FIELDS = ("key", "secret")

Verdict = Literal["replay", "mismatch", "in_flight", "take_over"]


def idempotency_key(request: Request) -> str | None:
    """The client's Idempotency-Key, if it sent one: 1 to 255 printable characters."""
    given = request.headers.get(HEADER)
    if given is not None and (not 1 <= len(given) <= MAX_KEY_LENGTH or not given.isprintable()):
        raise BadRequest(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters",
            errors=[{"loc": ["header", HEADER], "msg": "invalid", "type": "value_error"}],
        )
    return given


class JsonNumber(str):
    """A JSON number as written, so that 1.0 and 1 stay different requests."""


def _canonical(value) -> str:
    if isinstance(value, JsonNumber):
        return str(value)
    if isinstance(value, dict):
        members = (f"{json.dumps(name)}:{_canonical(value[name])}" for name in sorted(value))
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    return json.dumps(value)


def canonical_body(body: bytes) -> bytes:
    """A JSON body with its members sorted and without insignificant whitespace, so a
    client that re-serialises its retry is still sending the same request; any other
    body as it is."""
    try:
        return _canonical(json.loads(body, parse_float=JsonNumber, parse_int=JsonNumber)).encode()
    except ValueError:  # includes UnicodeDecodeError
        return body


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, canonical_body(body)):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def verdict(record: Mapping, request_fingerprint: str, now: datetime) -> Verdict:
    """What a request does with the record already kept under its key."""
    if record["expires_at"] <= now:
        return "take_over"  # past 24 h the key is free again, as if removed
    if record["fingerprint"] != request_fingerprint:
        return "mismatch"
    if record["state"] == "done":
        return "replay"
    if record["lease_until"] <= now:
        return "take_over"  # the gateway that ran it died before answering
    return "in_flight"


def without_secrets(body: bytes) -> bytes:
    """The body to keep for replays: any secret field nulled, with a note saying so."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict):
        return body
    withheld = [name for name in SECRET_FIELDS if isinstance(document.get(name), str)]
    if not withheld:
        return body
    for name in withheld:
        document[name] = None
    document["replay_notice"] = {
        "type": "/problems/secret-not-replayed",
        "title": "Secret not replayed",
        "detail": "this is a replay of an earlier answer; the secret it showed is never "
        "stored, so it is null here. Use the first answer's, or create a new one.",
        "fields": withheld,
    }
    return codec.dumps(document).encode()


def reply_to_keep(status: int, headers: Mapping[str, str], body: bytes) -> dict | None:
    """What is kept of an answer for replays; nothing for a 5xx, which a retry redoes."""
    if status >= 500:
        return None
    return {
        "status": status,
        "headers": {name: headers[name] for name in REPLAYED_HEADERS if name in headers},
        "body": without_secrets(body),
    }


def replayed(reply: Mapping) -> Response:
    response = Response(reply["body"], status=reply["status"], headers=reply["headers"])
    response.headers["Idempotent-Replayed"] = "true"
    return response


class IdempotencyStore(Repository):
    """Records of idempotent requests, in the gateway's database."""

    @classmethod
    def ensure_indexes(cls, db):
        db.idempotency_records.create_index("expires_at", expireAfterSeconds=0)

    @property
    def records(self):
        return self.db.idempotency_records

    def caller(self, authorization: str | None) -> str | None:
        """The caller's API key id; None when the route is going to answer 401 anyway."""
        try:
            return ApiKeyStore(self.client, self.db).authenticate(authorization).key_id
        except Unauthorized:
            return None

    def claim(self, record_id: str, request_fingerprint: str) -> str | dict:
        """Claim the key for this request: its attempt token to carry it out, or the
        reply to replay. Refuses another request, or one still running."""
        now = utcnow()
        attempt = secrets.token_hex(8)
        running = {
            "_id": record_id,
            "fingerprint": request_fingerprint,
            "state": "running",
            "attempt": attempt,
            "lease_until": now + IN_FLIGHT_LEASE,
            "expires_at": now + RECORD_LIFETIME,
        }
        for _ in range(3):  # a record may vanish or change between our reads
            try:
                self.records.insert_one(running)
                return attempt
            except DuplicateKeyError:
                pass
            kept = self.records.find_one({"_id": record_id})
            if kept is None:
                continue
            match verdict(kept, request_fingerprint, now):
                case "replay":
                    return kept["reply"]
                case "mismatch":
                    raise IdempotencyKeyReused(
                        f"this {HEADER} was used for another request (method, path or body); "
                        "use a new key for a new request",
                        errors=[{"loc": ["header", HEADER], "msg": "reused", "type": "reused"}],
                    )
                case "take_over":
                    taken = self.records.replace_one(
                        {"_id": record_id, "attempt": kept["attempt"]}, running
                    )
                    if taken.matched_count:
                        return attempt
                case "in_flight":
                    break
        raise IdempotencyKeyInUse(
            f"a request with this {HEADER} is still being carried out; "
            f"retry in {RETRY_AFTER_SECONDS} s to get its answer",
            extra={"retry_after": RETRY_AFTER_SECONDS},
        )

    def finish(self, record_id: str, attempt: str, reply: dict | None) -> None:
        """Keep the reply for replays, or forget the attempt (a 5xx) so a retry redoes it."""
        mine = {"_id": record_id, "attempt": attempt}
        if reply is None:
            self.records.delete_one(mine)
        else:
            self.records.update_one(mine, {"$set": {"state": "done", "reply": reply}})


class IdempotentCommands(MongoStore):
    """The gateway's idempotency records; its HTTP entrypoint runs commands through
    `answer_once`."""

    def __init__(self, **kwargs):
        super().__init__(IdempotencyStore, **kwargs)

    @classmethod
    def of(cls, container) -> "IdempotentCommands | None":
        found = (each for each in container.dependencies if isinstance(each, cls))
        return next(found, None)

    def answer_once(
        self, request: Request, answer: Callable[[], Response], max_body: int
    ) -> Response:
        key = idempotency_key(request)
        if key is None:
            return answer()
        store = IdempotencyStore(self.client, self.db)
        request.shallow = False
        body = request.stream.read(max_body + 1)
        request.stream = io.BytesIO(body)  # the route reads it again (werkzeug allows this)
        request_fingerprint = fingerprint(request.method, request.path, request.query_string, body)
        try:
            caller = store.caller(request.headers.get("Authorization"))
            record_id = f"{caller}:{key}"
            claimed = store.claim(record_id, request_fingerprint) if caller else None
        except PyMongoError as error:
            log.warning("could not check %s %r: %r", HEADER, key, error)
            raise ServiceUnavailable(
                f"the registry cannot check your {HEADER} just now; retry shortly"
            ) from None
        if claimed is None:
            return answer()  # no caller: the route answers 401
        if isinstance(claimed, dict):
            log.info("replayed the answer to %s %r (%s)", HEADER, key, request.path)
            return replayed(claimed)
        attempt = claimed
        response = None
        try:
            response = answer()
        finally:
            kept = None
            if response is not None:
                kept = reply_to_keep(response.status_code, response.headers, response.get_data())
            try:
                store.finish(record_id, attempt, kept)
            except PyMongoError as error:  # the command's answer still goes out
                log.warning("could not record the answer to %s %s: %r", HEADER, key, error)
        return response
