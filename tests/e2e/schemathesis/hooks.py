"""Schemathesis hooks of the conformance run (loaded through SCHEMATHESIS_HOOKS)."""

import os
import uuid

import schemathesis
from urllib3.util import parse_url

from services.notifications.webhook_urls import check_webhook_url

# The ids of the API key the run authenticates with and of the key that made it.
OWN_KEY_IDS = set(os.environ.get("JVREG_CONFORMANCE_KEY_IDS", "").split(","))
LOOPBACK = "127.0.0.1"


@schemathesis.hook
def filter_case(context, case) -> bool:
    """Never revoke or rotate the keys the run itself uses: every later request would
    be 401. Every other key (those the run creates) is revoked and rotated freely."""
    ends_a_key = case.operation.path in ("/v1/api-keys/{key_id}", "/v1/api-keys/{key_id}/rotate")
    return not (
        ends_a_key
        and case.method.upper() in ("DELETE", "POST")
        and (case.path_parameters or {}).get("key_id") in OWN_KEY_IDS
    )


IDEMPOTENCY_KEY = "Idempotency-Key"


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    one_key_per_command(case)
    only_loopback_webhooks(case)


def one_key_per_command(case) -> None:
    """A client names each new command with a key of its own (README): the same key
    for another request is rightly 422, a rule no schema can state. Every generated
    Idempotency-Key is made unique to its case, still as the document allows."""
    given = (case.headers or {}).get(IDEMPOTENCY_KEY)
    if isinstance(given, str):
        # in place: Schemathesis keeps its own marks (e.g. a header left out) on the dict
        case.headers[IDEMPOTENCY_KEY] = f"{given[:200]}-{uuid.uuid4().hex}"


def only_loopback_webhooks(case) -> None:
    """Nothing leaves the machine: a fuzzed webhook URL may name a public address (or a
    host name to look up), which the registry would really call. Every URL the registry
    would take is sent with its host replaced by 127.0.0.1 (allowed here, as
    JVREG_WEBHOOK_ALLOW_PRIVATE is on in tests); one it would refuse is sent unchanged,
    so a request meant to be refused still is."""
    if case.operation.path != "/v1/subscriptions" or case.method.upper() != "POST":
        return
    if not isinstance(case.body, dict) or not isinstance(case.body.get("url"), str):
        return
    try:
        check_webhook_url(case.body["url"].strip())
    except ValueError:
        return
    url = parse_url(case.body["url"].strip())
    case.body = {**case.body, "url": url._replace(host=LOOPBACK).url}
