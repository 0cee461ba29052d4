"""/v1/ventures: the HTTP face of the ventures service."""

from pydantic import Field

from services.facilities.contract import Facility
from services.gateway.http import api, etag, expected_version, json_response, read_json_body
from services.gateway.openapi import (
    LIST_PARAMS,
    if_match,
    operation,
    page_of,
    parameters_of,
    path_param,
)
from services.investments.contract import VentureSummary
from services.licensing.contract import Licence
from services.ventures.contract import (
    ChangeVentureStatus,
    RegisterVenture,
    UpdateVenture,
    Venture,
    VentureFilters,
)
from shared.errors import NotFound
from shared.pagination import decode_cursor, every_item, page, parse_limit

PAGING_PARAMS = ("limit", "cursor")


class VentureRoutes:
    """Mixed into the gateway service, which provides `ventures` and `principal`."""

    def _visible_venture(self, principal, venture_id: str) -> dict:
        venture = self.ventures.get_venture(venture_id)
        if not principal.may_see(venture["owner"]):
            # Not 403: an investor learns nothing about other investors' ventures.
            raise NotFound(f"no venture {venture_id}")
        return venture

    @api("POST", "/v1/ventures")
    def register_venture(self, request):
        principal = self.principal(request).require("investor", "ops")
        venture = self.ventures.register_venture(read_json_body(request), principal.model_dump())
        return json_response(
            venture,
            201,
            {
                "Location": f"/v1/ventures/{venture['id']}",
                "ETag": etag(venture["version"]),
            },
        )

    @api("GET", "/v1/ventures")
    def list_ventures(self, request):
        principal = self.principal(request)
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        filters = {k: v for k, v in request.args.items() if k not in PAGING_PARAMS}
        if principal.role == "investor":
            filters["owner"] = principal.owner
        items = self.ventures.list_ventures(filters, after, limit + 1)
        return json_response(page(items, limit))

    @api("GET", "/v1/ventures/<venture_id>")
    def get_venture(self, request, venture_id):
        venture = self._visible_venture(self.principal(request), venture_id)
        venture["investment_summary"] = self.venture_investment_summary(venture_id)
        under_venture = {"venture_id": venture_id}
        venture["facilities"] = every_item(
            lambda after, limit: self.facilities.list_facilities(under_venture, after, limit)
        )
        venture["licenses"] = every_item(
            lambda after, limit: self.licensing.list_licenses(under_venture, after, limit)
        )
        return json_response(venture, headers={"ETag": etag(venture["version"])})

    @api("PATCH", "/v1/ventures/<venture_id>")
    def update_venture(self, request, venture_id):
        principal = self.principal(request).require("investor", "ops")
        current = self._visible_venture(principal, venture_id)
        version = expected_version(request, current["version"])
        venture = self.ventures.update_venture(
            venture_id, read_json_body(request), version, principal.model_dump()
        )
        return json_response(venture, headers={"ETag": etag(venture["version"])})

    @api("POST", "/v1/ventures/<venture_id>/status")
    def change_venture_status(self, request, venture_id):
        principal = self.principal(request).require("regulator", "ops")
        venture = self.ventures.change_venture_status(
            venture_id, read_json_body(request), principal.model_dump()
        )
        return json_response(venture, headers={"ETag": etag(venture["version"])})


VenturePage = page_of(Venture)


class VentureDetail(Venture):
    """A venture as `GET /v1/ventures/{id}` composes it from every service."""

    facilities: list[Facility]
    licenses: list[Licence]
    investment_summary: VentureSummary | dict = Field(
        description='in USD; `{"problem": ...}` when it cannot be made (e.g. a rate is missing)'
    )


OPENAPI_MODELS = [
    RegisterVenture,
    UpdateVenture,
    ChangeVentureStatus,
    Venture,
    VenturePage,
    VentureDetail,
]


def openapi_paths() -> dict:
    venture_id = [path_param("venture_id")]
    return {
        "/v1/ventures": {
            "post": operation(
                "Register a joint venture",
                201,
                Venture,
                RegisterVenture,
                headers=("Location", "ETag"),
                refusals=(403, 409),
            ),
            "get": operation(
                "List ventures",
                200,
                VenturePage,
                params=LIST_PARAMS + parameters_of(VentureFilters),
            ),
        },
        "/v1/ventures/{venture_id}": {
            "get": operation(
                "Read a venture with its facilities, licences and investment summary",
                200,
                VentureDetail,
                params=venture_id,
                headers=("ETag",),
            ),
            "patch": operation(
                "Update a venture",
                200,
                Venture,
                UpdateVenture,
                params=venture_id + [if_match()],
                headers=("ETag",),
                refusals=(403, 409, 412, 428),
            ),
        },
        "/v1/ventures/{venture_id}/status": {
            "post": operation(
                "Change a venture's status (regulator, ops)",
                200,
                Venture,
                ChangeVentureStatus,
                params=venture_id,
                headers=("ETag",),
                refusals=(403, 409),
            ),
        },
    }
