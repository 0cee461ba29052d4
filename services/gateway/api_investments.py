"""/v1/ventures/{id}/investments, /v1/investments/summary and /v1/fx-rates: the HTTP face
of the investments service."""

from services.gateway.api_facilities import once_projected
from services.gateway.http import api, etag, json_response, read_json_body
from services.gateway.openapi import LIST_PARAMS, operation, page_of, parameters_of, path_param
from services.investments.contract import (
    Flow,
    FlowFilters,
    FxRate,
    FxRateKey,
    PortfolioQuery,
    PortfolioSummary,
    RecordFlow,
    SetFxRate,
    SummaryQuery,
    VentureSummary,
)
from shared.errors import RegistryError
from shared.pagination import decode_cursor, page, parse_limit

PAGING_PARAMS = ("limit", "cursor")
SUMMARY_CURRENCY = "USD"


class InvestmentRoutes:
    """Mixed into the gateway service, which provides `investments`, `principal` and
    (from VentureRoutes) `_visible_venture`."""

    def venture_investment_summary(self, venture_id: str) -> dict:
        """The summary a venture's detail view shows, in USD. A report that cannot be
        made (a rate is missing, the service is down) is shown as its problem document
        instead of failing the whole view."""
        try:
            return self.investments.venture_summary(venture_id, {"currency": SUMMARY_CURRENCY})
        except RegistryError as error:
            return {"problem": error.problem()}

    @api("POST", "/v1/ventures/<venture_id>/investments")
    def record_investment(self, request, venture_id):
        principal = self.principal(request).require("investor", "ops")
        self._visible_venture(principal, venture_id)
        flow = once_projected(
            lambda: self.investments.record_flow(
                venture_id, read_json_body(request), principal.model_dump()
            ),
            "investments",
            f"venture {venture_id}",
        )
        return json_response(flow, 201)

    @api("GET", "/v1/ventures/<venture_id>/investments")
    def list_investments(self, request, venture_id):
        self._visible_venture(self.principal(request), venture_id)
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        filters = {k: v for k, v in request.args.items() if k not in PAGING_PARAMS}
        items = self.investments.list_flows(venture_id, filters, after, limit + 1)
        return json_response(page(items, limit))

    @api("GET", "/v1/ventures/<venture_id>/investments/summary")
    def venture_investment_report(self, request, venture_id):
        self._visible_venture(self.principal(request), venture_id)
        summary = self.investments.venture_summary(venture_id, dict(request.args.items()))
        return json_response(summary)

    @api("GET", "/v1/investments/summary")
    def portfolio_investment_report(self, request):
        principal = self.principal(request)
        # An investor's portfolio is the ventures its own keys registered.
        owner = principal.owner if principal.role == "investor" else None
        summary = self.investments.portfolio_summary(dict(request.args.items()), owner)
        return json_response(summary)

    @api("PUT", "/v1/fx-rates/<currency>/<date>")
    def set_fx_rate(self, request, currency, date):
        principal = self.principal(request).require("ops")
        result = self.investments.set_fx_rate(
            currency, date, read_json_body(request), principal.model_dump()
        )
        rate = result["fx_rate"]
        created = result["changed"] and rate["version"] == 1
        return json_response(rate, 201 if created else 200, {"ETag": etag(rate["version"])})


FlowPage = page_of(Flow)
OPENAPI_MODELS = [RecordFlow, Flow, FlowPage, VentureSummary, PortfolioSummary, SetFxRate, FxRate]


def openapi_paths() -> dict:
    venture_id = [path_param("venture_id")]
    return {
        "/v1/ventures/{venture_id}/investments": {
            "post": operation(
                "Record an investment flow (owner, ops)",
                201,
                Flow,
                RecordFlow,
                params=venture_id,
                refusals=(403, 409),
            ),
            "get": operation(
                "List a venture's investment flows",
                200,
                FlowPage,
                params=venture_id + LIST_PARAMS + parameters_of(FlowFilters),
            ),
        },
        "/v1/ventures/{venture_id}/investments/summary": {
            "get": operation(
                "A venture's investments, in one currency (default USD)",
                200,
                VentureSummary,
                params=venture_id + parameters_of(SummaryQuery),
            ),
        },
        "/v1/investments/summary": {
            "get": operation(
                "Investments across the portfolio (an investor's: its own ventures)",
                200,
                PortfolioSummary,
                params=parameters_of(PortfolioQuery),
            ),
        },
        "/v1/fx-rates/{currency}/{date}": {
            "put": operation(
                "Set a currency's usd_per_unit for a day (ops): 201 when the day had no "
                "rate yet, 200 when it changes one",
                (200, 201),
                FxRate,
                SetFxRate,
                params=parameters_of(FxRateKey, "path"),
                headers=("ETag",),
                refusals=(403, 409),
            ),
        },
    }
