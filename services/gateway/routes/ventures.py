"""/v1/ventures: the HTTP face of the ventures service."""

from typing import Any

from pydantic import ConfigDict, Field

from services.facilities.contract import FACILITY_EXAMPLE, Facility
from services.gateway.as_of import as_of_in, page_as_of, with_as_of
from services.gateway.http import etag, expected_version, json_response, read_json_body
from services.gateway.lists import search_list
from services.gateway.problems import problem_for
from services.gateway.routing import route
from services.investments.contract import VENTURE_SUMMARY_EXAMPLE, VentureSummary
from services.licensing.contract import LICENCE_EXAMPLE, Licence
from services.search.contract import VenturePage, VentureQuery
from services.ventures.contract import (
    VENTURE_EXAMPLE,
    ChangeVentureStatus,
    RegisterVenture,
    UpdateVenture,
    Venture,
)
from shared.as_of import AsOfQuery
from shared.errors import NotFound, RuleViolated
from shared.pagination import (
    every_item,
)

TAG = "ventures"
SUMMARY_NOT_AS_OF = "an investment summary is not answered as of a past instant"


class VentureDetail(Venture):
    """A venture as `GET /v1/ventures/{id}` composes it from every service."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **VENTURE_EXAMPLE,
                    "facilities": [FACILITY_EXAMPLE],
                    "licenses": [LICENCE_EXAMPLE],
                    "investment_summary": VENTURE_SUMMARY_EXAMPLE,
                }
            ]
        }
    )

    facilities: list[Facility]
    licenses: list[Licence]
    investment_summary: VentureSummary | dict = Field(
        description='in USD; `{"problem": ...}` when it cannot be made (e.g. a rate is missing)'
    )


class VentureRoutes:
    """Mixed into the gateway service, which provides `ventures`, `principal` and (from
    InvestmentRoutes) `venture_investment_summary`."""

    ventures: Any  # nameko dependencies of the gateway service
    facilities: Any
    licensing: Any
    search: Any  # the search service, which answers the lists
    venture_investment_summary: Any  # InvestmentRoutes'

    def _visible_venture(self, principal, venture_id: str, as_of: str | None = None) -> dict:
        venture = self.ventures.get_venture(venture_id, as_of)
        if not principal.may_see(venture["owner"]):
            # Not 403: an investor learns nothing about other investors' ventures.
            raise NotFound(f"no venture {venture_id}")
        return venture

    @route(
        "POST",
        "/v1/ventures",
        summary="Register a joint venture",
        tag=TAG,
        roles=("investor", "ops"),
        body=RegisterVenture,
        response=Venture,
        status=(201,),
        headers=("Location", "ETag"),
        refusals=(403, 409),
    )
    def register_venture(self, request, principal):
        venture = self.ventures.register_venture(read_json_body(request), principal.model_dump())
        return json_response(
            venture,
            201,
            {"Location": f"/v1/ventures/{venture['id']}", "ETag": etag(venture["version"])},
        )

    @route(
        "GET",
        "/v1/ventures",
        summary="List, search and count ventures",
        tag=TAG,
        query=with_as_of(VentureQuery),
        paged=True,
        response=VenturePage,
    )
    def list_ventures(self, request, principal):
        if as_of := as_of_in(request.args):
            return json_response(
                page_as_of(self.ventures.list_ventures, as_of, request.args, principal)
            )
        return json_response(search_list(self.search, "venture", request, principal))

    @route(
        "GET",
        "/v1/ventures/<venture_id>",
        summary="Read a venture with its facilities, licences and investment summary",
        tag=TAG,
        query=AsOfQuery,
        response=VentureDetail,
        headers=("ETag",),
    )
    def get_venture(self, request, principal, venture_id):
        venture = self._venture_detail(principal, venture_id, as_of_in(request.args))
        return json_response(venture, headers={"ETag": etag(venture["version"])})

    def _venture_detail(self, principal, venture_id: str, as_of: str | None = None) -> dict:
        """A venture with its facilities, licences and investment summary (VentureDetail),
        as the API and the web pages show it; `as_of` an instant, its facilities and
        licences as they stood then too, and no investment summary (investments keeps
        no history of its reports)."""
        venture = self._visible_venture(principal, venture_id, as_of)
        venture["investment_summary"] = (
            {"problem": problem_for(RuleViolated(SUMMARY_NOT_AS_OF))}
            if as_of
            else self.venture_investment_summary(venture_id)
        )
        under_venture = {"venture_id": venture_id}
        venture["facilities"] = every_item(
            lambda after, limit: self.facilities.list_facilities(under_venture, after, limit, as_of)
        )
        venture["licenses"] = every_item(
            lambda after, limit: self.licensing.list_licenses(under_venture, after, limit, as_of)
        )
        return venture

    @route(
        "PATCH",
        "/v1/ventures/<venture_id>",
        summary="Update a venture",
        tag=TAG,
        roles=("investor", "ops"),
        body=UpdateVenture,
        if_match=True,
        response=Venture,
        headers=("ETag",),
        refusals=(403, 409),
    )
    def update_venture(self, request, principal, venture_id):
        current = self._visible_venture(principal, venture_id)
        version = expected_version(request, current["version"])
        venture = self.ventures.update_venture(
            venture_id, read_json_body(request), version, principal.model_dump()
        )
        return json_response(venture, headers={"ETag": etag(venture["version"])})

    @route(
        "POST",
        "/v1/ventures/<venture_id>/status",
        summary="Change a venture's status",
        tag=TAG,
        roles=("regulator", "ops"),
        body=ChangeVentureStatus,
        response=Venture,
        headers=("ETag",),
        refusals=(403, 409),
    )
    def change_venture_status(self, request, principal, venture_id):
        venture = self.ventures.change_venture_status(
            venture_id, read_json_body(request), principal.model_dump()
        )
        return json_response(venture, headers={"ETag": etag(venture["version"])})
