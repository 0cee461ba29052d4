"""/v1/public: the public register — ventures, plants and licences as a public register
shows them, to anyone, without a key, read only, rate-limited per client address;
answered by the search service (docs/architecture.md §10), lists also as CSV and JSON
Lines exports (services/gateway/public.py)."""

from typing import Any

from services.gateway.http import json_response
from services.gateway.lists import RECENT
from services.gateway.public import (
    export_response,
    exports_of,
    list_query_with_format,
    wanted_format,
)
from services.gateway.routing import route
from services.search.contract import (
    PublicFacility,
    PublicFacilityPage,
    PublicLicence,
    PublicLicencePage,
    PublicVenture,
    PublicVenturePage,
)
from shared.pagination import MAX_LIMIT, decode_cursor, encode_cursor, filters_in, parse_limit

TAG = "public register"
NOT_FILTERS = ("format",)  # of a list's parameters, besides paging's


class PublicRoutes:
    """Mixed into the gateway service, which provides `search` and `throttle`."""

    search: Any  # nameko dependencies of the gateway service
    throttle: Any

    def _count_read(self, request) -> None:
        """Anyone may read, as fast as one key may: counted per client address."""
        self.throttle.expensive_read(f"address {request.remote_addr or 'unknown'}")

    def _register_list(self, request, doctype: str):
        self._count_read(request)
        wanted = wanted_format(request)
        query = {k: v for k, v in filters_in(request.args).items() if k not in NOT_FILTERS}
        # Checked whatever the format, though an export walks every page from the first.
        limit = parse_limit(request.args.get("limit"))
        cursor = decode_cursor(request.args.get("cursor"))
        # Read your writes (§10): what this gateway wrote a moment ago, whoever wrote it.
        recent = RECENT.every()
        if wanted != "json":
            return export_response(
                doctype,
                wanted,
                lambda after: self.search.register(
                    doctype, query, after, MAX_LIMIT, None if after else recent
                ),
            )
        answer = self.search.register(doctype, query, cursor, limit, recent)
        next_cursor = answer["next_cursor"]
        return json_response(
            {
                "items": answer["items"],
                "next_cursor": encode_cursor(next_cursor) if next_cursor else None,
            }
        )

    def _register_item(self, request, doctype: str, document_id: str):
        self._count_read(request)
        return json_response(self.search.register_item(doctype, document_id, RECENT.every()))

    @route(
        "GET",
        "/v1/public/ventures",
        summary="The public register's ventures: search, filter, sort, export",
        tag=TAG,
        public=True,
        query=list_query_with_format("venture"),
        paged=True,
        response=PublicVenturePage,
        exports=exports_of("venture"),
        refusals=(429,),
    )
    def public_ventures(self, request):
        return self._register_list(request, "venture")

    @route(
        "GET",
        "/v1/public/ventures/<venture_id>",
        summary="A venture as the public register shows it",
        tag=TAG,
        public=True,
        response=PublicVenture,
        refusals=(429,),
    )
    def public_venture(self, request, venture_id):
        return self._register_item(request, "venture", venture_id)

    @route(
        "GET",
        "/v1/public/facilities",
        summary="The public register's plants: search, filter, sort, export",
        tag=TAG,
        public=True,
        query=list_query_with_format("facility"),
        paged=True,
        response=PublicFacilityPage,
        exports=exports_of("facility"),
        refusals=(429,),
    )
    def public_facilities(self, request):
        return self._register_list(request, "facility")

    @route(
        "GET",
        "/v1/public/facilities/<facility_id>",
        summary="A plant as the public register shows it",
        tag=TAG,
        public=True,
        response=PublicFacility,
        refusals=(429,),
    )
    def public_facility(self, request, facility_id):
        return self._register_item(request, "facility", facility_id)

    @route(
        "GET",
        "/v1/public/licenses",
        summary="The public register's licences: search, filter, sort, export",
        tag=TAG,
        public=True,
        query=list_query_with_format("licence"),
        paged=True,
        response=PublicLicencePage,
        exports=exports_of("licence"),
        refusals=(429,),
    )
    def public_licenses(self, request):
        return self._register_list(request, "licence")

    @route(
        "GET",
        "/v1/public/licenses/<license_id>",
        summary="A licence as the public register shows it",
        tag=TAG,
        public=True,
        response=PublicLicence,
        refusals=(429,),
    )
    def public_license(self, request, license_id):
        return self._register_item(request, "licence", license_id)
