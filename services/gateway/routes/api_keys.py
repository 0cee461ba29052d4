"""/v1/api-keys: create, list, revoke and rotate API keys. Ops manage every key; other
roles see and manage their own organisation's (another's is 404, not 403: nothing is
learnt of other organisations' keys). Raw keys are shown once; digests never."""

from typing import Any

from services.gateway.http import json_response, read_json_body
from services.gateway.keys import (
    ApiKey,
    ApiKeyCreated,
    CreateApiKey,
    Principal,
    RotateApiKey,
    expiry,
)
from services.gateway.routing import route
from shared.clock import utcnow
from shared.errors import Forbidden, NotFound, validated
from shared.pagination import decode_cursor, page, page_of, parse_limit

TAG = "api-keys"


def require_own_role(principal: Principal, key: ApiKey, verb: str) -> None:
    """An organisation may revoke or rotate only keys of the role it acts in: one
    organisation name can hold keys of several roles, and an investor must neither
    end a regulator's key nor get one by rotating it."""
    if principal.role != "ops" and key.role != principal.role:
        raise Forbidden(f"a {principal.role} key may not {verb} a {key.role} key; ask ops")


def no_more_than_ops_gave(principal: Principal, key: ApiKey, command: RotateApiKey) -> RotateApiKey:
    """A rotation by the key's organisation, not by ops, gets a key no more than ops
    gave: of the caller's own role (the new key has the old one's), ending no later than
    the old one would have (by default, just then)."""
    if principal.role == "ops":
        return command
    require_own_role(principal, key, "rotate")
    if key.expires_at is None:
        return command
    if command.expires_in_days is None and command.expires_at is None:
        return command.model_copy(update={"expires_at": key.expires_at})
    requested = expiry(command, utcnow())
    if requested is not None and requested > key.expires_at:
        given = "expires_in_days" if command.expires_in_days is not None else "expires_at"
        raise Forbidden(
            f"only ops may extend a key's life beyond its expiry ({key.expires_at.isoformat()})",
            errors=[{"loc": [given], "msg": "after the key's expiry", "type": "forbidden"}],
        )
    return command


class ApiKeyRoutes:
    """Mixed into the gateway service, which provides `keys` and `principal`."""

    keys: Any  # a nameko dependency of the gateway service

    def _manageable_key(self, principal: Principal, key_id: str) -> ApiKey:
        key = self.keys.get(key_id)
        if not principal.may_manage(key):
            raise NotFound(f"no API key {key_id}")
        return key

    @route(
        "POST",
        "/v1/api-keys",
        summary="Create an API key, optionally expiring; the raw key is in this response only",
        tag=TAG,
        roles=("ops",),
        body=CreateApiKey,
        response=ApiKeyCreated,
        status=(201,),
        headers=("Location",),
        refusals=(403, 409),
    )
    def create_api_key(self, request, principal):
        command = validated(CreateApiKey, read_json_body(request))
        created = self.keys.create(command, created_by=principal.key_id)
        return json_response(
            created.model_dump(mode="json"), 201, {"Location": f"/v1/api-keys/{created.id}"}
        )

    @route(
        "GET",
        "/v1/api-keys",
        summary="List API keys (ops: all; others: their organisation's), never the raw keys",
        tag=TAG,
        paged=True,
        response=page_of(ApiKey),
    )
    def list_api_keys(self, request, principal):
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        owner = None if principal.role == "ops" else principal.owner
        keys = self.keys.find(owner, after, limit + 1)
        return json_response(page([key.model_dump(mode="json") for key in keys], limit))

    @route("GET", "/v1/api-keys/<key_id>", summary="Read an API key", tag=TAG, response=ApiKey)
    def get_api_key(self, request, principal, key_id):
        return json_response(self._manageable_key(principal, key_id).model_dump(mode="json"))

    @route(
        "DELETE",
        "/v1/api-keys/<key_id>",
        summary="Revoke an API key: the next request with it is 401",
        tag=TAG,
        response=ApiKey,
        refusals=(403, 409),
    )
    def revoke_api_key(self, request, principal, key_id):
        require_own_role(principal, self._manageable_key(principal, key_id), "revoke")
        return json_response(self.keys.revoke(key_id).model_dump(mode="json"))

    @route(
        "POST",
        "/v1/api-keys/<key_id>/rotate",
        summary="Rotate an API key: a new key (in this response only) of the same role and "
        "owner; the old one works for `grace_seconds` more (0: ends at once)",
        tag=TAG,
        body=RotateApiKey,
        body_required=False,
        response=ApiKeyCreated,
        status=(201,),
        headers=("Location",),
        refusals=(403, 409),
    )
    def rotate_api_key(self, request, principal, key_id):
        key = self._manageable_key(principal, key_id)
        # The body is optional: without one the old key ends at once.
        body = read_json_body(request) if request.content_length else "{}"
        command = no_more_than_ops_gave(principal, key, validated(RotateApiKey, body))
        created = self.keys.rotate(key_id, command, rotated_by=principal.key_id)
        return json_response(
            created.model_dump(mode="json"), 201, {"Location": f"/v1/api-keys/{created.id}"}
        )
