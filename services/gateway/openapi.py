"""OpenAPI 3.1 for the gateway, generated from the pydantic models the services
validate with, so the document cannot drift from what is enforced."""

from functools import cache
from typing import Any

from pydantic import BaseModel, Field, create_model
from pydantic.json_schema import models_json_schema


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


class Health(BaseModel):
    status: str = Field(description="ok or degraded")
    checks: dict[str, str]


MODELS: list[type[BaseModel]] = [Problem, Health]

LIST_PARAMS = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]


def parameters_of(model: type[BaseModel], where: str = "query") -> list[dict]:
    """The query (or path) parameters `model` validates, each with its field's schema
    (enums, patterns, formats), so the document states what the service enforces."""
    schema = model.model_json_schema()
    parameters = []
    for name, field in schema["properties"].items():
        # An optional filter is absent, never null: a query has no null.
        (value,) = [option for option in field.get("anyOf", [field]) if option != {"type": "null"}]
        value = {key: part for key, part in value.items() if key not in ("title", "description")}
        parameter = {"name": name, "in": where, "schema": value}
        if where == "path" or name in schema.get("required", ()):
            parameter["required"] = True
        if description := field.get("description") or value.get("description"):
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


# Headers the gateway sends with a success, each always when the route declares it.
SUCCESS_HEADERS = {
    "ETag": {
        "description": "the version read or written; send it back in If-Match",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    },
    "Location": {
        "description": "where the created resource is read",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference"},
    },
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds until a retry may pass",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
PROBLEM_TITLES = {
    400: "malformed body (nested too deep)",
    401: "no API key, or one unknown, revoked or expired",
    403: "the key's role (or organisation) may not do this",
    404: "not found, or not the caller's organisation's",
    409: "a conflict with the current state (or the Idempotency-Key is in use)",
    412: "If-Match does not match the current ETag",
    413: "body over 1 MiB",
    415: "body not JSON",
    422: "invalid input, naming each field",
    428: "If-Match missing",
    429: "too many requests",
}


def operation(
    summary: str,
    ok: int | tuple[int, ...],
    response: type[BaseModel] | None,
    body: type[BaseModel] | None = None,
    params: list | None = None,
    public: bool = False,
    headers: tuple[str, ...] = (),
    refusals: tuple[int, ...] = (),
) -> dict:
    """An operation answering `ok` (with `headers`) or a problem: those every route of
    its kind can answer (401 and 429 unless public; 404 with a path; 422 with
    parameters; 400, 413, 415 and 422 with a body) and its own `refusals`."""
    success: dict[str, Any] = {"description": "success"}
    if response:
        success["content"] = {"application/json": {"schema": ref(response)}}
    if headers:
        success["headers"] = {name: SUCCESS_HEADERS[name] for name in headers}
    statuses = set(refusals)
    if not public:
        statuses |= {401, 429}
    if any(param["in"] == "path" for param in params or ()):
        statuses.add(404)
    if params:
        statuses.add(422)
    if body:
        statuses |= {400, 413, 415, 422}
    responses: dict[str, Any] = {
        str(status): success for status in (ok if isinstance(ok, tuple) else (ok,))
    }
    for status in sorted(statuses):
        responses[str(status)] = problem(PROBLEM_TITLES[status], status == 429)
    # No `default`: a status not listed here fails the conformance run. (A 500 is a
    # bug, never documented.)
    responses.setdefault("503", problem("a service the answer needs is unavailable; retry"))
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": responses,
    }
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    if public:
        operation["security"] = []
    return operation


def problem(description: str, retry_after: bool = False) -> dict:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": ref(Problem)}},
    }
    if retry_after:
        answer["headers"] = RETRY_AFTER
    return answer


def page_of(model: type[BaseModel]) -> type[BaseModel]:
    """The list envelope `{"items": [...], "next_cursor": ...}` of `model`."""
    return create_model(
        f"{model.__name__}Page",
        items=(list[model], ...),
        next_cursor=(str | None, Field(description="pass as `cursor` for the next page")),
    )


def if_match() -> dict:
    return {
        "name": "If-Match",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "the ETag of the version you read",
    }


@cache
def openapi_document() -> dict:
    """Each API module of the gateway contributes `OPENAPI_MODELS` and `openapi_paths()`."""
    from services.gateway.service import ROUTE_MODULES

    models = list(MODELS)
    paths: dict[str, Any] = {
        "/health": {"get": operation("Health of every part", (200, 503), Health, public=True)},
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
    }
    for module in ROUTE_MODULES:
        models.extend(module.OPENAPI_MODELS)
        paths.update(module.openapi_paths())
    _, schemas = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "JV Pharma Registry",
            "version": "1.0.0",
            "description": "Pakistan–China pharmaceutical joint ventures, their plants, "
            "DRAP licences and investments.",
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
        "paths": paths,
    }
