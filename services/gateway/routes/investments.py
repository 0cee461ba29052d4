"""/v1/ventures/{id}/investments, /v1/investments/summary and /v1/fx-rates: the HTTP face
of the investments service."""

from typing import Any

from services.gateway.http import etag, json_response, read_json_body
from services.gateway.problems import problem_for
from services.gateway.routing import route
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
from shared.pagination import filters_in, page_of, paged

SUMMARY_CURRENCY = "USD"
TAG = "investments"


class InvestmentRoutes:
    """Mixed into the gateway service, which provides `investments`, `principal` and
    (from VentureRoutes) `_visible_venture`."""

    investments: Any  # a nameko dependency of the gateway service

    def venture_investment_summary(self, venture_id: str) -> dict:
        """The summary a venture's detail view shows, in USD. A report that cannot be
        made (a rate is missing, the service is down) is shown as its problem document
        instead of failing the whole view."""
        try:
            return self.investments.venture_summary(venture_id, {"currency": SUMMARY_CURRENCY})
        except RegistryError as error:
            return {"problem": problem_for(error)}

    @route(
        "POST",
        "/v1/ventures/<venture_id>/investments",
        summary="Record an investment flow",
        tag=TAG,
        roles=("investor", "ops"),
        body=RecordFlow,
        response=Flow,
        status=(201,),
        refusals=(403, 409),
    )
    def record_investment(self, request, principal, venture_id):
        venture = self._visible_venture(principal, venture_id)
        # The version read is the consistency token: investments waits until it knows it.
        flow = self.investments.record_flow(
            venture_id, read_json_body(request), principal.model_dump(), venture["version"]
        )
        return json_response(flow, 201)

    @route(
        "GET",
        "/v1/ventures/<venture_id>/investments",
        summary="List a venture's investment flows",
        tag=TAG,
        query=FlowFilters,
        paged=True,
        response=page_of(Flow),
    )
    def list_investments(self, request, principal, venture_id):
        self._visible_venture(principal, venture_id)
        filters = filters_in(request.args)
        return json_response(
            paged(
                lambda after, limit: self.investments.list_flows(venture_id, filters, after, limit),
                request.args,
            )
        )

    @route(
        "GET",
        "/v1/ventures/<venture_id>/investments/summary",
        summary="A venture's investments, in one currency (default USD)",
        tag=TAG,
        query=SummaryQuery,
        response=VentureSummary,
    )
    def venture_investment_report(self, request, principal, venture_id):
        self._visible_venture(principal, venture_id)
        summary = self.investments.venture_summary(venture_id, dict(request.args.items()))
        return json_response(summary)

    @route(
        "GET",
        "/v1/investments/summary",
        summary="Investments across the portfolio (an investor's: its own ventures)",
        tag=TAG,
        query=PortfolioQuery,
        response=PortfolioSummary,
    )
    def portfolio_investment_report(self, request, principal):
        # An investor's portfolio is the ventures its own keys registered.
        owner = principal.owner if principal.role == "investor" else None
        summary = self.investments.portfolio_summary(dict(request.args.items()), owner)
        return json_response(summary)

    @route(
        "PUT",
        "/v1/fx-rates/<currency>/<date>",
        summary="Set a currency's usd_per_unit for a day: 201 when the day had no rate yet, "
        "200 when it changes one",
        tag="fx-rates",
        roles=("ops",),
        path_model=FxRateKey,
        body=SetFxRate,
        response=FxRate,
        status=(200, 201),
        headers=("ETag",),
        refusals=(403, 409),
    )
    def set_fx_rate(self, request, principal, currency, date):
        result = self.investments.set_fx_rate(
            currency, date, read_json_body(request), principal.model_dump()
        )
        rate = result["fx_rate"]
        created = result["changed"] and rate["version"] == 1
        return json_response(rate, 201 if created else 200, {"ETag": etag(rate["version"])})
