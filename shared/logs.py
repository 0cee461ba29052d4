"""What every log line of the registry carries: the correlation id of the request it
serves. The gateway takes it from the HTTP request (`X-Request-Id`, or the trace id of
a W3C `traceparent`) or makes one, and answers it back; nameko carries it to the
services as context data of every RPC (header `nameko.correlation_id`); the event
builder puts it in the CloudEvent (extension attribute `correlationid`), and the
consumer that applies the event logs under it again, as do the outbox relay that
publishes the event and the webhook deliverer that sends it. deploy/config.yaml installs the
filter and picks the format: text, or one JSON object per line with
JVREG_LOG_FORMAT=json; shared.entrypoints.CorrelatedContainer runs every worker under
its id. Free of nameko, so the event builder may use it."""

import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from werkzeug.wrappers import Request

# The key in nameko's context data, so it travels with every RPC a worker makes.
CORRELATION_ID = "correlation_id"
REQUEST_ID_HEADER = "X-Request-Id"
ENVIRON_KEY = "jvreg.correlation_id"
# What the registry accepts as a caller's id: short and printable, so it cannot forge
# log lines or headers.
ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# W3C Trace Context: version-traceid-parentid-flags; the trace id names the request.
TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?P<trace_id>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")

# Each eventlet green thread (a nameko worker, an HTTP connection) has its own value.
current_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


@contextmanager
def correlated(correlation_id: str | None) -> Iterator[None]:
    """Log under `correlation_id` until the block ends: a background loop (the outbox
    relay, the webhook deliverer) works for no request of its own, so while it handles
    an event its lines carry the id of the request behind that event."""
    token = current_correlation_id.set(correlation_id)
    try:
        yield
    finally:
        current_correlation_id.reset(token)


def correlation_id_from(headers: Mapping[str, str]) -> str:
    """The caller's `X-Request-Id`, else the trace id of its `traceparent`, else a new one."""
    given = (headers.get(REQUEST_ID_HEADER) or "").strip()
    if ACCEPTED_ID.fullmatch(given):
        return given
    if trace := TRACEPARENT.fullmatch((headers.get("traceparent") or "").strip().lower()):
        return trace.group("trace_id")
    return new_correlation_id()


class CorrelationIdFilter(logging.Filter):
    """Gives every record the current correlation id (`-` outside any request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = current_correlation_id.get() or "-"
        return True


def correlate_request(request: Request) -> str:
    """The correlation id of an HTTP request, chosen once and kept in its environ; the
    connection's green thread (edge refusals, the access line) logs under it."""
    correlation_id = request.environ.get(ENVIRON_KEY)
    if correlation_id is None:
        correlation_id = correlation_id_from(request.headers)
        request.environ[ENVIRON_KEY] = correlation_id
        current_correlation_id.set(correlation_id)
    return correlation_id
