"""Schemathesis hooks of the conformance run (loaded through SCHEMATHESIS_HOOKS)."""

import os

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


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
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
