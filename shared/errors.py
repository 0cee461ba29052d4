"""Errors that cross service boundaries: what went wrong, for people (`detail`) and for
programs (`errors`, each naming a field by its path within the input; `extra`, e.g. the
allowed next states). They say nothing of HTTP: the gateway maps each class to a
status and problem type in one table (services/gateway/problems.py) and places the
field paths in the request (`["body", …]`, `["query", …]`).

shared/rpc_errors.py registers each class with nameko's remote-error registry, so an
error raised in a service is re-raised as the same type in the gateway that called it;
this module imports no nameko, so domain code can raise them.
"""

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class RegistryError(Exception):
    """Base of every error a client may see."""

    def __init__(
        self, detail: str, errors: list[dict] | str | None = None, extra: dict | str | None = None
    ):
        # nameko re-creates a remote error from its args after passing them through
        # str(); as JSON they keep their types (list indexes stay integers).
        self.detail = detail
        self.errors: list[dict] = json.loads(errors) if isinstance(errors, str) else errors or []
        self.extra: dict = json.loads(extra) if isinstance(extra, str) else extra or {}
        super().__init__(detail, json.dumps(self.errors), json.dumps(self.extra))

    def __str__(self) -> str:
        return self.detail


class Unauthorized(RegistryError):
    """No credentials, or unknown, revoked or expired ones."""


class Forbidden(RegistryError):
    """The caller's role (or organisation) may not do this."""


class NotFound(RegistryError):
    pass


class Conflict(RegistryError):
    """The command conflicts with the current state (or was already carried out)."""


class PreconditionFailed(RegistryError):
    """The version the caller read is no longer the current one."""


class InvalidInput(RegistryError):
    pass


class RuleViolated(RegistryError):
    """Well-formed input that a domain rule refuses (e.g. over-disbursement)."""


class TooManyRequests(RegistryError):
    """Over a rate limit: `extra["retry_after"]` seconds until the next try may pass."""


class ServiceUnavailable(RegistryError):
    """A service the answer needs did not answer, or has not yet learned of something."""


def invalid_input(error: ValidationError) -> InvalidInput:
    """Pydantic's errors as `errors`, each naming the field it is about."""
    errors = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_context=False)
    ]
    fields = ", ".join(".".join(str(part) for part in item["loc"]) for item in errors)
    return InvalidInput(f"{len(errors)} invalid field(s): {fields}", errors)


def field_error(loc: list, msg: str, kind: str = "value_error") -> InvalidInput:
    return InvalidInput(
        f"invalid field: {'.'.join(str(part) for part in loc)}: {msg}",
        [{"loc": loc, "msg": msg, "type": kind}],
    )


def validated(model: type[Model], data: str | bytes | dict) -> Model:
    """`data` (a JSON text, or the query's dict) as `model`, or InvalidInput naming
    each field that is wrong."""
    try:
        if isinstance(data, str | bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid_input(error) from None
