"""Schemathesis hooks of the conformance run (loaded through SCHEMATHESIS_HOOKS)."""

import os

import schemathesis

# The ids of the API key the run authenticates with and of the key that made it.
OWN_KEY_IDS = set(os.environ.get("JVREG_CONFORMANCE_KEY_IDS", "").split(","))


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
