"""HTTP plumbing of the gateway: one entrypoint that turns every error into an
RFC 9457 problem document, from one table of exception types."""

import hashlib
import json
import logging
import uuid
from typing import Any

from nameko.exceptions import RemoteError
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from services.gateway.idempotency import IdempotentCommands, idempotency_key
from shared import codec
from shared.errors import (
    PROBLEM_CONTENT_TYPE,
    BadRequest,
    PayloadTooLarge,
    PreconditionFailed,
    PreconditionRequired,
    RegistryError,
    UnsupportedMediaType,
)
from shared.mongo import COMMAND_KEY

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024

# Werkzeug's own errors (no route, wrong method) keep their status and title.
HTTP_PROBLEM_SLUGS = {404: "not-found", 405: "method-not-allowed"}


def problem_response(problem: dict[str, Any], headers: dict | None = None) -> Response:
    return Response(
        codec.dumps(problem),
        status=problem["status"],
        headers=headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def problem_for(exc: BaseException, path: str | None = None) -> dict[str, Any]:
    """The one place an exception becomes a problem document."""
    if isinstance(exc, RegistryError):
        return exc.problem(path)
    if isinstance(exc, HTTPException):
        return {
            "type": f"/problems/{HTTP_PROBLEM_SLUGS.get(exc.code, 'http-error')}",
            "title": exc.name,
            "status": exc.code,
            "detail": exc.description,
            "instance": path,
        }
    if isinstance(exc, RemoteError):
        log.error("unexpected error in a service: %s", exc)
    else:
        log.error("unexpected error in the gateway", exc_info=exc)
    return {
        "type": "/problems/internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "the registry failed to handle this request; it has been logged",
        "instance": path,
    }


def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        codec.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


class ProblemWsgiApp(WsgiApp):
    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
            request.path_values = values
            response = provider.handle_request(request)
        except HTTPException as exc:
            response = problem_response(problem_for(exc, request.path))
        return response(environ, start_response)


COMMAND_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def command_key(request: Request) -> str:
    """The name of the command a request carries out, passed to the services so that
    they apply it once: the client's Idempotency-Key (scoped to its credentials), or a
    fresh one, which still stops an RPC redelivered after a crash from applying twice."""
    given = idempotency_key(request)
    if given is None:
        return f"req:{uuid.uuid4().hex}"
    caller = hashlib.sha256(request.headers.get("Authorization", "").encode()).hexdigest()[:16]
    return f"{caller}:{given}"


class ProblemWebServer(WebServer):
    def get_wsgi_app(self):
        return ProblemWsgiApp(self)

    def context_data_from_headers(self, request):
        if request.method in COMMAND_METHODS:
            return {COMMAND_KEY: command_key(request)}
        return {}


class ApiEndpoint(HttpRequestHandler):
    server = ProblemWebServer()

    def __init__(self, method, url, **kwargs):
        # A RegistryError is the caller's answer (4xx), not the gateway failing.
        kwargs.setdefault("expected_exceptions", RegistryError)
        super().__init__(method, url, **kwargs)

    def response_from_exception(self, exc):
        return problem_response(problem_for(exc))

    def handle_request(self, request):
        # A command with an Idempotency-Key is carried out once; retries get its answer.
        commands = IdempotentCommands.of(self.container)
        if commands is None or request.method not in COMMAND_METHODS:
            return self.answer(request)
        try:
            return commands.answer_once(request, lambda: self.answer(request), MAX_BODY_BYTES)
        except RegistryError as refused:
            log.info("%s %s: %s", request.method, request.path, refused)
            headers = getattr(refused, "headers", None)
            return problem_response(problem_for(refused, request.path), headers)

    def answer(self, request):
        response = super().handle_request(request)
        if response.mimetype == PROBLEM_CONTENT_TYPE:
            # Fill in which request the problem is about.
            problem = json.loads(response.get_data())
            if not problem.get("instance"):
                problem["instance"] = request.path
                response.set_data(codec.dumps(problem))
        return response


api = ApiEndpoint.decorator


def read_json_body(request: Request) -> str:
    """The raw body, checked to be at most 1 MiB of JSON. Services parse it with their
    own pydantic models, so numbers keep their exact decimal text."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes")
    if request.mimetype and request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send the body as application/json, not {request.mimetype}")
    try:
        text = raw.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest(
            f"the body is not valid JSON: {error}",
            errors=[{"loc": ["body"], "msg": "invalid JSON", "type": "json_invalid"}],
        ) from None
    return text


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(request: Request) -> int:
    """The version named by If-Match: required for updates (optimistic concurrency)."""
    header = request.headers.get("If-Match")
    if not header:
        raise PreconditionRequired(
            "updates need an If-Match header with the ETag of the version you read"
        )
    tag = header.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise PreconditionFailed(f"If-Match {header} does not name a version of this resource")
    return int(tag)
