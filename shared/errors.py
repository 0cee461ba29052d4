"""Errors that cross service boundaries and become RFC 9457 problem documents.

Each class is registered with nameko's remote-error registry, so an error raised
in a service is re-raised as the same type in the gateway that called it, and the
gateway maps it to HTTP in one place (its `problem_for`).
"""

import json
from typing import Any

from nameko.exceptions import deserialize_to_instance
from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"


class RegistryError(Exception):
    """Base of every error a client may see. `detail` is for people; `errors`
    (validation) and `extra` (e.g. allowed next states) are for programs."""

    status = 500
    title = "Internal error"
    slug = "internal-error"

    def __init__(
        self, detail: str, errors: list[dict] | str | None = None, extra: dict | str | None = None
    ):
        # nameko re-creates a remote error from its args after passing them through
        # str(); as JSON they keep their types (list indexes stay integers).
        self.detail = detail
        self.errors = json.loads(errors) if isinstance(errors, str) else errors or []
        self.extra = json.loads(extra) if isinstance(extra, str) else extra or {}
        super().__init__(detail, json.dumps(self.errors), json.dumps(self.extra))

    def __str__(self) -> str:
        return self.detail

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that belong with this answer (e.g. Retry-After)."""
        return {}

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


@deserialize_to_instance
class BadRequest(RegistryError):
    status, title, slug = 400, "Bad request", "bad-request"


@deserialize_to_instance
class Unauthorized(RegistryError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


@deserialize_to_instance
class Forbidden(RegistryError):
    status, title, slug = 403, "Forbidden", "forbidden"


@deserialize_to_instance
class NotFound(RegistryError):
    status, title, slug = 404, "Not found", "not-found"


@deserialize_to_instance
class RequestTimeout(RegistryError):
    status, title, slug = 408, "Request timeout", "request-timeout"


@deserialize_to_instance
class Conflict(RegistryError):
    status, title, slug = 409, "Conflict", "conflict"


@deserialize_to_instance
class PreconditionFailed(RegistryError):
    status, title, slug = 412, "Precondition failed", "stale-version"


@deserialize_to_instance
class PayloadTooLarge(RegistryError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


@deserialize_to_instance
class UnsupportedMediaType(RegistryError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


@deserialize_to_instance
class InvalidInput(RegistryError):
    status, title, slug = 422, "Invalid input", "validation-error"


@deserialize_to_instance
class RuleViolated(RegistryError):
    """Well-formed input that a domain rule refuses (e.g. over-disbursement)."""

    status, title, slug = 422, "Rule violated", "rule-violated"


@deserialize_to_instance
class PreconditionRequired(RegistryError):
    status, title, slug = 428, "Precondition required", "if-match-required"


@deserialize_to_instance
class TooManyRequests(RegistryError):
    """Over a rate limit: `extra["retry_after"]` seconds until the next try may pass,
    in the body and (for the HTTP layer to send) as the Retry-After header."""

    status, title, slug = 429, "Too many requests", "too-many-requests"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.extra["retry_after"])}


@deserialize_to_instance
class ServiceUnavailable(RegistryError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"


def invalid_input(error: ValidationError, location: tuple = ("body",)) -> InvalidInput:
    """Pydantic's errors as problem `errors`, each naming the field it is about."""
    errors = [
        {"loc": [*location, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_context=False)
    ]
    fields = ", ".join(".".join(str(part) for part in item["loc"]) for item in errors)
    return InvalidInput(f"{len(errors)} invalid field(s): {fields}", errors)


def field_error(loc: list, msg: str, kind: str = "value_error") -> InvalidInput:
    return InvalidInput(
        f"invalid field: {'.'.join(str(part) for part in loc)}: {msg}",
        [{"loc": loc, "msg": msg, "type": kind}],
    )


def validated(model, data, location: tuple = ("body",)):
    """`data` (a JSON text, or the query's dict) as `model`, or InvalidInput naming
    each field at `location` that is wrong."""
    try:
        if isinstance(data, str | bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid_input(error, location) from None
