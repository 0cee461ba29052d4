"""/v1/licenses: the HTTP face of the licensing service."""

import json

from services.gateway.api_facilities import list_filters, once_projected
from services.gateway.http import api, etag, json_response, read_json_body
from services.gateway.openapi import LIST_PARAMS, operation, page_of, parameters_of, path_param
from services.licensing.contract import (
    ApplyForLicence,
    HistoryEntry,
    Licence,
    LicenceFilters,
    RequestTransition,
)
from shared.errors import NotFound
from shared.pagination import decode_cursor, page, parse_limit

FACILITY_ID_LOC = ["body", "facility_id"]


def facility_named_in(body: str) -> str | None:
    """The facility an application names, for the ownership check. When there is none
    to check (absent, not a string), licensing refuses the body as invalid anyway."""
    document = json.loads(body)
    facility_id = document.get("facility_id") if isinstance(document, dict) else None
    return facility_id if isinstance(facility_id, str) else None


class LicenceRoutes:
    """Mixed into the gateway service, which provides `licensing`, `principal` and
    `_visible_facility`."""

    def _visible_licence(self, principal, license_id: str) -> dict:
        licence = self.licensing.get_license(license_id)
        if not principal.may_see(licence["owner"]):
            # Not 403: an investor learns nothing about other investors' licences.
            raise NotFound(f"no licence {license_id}")
        return licence

    @api("POST", "/v1/licenses")
    def apply_for_license(self, request):
        principal = self.principal(request).require("investor", "ops")
        body = read_json_body(request)
        facility_id = facility_named_in(body)
        if facility_id is not None:
            self._visible_facility(principal, facility_id, FACILITY_ID_LOC)
        licence = once_projected(
            lambda: self.licensing.apply_for_license(body, principal.model_dump()),
            "licensing",
            f"facility {facility_id}",
        )
        return json_response(
            licence,
            201,
            {"Location": f"/v1/licenses/{licence['id']}", "ETag": etag(licence["version"])},
        )

    @api("GET", "/v1/licenses")
    def list_licenses(self, request):
        principal = self.principal(request)
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        items = self.licensing.list_licenses(list_filters(request, principal), after, limit + 1)
        return json_response(page(items, limit))

    @api("GET", "/v1/licenses/<license_id>")
    def get_license(self, request, license_id):
        licence = self._visible_licence(self.principal(request), license_id)
        return json_response(licence, headers={"ETag": etag(licence["version"])})

    @api("POST", "/v1/licenses/<license_id>/transitions")
    def transition_license(self, request, license_id):
        principal = self.principal(request).require("regulator", "ops")
        licence = self.licensing.transition_license(
            license_id, read_json_body(request), principal.model_dump()
        )
        return json_response(licence, headers={"ETag": etag(licence["version"])})

    @api("GET", "/v1/licenses/<license_id>/history")
    def license_history(self, request, license_id):
        principal = self.principal(request)
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        self._visible_licence(principal, license_id)
        items = self.licensing.license_history(license_id, after, limit + 1)
        return json_response(page(items, limit))


LicencePage = page_of(Licence)
HistoryPage = page_of(HistoryEntry)
OPENAPI_MODELS = [ApplyForLicence, RequestTransition, Licence, LicencePage, HistoryPage]


def openapi_paths() -> dict:
    license_id = [path_param("license_id")]
    return {
        "/v1/licenses": {
            "post": operation(
                "Apply for a DRAP licence for a facility (owner, ops)",
                201,
                Licence,
                ApplyForLicence,
                headers=("Location", "ETag"),
                refusals=(403, 404, 409),
            ),
            "get": operation(
                "List licences",
                200,
                LicencePage,
                params=LIST_PARAMS + parameters_of(LicenceFilters),
            ),
        },
        "/v1/licenses/{license_id}": {
            "get": operation("Read a licence", 200, Licence, params=license_id, headers=("ETag",)),
        },
        "/v1/licenses/{license_id}/transitions": {
            "post": operation(
                "Move a licence along its lifecycle (regulator, ops); 409 names the "
                "allowed next states",
                200,
                Licence,
                RequestTransition,
                params=license_id,
                headers=("ETag",),
                refusals=(403, 409),
            ),
        },
        "/v1/licenses/{license_id}/history": {
            "get": operation(
                "Every transition of a licence, in order",
                200,
                HistoryPage,
                params=license_id + LIST_PARAMS,
            ),
        },
    }
