"""HTTP plumbing of the gateway: one entrypoint that turns every error into an
RFC 9457 problem document (services/gateway/problems.py), and an edge that
bounds what slow or many clients can hold before a nameko worker is taken."""

import hashlib
import io
import json
import logging
import re
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import eventlet
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import get_content_length

from services.gateway.idempotency import IdempotentCommands, idempotency_key
from services.gateway.metrics import RequestMetrics
from services.gateway.problems import (
    PROBLEM_CONTENT_TYPE,
    BadRequest,
    PayloadTooLarge,
    PreconditionRequired,
    RequestTimeout,
    UnsupportedMediaType,
    problem_for,
    problem_headers,
    status_of,
)
from shared import codec
from shared.errors import PreconditionFailed, RegistryError, TooManyRequests
from shared.logs import CORRELATION_ID, REQUEST_ID_HEADER, correlate_request
from shared.mongo import COMMAND_KEY
from shared.refusals import log_refusal
from shared.settings import Settings

if TYPE_CHECKING:  # the routes are declared with this entrypoint
    from services.gateway.routing import Route

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64


def problem_response(problem: dict[str, Any], headers: dict | None = None) -> Response:
    return Response(
        codec.dumps(problem),
        status=problem["status"],
        headers=headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        codec.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


# The environ key of a callback that makes the server close the connection after this
# response, so that it never reads (or waits for) the rest of a refused body.
CLOSE_CONNECTION = "jvreg.close_connection"
# Responses carrying a raw API key (jvk_…) or webhook secret (whsec_…) must not be
# stored by any cache; found in the body, so that no route can forget it.
RAW_SECRET = re.compile(rb'"(?:jvk|whsec)_[A-Za-z0-9_+/=-]{16,}"')
REALM = 'Bearer realm="jvreg"'


class ProblemWsgiApp(WsgiApp):
    def __init__(self, server, body_timeout: float):
        super().__init__(server)
        self.body_timeout = body_timeout

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        correlate_request(request)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
            request.path_values = values
            buffer_body(request, self.body_timeout, provider.require_media_type)
            response = provider.handle_request(request)
        except HTTPException as exc:
            response = problem_response(problem_for(exc, request.path), allow_header(exc))
        except RegistryError as exc:
            log_refusal(request, status_of(exc), exc)
            environ.get(CLOSE_CONNECTION, lambda: None)()
            response = problem_response(problem_for(exc, request.path), problem_headers(exc))
        add_edge_headers(request, response)
        return response(environ, start_response)


def allow_header(exc: HTTPException) -> dict | None:
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        return {"Allow": ", ".join(sorted(exc.valid_methods))}
    return None


def add_edge_headers(request: Request, response: Response) -> None:
    """Headers every response of a kind needs, set in one place for every route."""
    response.headers[REQUEST_ID_HEADER] = correlate_request(request)
    if response.status_code == 401:
        # RFC 6750 §3: say how to authenticate; a key that was sent is invalid_token.
        sent_key = request.headers.get("Authorization", "").lower().startswith("bearer ")
        response.headers["WWW-Authenticate"] = (
            f'{REALM}, error="invalid_token"' if sent_key else REALM
        )
    if not response.is_streamed and RAW_SECRET.search(response.get_data()):
        response.headers["Cache-Control"] = "no-store"


def has_body(request: Request) -> bool:
    environ = request.environ
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or bool(get_content_length(environ))


def buffer_body(
    request: Request, timeout: float, require_media_type: Callable[[Request], None]
) -> None:
    """Read a command's body into memory before a nameko worker is taken (this runs in
    the connection's own green thread), within `timeout` in all: a client dripping its
    body holds no worker, and its connection only until the deadline (408). The route's
    entrypoint says which media types it takes (`require_media_type`)."""
    if request.method not in COMMAND_METHODS or not has_body(request):
        return
    require_media_type(request)
    environ = request.environ
    if (get_content_length(environ) or 0) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes")
    deadline = eventlet.Timeout(timeout)
    try:
        raw = environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
    except eventlet.Timeout as expired:
        if expired is not deadline:
            raise
        raise RequestTimeout(f"the body did not arrive within {timeout:g} s") from None
    except TimeoutError:
        raise RequestTimeout(f"the body stopped arriving for {timeout:g} s") from None
    finally:
        deadline.cancel()
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes")
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


class DeadlineProtocol(HttpOnlyProtocol):
    """eventlet's HTTP protocol, with one deadline for a request's line and headers
    together (an idle keep-alive connection included): its socket timeout alone bounds
    each read, which a client sending a byte at a time never trips."""

    def handle_one_request(self):
        self.header_deadline = eventlet.Timeout(self.server.header_timeout)
        try:
            super().handle_one_request()
        except eventlet.Timeout as expired:
            if expired is not self.header_deadline:
                raise
            self.close_connection = 1
        finally:
            self.header_deadline.cancel()

    def get_environ(self):
        # The headers are in; the body has its own deadline (buffer_body).
        self.header_deadline.cancel()
        environ = super().get_environ()
        environ[CLOSE_CONNECTION] = self.close_after_response
        return environ

    def close_after_response(self):
        self.close_connection = 1


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
    def start(self):
        settings = Settings.from_config(self.container.config)
        self.header_timeout = settings.http_header_timeout_seconds
        self.body_timeout = settings.http_body_timeout_seconds
        self.connections_per_client = settings.http_connections_per_client
        self.connections = Counter()
        super().start()

    def get_wsgi_app(self):
        return RequestMetrics(ProblemWsgiApp(self, self.body_timeout))

    def get_wsgi_server(self, sock, wsgi_app, protocol=DeadlineProtocol, debug=False):
        server = super().get_wsgi_server(sock, wsgi_app, protocol, debug)
        # Bounds every single read and write, e.g. a client that stops reading its answer.
        server.socket_timeout = max(self.header_timeout, self.body_timeout)
        server.header_timeout = self.header_timeout
        return server

    def process_request(self, sock, address):
        client = address[0]
        if self.connections[client] >= self.connections_per_client:
            log.info(
                "refused a connection from %s: it already holds %d",
                client,
                self.connections[client],
            )
            refuse_connection(sock, self.connections_per_client)
            return
        self.connections[client] += 1
        # The answer goes out as the server writes it: with Nagle's algorithm, the last
        # segment of a mid-sized answer (about 20-60 KB: a page of 30-50 ventures)
        # waited for the client's delayed ACK, 40 ms more per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            super().process_request(sock, address)
        finally:
            self.connections[client] -= 1
            if not self.connections[client]:
                del self.connections[client]

    def context_data_from_headers(self, request):
        context = {CORRELATION_ID: correlate_request(request)}  # travels with every RPC
        if request.method in COMMAND_METHODS:
            context[COMMAND_KEY] = command_key(request)
        return context


def refuse_connection(sock, limit: int) -> None:
    """Answer 429 without reading the request, then close: half-close first and take
    what the client already sent (for a moment), so that it reads the answer rather
    than a reset."""
    refusal = TooManyRequests(
        f"one client address may hold at most {limit} connections at once",
        extra={"retry_after": 1},
    )
    body = codec.dumps(problem_for(refusal)).encode()
    head = (
        "HTTP/1.1 429 Too Many Requests\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {refusal.extra['retry_after']}\r\nConnection: close\r\n\r\n"
    )
    try:
        with eventlet.Timeout(1, False):
            sock.sendall(head.encode() + body)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    except OSError:
        pass  # the client is gone already
    finally:
        sock.close()


class ApiEndpoint(HttpRequestHandler):
    """nameko's HTTP entrypoint, answering every error as a problem document. `route`
    is the route's declaration (services/gateway/routing.py)."""

    server = ProblemWebServer()

    def __init__(self, method: str, url: str, route: "Route | None" = None, **kwargs):
        # A RegistryError is the caller's answer (4xx), not the gateway failing.
        kwargs.setdefault("expected_exceptions", RegistryError)
        self.route = route
        super().__init__(method, url, **kwargs)

    def require_media_type(self, request: Request) -> None:
        """The API's commands carry JSON (a web page's form: services/gateway/web)."""
        require_json_media_type(request)

    def status_of(self, error: RegistryError) -> int:
        """The HTTP status of a refusal, for its one-line log (shared/refusals.py)."""
        return status_of(error)

    def response_from_exception(self, exc):
        if not isinstance(exc, RegistryError):
            return problem_response(problem_for(exc))
        # A service's field paths are relative to the input the route passed it.
        location = self.route.input_location if self.route else None
        return problem_response(problem_for(exc, location=location), problem_headers(exc))

    def handle_request(self, request):
        # A command with an Idempotency-Key is carried out once; retries get its answer.
        commands = IdempotentCommands.of(self.container)
        if commands is None or request.method not in COMMAND_METHODS:
            return self.answer(request)
        try:
            return commands.answer_once(request, lambda: self.answer(request), MAX_BODY_BYTES)
        except RegistryError as refused:
            log_refusal(request, status_of(refused), refused)
            return problem_response(problem_for(refused, request.path), problem_headers(refused))

    def answer(self, request):
        response = super().handle_request(request)
        if response.mimetype == PROBLEM_CONTENT_TYPE:
            # Fill in which request the problem is about.
            problem = json.loads(response.get_data())
            if not problem.get("instance"):
                problem["instance"] = request.path
                response.set_data(codec.dumps(problem))
        return response


def require_json_media_type(request: Request) -> None:
    """Commands carry JSON: application/json, or a +json type (merge-patch+json)."""
    mimetype = request.mimetype
    if mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        f"send the body as application/json, not {mimetype or 'without a Content-Type'}",
        errors=[{"loc": ["header", "Content-Type"], "msg": "not JSON", "type": "media_type"}],
    )


JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nested_too_deeply(text: str) -> bool:
    """Whether a JSON text nests arrays and objects deeper than MAX_JSON_DEPTH, found
    without recursion (which a parser overflows on 100,000 `[`): the brackets outside
    strings, counted in one linear pass."""
    brackets = NOT_A_BRACKET.sub("", JSON_STRING.sub("", text))
    if brackets.count("[") + brackets.count("{") <= MAX_JSON_DEPTH:
        return False  # too few to nest that deep
    return max(accumulate(map(BRACKET_STEP.__getitem__, brackets))) > MAX_JSON_DEPTH


def read_json_body(request: Request) -> str:
    """The raw body, checked to be at most 1 MiB of JSON. Services parse it with their
    own pydantic models, so numbers keep their exact decimal text."""
    require_json_media_type(request)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_BODY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        if nested_too_deeply(text):
            raise BadRequest(
                f"the body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
                errors=[{"loc": ["body"], "msg": "nested too deeply", "type": "json_too_deep"}],
            )
        json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest(
            f"the body is not valid JSON: {error}",
            errors=[{"loc": ["body"], "msg": "invalid JSON", "type": "json_invalid"}],
        ) from None
    return text


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(request: Request, current_version: int) -> int:
    """The version an update may replace, from If-Match (required: optimistic
    concurrency), per RFC 9110 §13.1.1: `*` matches whatever version exists; a list
    matches if one of its strong ETags is the current one; a weak ETag never matches."""
    header = request.headers.get("If-Match")
    if not header or not header.strip():
        raise PreconditionRequired(
            "updates need an If-Match header with the ETag of the version you read"
        )
    if header.strip() == "*":
        return current_version
    strong_tags = {tag.strip() for tag in header.split(",") if not tag.strip().startswith("W/")}
    if etag(current_version) not in strong_tags:
        raise PreconditionFailed(
            f"If-Match {header} does not match the current version {etag(current_version)}"
        )
    return current_version
