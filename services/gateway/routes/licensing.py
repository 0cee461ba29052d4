"""/v1/licenses: the HTTP face of the licensing service."""

import json
import logging
from typing import Any

from services.gateway.as_of import as_of_in, page_as_of, with_as_of
from services.gateway.http import etag, json_response, read_json_body
from services.gateway.lists import search_list
from services.gateway.routing import route
from services.licensing.contract import (
    ApplyForLicence,
    HistoryEntry,
    Licence,
    RequestTransition,
)
from services.search.contract import LicencePage, LicenceQuery
from shared.as_of import AsOfQuery
from shared.consistency import CATCH_UP_SECONDS
from shared.errors import NotFound, ServiceUnavailable
from shared.pagination import decode_cursor, page, page_of, parse_limit

log = logging.getLogger(__name__)

TAG = "licences"
# Facilities answers whether it follows a decision within its bound; one that is down
# holds the decision's answer this long, not the whole RPC timeout.
FOLLOW_TIMEOUT_SECONDS = CATCH_UP_SECONDS + 1


def facility_named_in(body: str) -> str | None:
    """The facility an application names, for the ownership check. When there is none
    to check (absent, not a string), licensing refuses the body as invalid anyway."""
    document = json.loads(body)
    facility_id = document.get("facility_id") if isinstance(document, dict) else None
    return facility_id if isinstance(facility_id, str) else None


class LicenceRoutes:
    """Mixed into the gateway service, which provides `licensing`, `facilities`,
    `principal` and (from FacilityRoutes) `_visible_facility`."""

    licensing: Any  # nameko dependencies of the gateway service
    facilities: Any
    search: Any

    def _visible_licence(self, principal, license_id: str, as_of: str | None = None) -> dict:
        licence = self.licensing.get_license(license_id, as_of)
        if not principal.may_see(licence["owner"]):
            # Not 403: an investor learns nothing about other investors' licences.
            raise NotFound(f"no licence {license_id}")
        return licence

    @route(
        "POST",
        "/v1/licenses",
        summary="Apply for a DRAP licence for a facility",
        tag=TAG,
        roles=("investor", "ops"),
        body=ApplyForLicence,
        response=Licence,
        status=(201,),
        headers=("Location", "ETag"),
        refusals=(403, 404, 409),
    )
    def apply_for_license(self, request, principal):
        body = read_json_body(request)
        facility_id = facility_named_in(body)
        # The version read is the consistency token: licensing waits until it knows it.
        version = 0
        if facility_id is not None:
            version = self._visible_facility(principal, facility_id, "facility_id")["version"]
        licence = self.licensing.apply_for_license(body, principal.model_dump(), version)
        return json_response(
            licence,
            201,
            {"Location": f"/v1/licenses/{licence['id']}", "ETag": etag(licence["version"])},
        )

    @route(
        "POST",
        "/v1/licenses/<license_id>/renewal",
        summary="Apply for the renewal of a licence in the last 180 days of its validity; "
        "409 says when the window opens",
        tag=TAG,
        roles=("investor", "ops"),
        response=Licence,
        status=(201,),
        headers=("Location", "ETag"),
        refusals=(403, 404, 409),
    )
    def apply_for_renewal(self, request, principal, license_id):
        self._visible_licence(principal, license_id)  # an investor renews only its own
        application = self.licensing.apply_for_renewal(license_id, principal.model_dump())
        return json_response(
            application,
            201,
            {
                "Location": f"/v1/licenses/{application['id']}",
                "ETag": etag(application["version"]),
            },
        )

    @route(
        "GET",
        "/v1/licenses",
        summary="List, search and count licences",
        tag=TAG,
        query=with_as_of(LicenceQuery),
        paged=True,
        response=LicencePage,
    )
    def list_licenses(self, request, principal):
        if as_of := as_of_in(request.args):
            return json_response(
                page_as_of(self.licensing.list_licenses, as_of, request.args, principal)
            )
        return json_response(search_list(self.search, "licence", request, principal))

    @route(
        "GET",
        "/v1/licenses/<license_id>",
        summary="Read a licence",
        tag=TAG,
        query=AsOfQuery,
        response=Licence,
        headers=("ETag",),
    )
    def get_license(self, request, principal, license_id):
        licence = self._visible_licence(principal, license_id, as_of_in(request.args))
        return json_response(licence, headers={"ETag": etag(licence["version"])})

    @route(
        "POST",
        "/v1/licenses/<license_id>/transitions",
        summary="Move a licence along its lifecycle; 409 names the allowed next states",
        tag=TAG,
        roles=("regulator", "ops"),
        body=RequestTransition,
        response=Licence,
        headers=("ETag",),
        refusals=(403, 409),
    )
    def transition_license(self, request, principal, license_id):
        licence = self.licensing.transition_license(
            license_id, read_json_body(request), principal.model_dump()
        )
        self._plant_follows(licence)
        return json_response(licence, headers={"ETag": etag(licence["version"])})

    def _plant_follows(self, licence: dict) -> None:
        """Answer a decision once facilities has applied it (it waits, bounded, and knows
        which licence types a plant's status follows), so that a read of the plant right
        after it shows the status the decision gave it. The decision is made either way:
        past the bound it is answered all the same, with one line in the log."""
        try:
            followed = self.facilities.within(FOLLOW_TIMEOUT_SECONDS).caught_up_with_licence(
                licence["id"], licence["type"], licence["version"]
            )
            why = "it had not applied it yet"
        except ServiceUnavailable as error:
            followed, why = False, str(error)
        if not followed:
            log.warning(
                "licence %s version %d is decided, but facilities has not followed it yet "
                "(%s): a read of facility %s may show its former status for a moment",
                licence["id"],
                licence["version"],
                why,
                licence["facility_id"],
            )

    @route(
        "GET",
        "/v1/licenses/<license_id>/history",
        summary="Every transition of a licence, in order",
        tag=TAG,
        query=AsOfQuery,
        paged=True,
        response=page_of(HistoryEntry),
    )
    def license_history(self, request, principal, license_id):
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        as_of = as_of_in(request.args)
        self._visible_licence(principal, license_id, as_of)
        items = self.licensing.license_history(license_id, after, limit + 1, as_of)
        return json_response(page(items, limit))
