"""/v1/ventures/{id}/facilities and /v1/facilities: the HTTP face of the facilities
service."""

from collections.abc import Callable
from typing import TypeVar

from services.facilities.contract import Facility, FacilityFilters, RegisterFacility
from services.gateway.http import api, etag, json_response, read_json_body
from services.gateway.openapi import LIST_PARAMS, operation, page_of, parameters_of, path_param
from shared.errors import NotFound, ServiceUnavailable
from shared.pagination import decode_cursor, page, parse_limit

PAGING_PARAMS = ("limit", "cursor")
T = TypeVar("T")


def list_filters(request, principal) -> dict:
    """The query's filters; an investor's list is always limited to its own."""
    filters = {k: v for k, v in request.args.items() if k not in PAGING_PARAMS}
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
    `_visible_venture`."""

    def _visible_facility(self, principal, facility_id: str, loc: list | None = None) -> dict:
        """The facility, if the caller may see it. `loc` names the field that gave its id."""
        errors = [{"loc": loc, "msg": "no such facility", "type": "not_found"}] if loc else []
        missing = NotFound(f"no facility {facility_id}", errors=errors)
        try:
            facility = self.facilities.get_facility(facility_id)
        except NotFound:
            raise missing from None
        if not principal.may_see(facility["owner"]):
            # Not 403: an investor learns nothing about other investors' facilities.
            raise missing
        return facility

    @api("POST", "/v1/ventures/<venture_id>/facilities")
    def register_facility(self, request, venture_id):
        principal = self.principal(request).require("investor", "ops")
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

    @api("GET", "/v1/facilities")
    def list_facilities(self, request):
        principal = self.principal(request)
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        items = self.facilities.list_facilities(list_filters(request, principal), after, limit + 1)
        return json_response(page(items, limit))

    @api("GET", "/v1/facilities/<facility_id>")
    def get_facility(self, request, facility_id):
        facility = self._visible_facility(self.principal(request), facility_id)
        return json_response(facility, headers={"ETag": etag(facility["version"])})


FacilityPage = page_of(Facility)
OPENAPI_MODELS = [RegisterFacility, Facility, FacilityPage]


def openapi_paths() -> dict:
    return {
        "/v1/ventures/{venture_id}/facilities": {
            "post": operation(
                "Register a facility (plant) of a venture (owner, ops)",
                201,
                Facility,
                RegisterFacility,
                params=[path_param("venture_id")],
                headers=("Location", "ETag"),
                refusals=(403, 409),
            ),
        },
        "/v1/facilities": {
            "get": operation(
                "List facilities",
                200,
                FacilityPage,
                params=LIST_PARAMS + parameters_of(FacilityFilters),
            ),
        },
        "/v1/facilities/{facility_id}": {
            "get": operation(
                "Read a facility",
                200,
                Facility,
                params=[path_param("facility_id")],
                headers=("ETag",),
            ),
        },
    }
