"""/v1/ventures/{id}/facilities and /v1/facilities: the HTTP face of the facilities
service."""

from collections.abc import Callable
from typing import Any, TypeVar

from services.facilities.contract import Facility, FacilityFilters, RegisterFacility
from services.gateway.http import etag, json_response, read_json_body
from services.gateway.routing import route
from shared.errors import NotFound, ServiceUnavailable
from shared.pagination import filters_in, page_of, paged

T = TypeVar("T")
TAG = "facilities"


def list_filters(request, principal) -> dict:
    """The query's filters; an investor's list is always limited to its own."""
    filters = filters_in(request.args)
    if principal.role == "investor":
        filters["owner"] = principal.owner
    return filters


def once_projected(command: Callable[[], T], service: str, what: str) -> T:
    """Run a command on a service that knows `what` only from another service's events.
    The gateway has just read it from its owner, so a 404 means the event is still on
    its way: a short wait, not a missing resource."""
    try:
        return command()
    except NotFound:
        raise ServiceUnavailable(
            f"the {service} service has not yet learned of {what} (it learns of it from "
            "events within seconds); retry shortly"
        ) from None


class FacilityRoutes:
    """Mixed into the gateway service, which provides `facilities`, `principal` and
    (from VentureRoutes) `_visible_venture`."""

    facilities: Any  # a nameko dependency of the gateway service

    def _visible_facility(self, principal, facility_id: str, field: str | None = None) -> dict:
        """The facility, if the caller may see it. `field` names the input that gave its id."""
        errors = [{"loc": [field], "msg": "no such facility", "type": "not_found"}] if field else []
        missing = NotFound(f"no facility {facility_id}", errors=errors)
        try:
            facility = self.facilities.get_facility(facility_id)
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
        self._visible_venture(principal, venture_id)
        body = read_json_body(request)
        facility = once_projected(
            lambda: self.facilities.register_facility(venture_id, body, principal.model_dump()),
            "facilities",
            f"venture {venture_id}",
        )
        return json_response(
            facility,
            201,
            {"Location": f"/v1/facilities/{facility['id']}", "ETag": etag(facility["version"])},
        )

    @route(
        "GET",
        "/v1/facilities",
        summary="List facilities",
        tag=TAG,
        query=FacilityFilters,
        paged=True,
        response=page_of(Facility),
    )
    def list_facilities(self, request, principal):
        filters = list_filters(request, principal)
        return json_response(
            paged(
                lambda after, limit: self.facilities.list_facilities(filters, after, limit),
                request.args,
            )
        )

    @route(
        "GET",
        "/v1/facilities/<facility_id>",
        summary="Read a facility",
        tag=TAG,
        response=Facility,
        headers=("ETag",),
    )
    def get_facility(self, request, principal, facility_id):
        facility = self._visible_facility(principal, facility_id)
        return json_response(facility, headers={"ETag": etag(facility["version"])})
