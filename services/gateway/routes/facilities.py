"""/v1/ventures/{id}/facilities and /v1/facilities: the HTTP face of the facilities
service."""

from typing import Any

from services.facilities.contract import Facility, RegisterFacility
from services.gateway.as_of import as_of_in, page_as_of, with_as_of
from services.gateway.http import etag, json_response, read_json_body
from services.gateway.lists import search_list
from services.gateway.routing import route
from services.search.contract import FacilityPage, FacilityQuery
from shared.as_of import AsOfQuery
from shared.errors import NotFound

TAG = "facilities"


class FacilityRoutes:
    """Mixed into the gateway service, which provides `facilities`, `principal` and
    (from VentureRoutes) `_visible_venture`."""

    facilities: Any  # a nameko dependency of the gateway service
    search: Any  # the search service, which answers the lists

    def _visible_facility(
        self, principal, facility_id: str, field: str | None = None, as_of: str | None = None
    ) -> dict:
        """The facility (`as_of` an instant, as it stood then), if the caller may see it.
        `field` names the input that gave its id."""
        errors = [{"loc": [field], "msg": "no such facility", "type": "not_found"}] if field else []
        missing = NotFound(f"no facility {facility_id}", errors=errors)
        try:
            facility = self.facilities.get_facility(facility_id, as_of)
        except NotFound:
            raise missing from None
        if not principal.may_see(facility["owner"]):
            # Not 403: an investor learns nothing about other investors' facilities.
            raise missing
        return facility

    @route(
        "POST",
        "/v1/ventures/<venture_id>/facilities",
        summary="Register a facility (plant) of a venture",
        tag=TAG,
        roles=("investor", "ops"),
        body=RegisterFacility,
        response=Facility,
        status=(201,),
        headers=("Location", "ETag"),
        refusals=(403, 409),
    )
    def register_facility(self, request, principal, venture_id):
        venture = self._visible_venture(principal, venture_id)
        # The version read is the consistency token: facilities waits until it knows it.
        facility = self.facilities.register_facility(
            venture_id, read_json_body(request), principal.model_dump(), venture["version"]
        )
        return json_response(
            facility,
            201,
            {"Location": f"/v1/facilities/{facility['id']}", "ETag": etag(facility["version"])},
        )

    @route(
        "GET",
        "/v1/facilities",
        summary="List, search and count facilities",
        tag=TAG,
        query=with_as_of(FacilityQuery),
        paged=True,
        response=FacilityPage,
    )
    def list_facilities(self, request, principal):
        if as_of := as_of_in(request.args):
            return json_response(
                page_as_of(self.facilities.list_facilities, as_of, request.args, principal)
            )
        return json_response(search_list(self.search, "facility", request, principal))

    @route(
        "GET",
        "/v1/facilities/<facility_id>",
        summary="Read a facility",
        tag=TAG,
        query=AsOfQuery,
        response=Facility,
        headers=("ETag",),
    )
    def get_facility(self, request, principal, facility_id):
        as_of = as_of_in(request.args)
        facility = self._visible_facility(principal, facility_id, as_of=as_of)
        return json_response(facility, headers={"ETag": etag(facility["version"])})
