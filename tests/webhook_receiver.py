"""A real HTTP server standing in for a regulator's webhook endpoint: it records
every request and answers each path with a scripted series of status codes."""

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

from shared import codec


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict:
        return codec.loads(self.body)

    def verified(self, secret: str) -> dict:
        """The event, once its Standard Webhooks signature is checked."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Route:
    statuses: list[int] = field(default_factory=lambda: [204])
    # Seconds each request is held before answering (to widen race windows).
    delay: float = 0.0


class WebhookReceiver:
    def __init__(self):
        self.requests: list[Received] = []
        self.routes: dict[str, Route] = {}
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver._handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, *statuses: int, delay: float = 0.0) -> str:
        """Answer POSTs to `path` with `statuses` in turn, then the last one forever."""
        self.routes[path] = Route(list(statuses), delay)
        return self.url + path

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        route = self.routes.get(request.path, Route([404]))
        with self._lock:
            self.in_flight[request.path] = self.in_flight.get(request.path, 0) + 1
            self.most_in_flight[request.path] = max(
                self.most_in_flight.get(request.path, 0), self.in_flight[request.path]
            )
            seen = sum(1 for earlier in self.requests if earlier.path == request.path)
        time.sleep(route.delay)
        status = route.statuses[min(seen, len(route.statuses) - 1)]
        with self._lock:
            self.in_flight[request.path] -= 1
            self.requests.append(
                Received(request.path, dict(request.headers.items()), body, status)
            )
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
