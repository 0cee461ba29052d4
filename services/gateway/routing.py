"""Declarative routes: each gateway route states once who may call it, what it takes
(path, query, body, If-Match) and what it answers (model, statuses, headers), in the
spirit of FastAPI's route declarations. The HTTP entrypoint enforces the roles and the
OpenAPI document (services/gateway/openapi.py) is generated from the same `Route`s,
so the two cannot drift."""

import functools
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from pydantic import BaseModel

from services.gateway.http import COMMAND_METHODS, ApiEndpoint
from services.gateway.keys import Role
from services.gateway.problems import InvalidParameters, located
from shared.errors import InvalidInput, validated

ROLES: tuple[Role, ...] = ("investor", "regulator", "ops")
SuccessHeader = Literal["ETag", "Location"]
PATH_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@dataclass(frozen=True)
class Route:
    """What one route declares. `path` is a werkzeug rule (`/v1/ventures/<venture_id>`);
    `roles` is empty for a public route; `refusals` are the statuses of this route's own
    refusals beyond those every route of its kind can answer (see `problem_statuses`);
    `exports` are media types it answers besides `media_type` (a list's CSV), each
    with an example."""

    method: str
    path: str
    name: str
    summary: str
    tag: str
    roles: tuple[Role, ...]
    response: type[BaseModel] | None
    status: tuple[int, ...] = (200,)
    query: type[BaseModel] | None = None
    path_model: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    paged: bool = False
    if_match: bool = False
    headers: tuple[SuccessHeader, ...] = ()
    refusals: tuple[int, ...] = ()
    media_type: str = "application/json"
    exports: tuple[tuple[str, str], ...] = ()

    @property
    def public(self) -> bool:
        return not self.roles

    @property
    def is_command(self) -> bool:
        return self.method in COMMAND_METHODS

    @property
    def path_parameters(self) -> list[str]:
        return PATH_PARAMETER.findall(self.path)

    @property
    def input_location(self) -> str:
        """What a refusal's field paths are relative to: a command's body, else the query."""
        return "body" if self.body else "query"

    def problem_statuses(self) -> set[int]:
        """Every refusal this route can answer: its own, those of every authenticated
        route (401, 429: throttled), of a path (404), a query (422), If-Match (412,
        428), a body (400, 413, 415, 422) and an Idempotency-Key (400, 409, 422); and
        503 when a service it needs is unavailable."""
        statuses = set(self.refusals) | {503}
        if not self.public:
            statuses |= {401, 429}
        if self.path_parameters:
            statuses.add(404)
        if self.query or self.paged or self.path_model:
            statuses.add(422)
        if self.if_match:
            statuses |= {412, 428}
        if self.body:
            statuses |= {400, 413, 415, 422}
        if self.is_command:
            statuses |= {400, 409, 422}
        return statuses


def route(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    response: type[BaseModel] | None,
    roles: tuple[Role, ...] = ROLES,
    public: bool = False,
    status: tuple[int, ...] = (200,),
    query: type[BaseModel] | None = None,
    path_model: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    paged: bool = False,
    if_match: bool = False,
    headers: tuple[SuccessHeader, ...] = (),
    refusals: tuple[int, ...] = (),
    media_type: str = "application/json",
    exports: tuple[tuple[str, str], ...] = (),
) -> Callable[[Callable], Callable]:
    """Declare a route of the gateway service (see `Route`). Unless `public`, the caller
    is authenticated (and throttled) by the service's `principal(request)` and must hold
    one of `roles` (else 403); path values are checked against `path_model`; then the
    handler is called as `handler(self, request, principal, **path_values)` (a public
    one without `principal`)."""

    def declare(handler: Callable) -> Callable:
        spec = Route(
            method=method,
            path=path,
            name=handler.__name__,
            summary=summary,
            tag=tag,
            roles=() if public else roles,
            response=response,
            status=status,
            query=query,
            path_model=path_model,
            body=body,
            body_required=body_required,
            paged=paged,
            if_match=if_match,
            headers=headers,
            refusals=refusals,
            media_type=media_type,
            exports=exports,
        )

        @functools.wraps(handler)
        def handle(self, request, *args, **kwargs):
            # A caller first (401, 403 before anything is said of the input).
            caller = () if spec.public else (self.principal(request).require(*spec.roles),)
            if spec.path_model:
                check_path(spec.path_model, kwargs)
            return handler(self, request, *caller, *args, **kwargs)

        return ApiEndpoint.decorator(method, path, route=spec)(handle)

    return declare


def check_path(model: type[BaseModel], values: dict[str, str]) -> None:
    """Path values as the route's model states them (e.g. a currency code and a date)."""
    try:
        validated(model, json.dumps(values))
    except InvalidInput as invalid:
        raise InvalidParameters(invalid.detail, located(invalid.errors, "path")) from None


def routes_of(service_class: type) -> list[Route]:
    """The declared routes of a service class, in path then method order."""
    routes = [
        entrypoint.route
        for _, function in inspect.getmembers(service_class, inspect.isfunction)
        for entrypoint in getattr(function, ENTRYPOINT_EXTENSIONS_ATTR, ())
        if isinstance(entrypoint, ApiEndpoint) and entrypoint.route is not None
    ]
    return sorted(routes, key=lambda spec: (spec.path, spec.method))
