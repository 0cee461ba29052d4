"""Errors as RFC 9457 problem documents: one table maps each error class to its HTTP
status, title and problem type (the services' errors carry no HTTP), and the refusals
that only the HTTP edge makes (a malformed body, a missing If-Match, …)."""

import logging
from dataclasses import dataclass
from typing import Any

from nameko.exceptions import RemoteError
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException

from shared.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    RegistryError,
    RuleViolated,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


class EdgeRefusal(RegistryError):
    """A refusal of the HTTP request itself, made by the gateway before any service is
    asked: its `errors` name their place in the request in full (`["header",
    "Content-Type"]`, `["body"]`)."""


class BadRequest(EdgeRefusal):
    pass


class RequestTimeout(EdgeRefusal):
    pass


class PayloadTooLarge(EdgeRefusal):
    pass


class UnsupportedMediaType(EdgeRefusal):
    pass


class PreconditionRequired(EdgeRefusal):
    pass


class InvalidParameters(EdgeRefusal):
    """Path parameters that are not what the route's model states."""


class IdempotencyKeyReused(EdgeRefusal):
    pass


class IdempotencyKeyInUse(EdgeRefusal):
    """`extra["retry_after"]`: seconds until the first request has likely finished."""


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str
    slug: str
    # Seconds a client waits before retrying, unless the error says (`retry_after`).
    retry_after: int | None = None


# The one table: error class -> HTTP. A subclass not listed takes its base's entry.
PROBLEM_TYPES: dict[type[RegistryError], ProblemType] = {
    BadRequest: ProblemType(400, "Bad request", "bad-request"),
    Unauthorized: ProblemType(401, "Unauthorized", "unauthorized"),
    Forbidden: ProblemType(403, "Forbidden", "forbidden"),
    NotFound: ProblemType(404, "Not found", "not-found"),
    RequestTimeout: ProblemType(408, "Request timeout", "request-timeout"),
    Conflict: ProblemType(409, "Conflict", "conflict"),
    IdempotencyKeyInUse: ProblemType(409, "Conflict", "idempotency-key-in-use"),
    PreconditionFailed: ProblemType(412, "Precondition failed", "stale-version"),
    PayloadTooLarge: ProblemType(413, "Payload too large", "payload-too-large"),
    UnsupportedMediaType: ProblemType(415, "Unsupported media type", "unsupported-media-type"),
    InvalidInput: ProblemType(422, "Invalid input", "validation-error"),
    InvalidParameters: ProblemType(422, "Invalid input", "validation-error"),
    RuleViolated: ProblemType(422, "Rule violated", "rule-violated"),
    IdempotencyKeyReused: ProblemType(422, "Idempotency-Key reused", "idempotency-key-reused"),
    PreconditionRequired: ProblemType(428, "Precondition required", "if-match-required"),
    TooManyRequests: ProblemType(429, "Too many requests", "too-many-requests"),
    ServiceUnavailable: ProblemType(503, "Service unavailable", "service-unavailable", 1),
}
INTERNAL_ERROR = ProblemType(500, "Internal error", "internal-error")
# Werkzeug's own errors (no route, wrong method) keep their status and title.
HTTP_PROBLEM_SLUGS = {404: "not-found", 405: "method-not-allowed"}


def problem_type(error: RegistryError) -> ProblemType:
    return next(
        (PROBLEM_TYPES[cls] for cls in type(error).__mro__ if cls in PROBLEM_TYPES),
        INTERNAL_ERROR,
    )


def status_of(error: RegistryError) -> int:
    return problem_type(error).status


def problem_headers(error: RegistryError) -> dict[str, str]:
    """HTTP headers that belong with a refusal: Retry-After when a retry may pass later."""
    seconds = error.extra.get("retry_after", problem_type(error).retry_after)
    return {} if seconds is None else {"Retry-After": str(seconds)}


def located(errors: list[dict], location: str | None) -> list[dict]:
    """Field paths relative to the request's input, placed in the request."""
    if location is None:
        return errors
    return [{**item, "loc": [location, *item["loc"]]} for item in errors]


def problem_for(
    exc: BaseException, instance: str | None = None, location: str | None = None
) -> dict[str, Any]:
    """The one place an exception becomes a problem document. `location` is where the
    input that a service's field paths are relative to was given ("body", "query")."""
    if isinstance(exc, RegistryError):
        kind = problem_type(exc)
        body: dict[str, Any] = {
            "type": f"/problems/{kind.slug}",
            "title": kind.title,
            "status": kind.status,
            "detail": exc.detail,
        }
        if instance:
            body["instance"] = instance
        if exc.errors:
            edge = isinstance(exc, EdgeRefusal)
            body["errors"] = located(exc.errors, None if edge else location)
        # A service's extra members never replace RFC 9457's own (a `status` would).
        body.update({name: value for name, value in exc.extra.items() if name not in body})
        return body
    if isinstance(exc, HTTPException):
        return {
            "type": f"/problems/{HTTP_PROBLEM_SLUGS.get(exc.code or 500, 'http-error')}",
            "title": exc.name,
            "status": exc.code,
            "detail": exc.description,
            "instance": instance,
        }
    if isinstance(exc, RemoteError):
        log.error("unexpected error in a service: %s", exc)
    else:
        log.error("unexpected error in the gateway", exc_info=exc)
    return {
        "type": f"/problems/{INTERNAL_ERROR.slug}",
        "title": INTERNAL_ERROR.title,
        "status": INTERNAL_ERROR.status,
        "detail": "the registry failed to handle this request; it has been logged",
        "instance": instance,
    }


class ProblemItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemItem] | None = None
