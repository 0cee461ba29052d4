"""The investments service: records the money partners commit and disburse, the exchange
rates ops sets, and reports on both. Entrypoints are thin: parse, apply the domain
rules, persist (with the event); reports read the totals kept with each flow (totals.py),
the portfolio's folded in by a background loop (folder.py)."""

from services.investments import contract, domain, exports, reports
from services.investments.contract import SERVICE
from services.investments.folder import PortfolioFolder
from services.investments.store import VENTURE_VIEWS, InvestmentStore, new_flow_id
from services.ventures.contract import VentureEvent
from shared import figures  # the module: `nameko run` would take the mixin for a service
from shared.clock import utcnow
from shared.consistency import ProjectionWatch
from shared.entrypoints import rpc
from shared.envelope import CloudEvent
from shared.errors import validated
from shared.inbox import EventLog, cloud_event_handler, event_log_handler, fields_kept
from shared.mongo import MongoStore
from shared.outbox import OutboxRelay


def venture_summary(
    store: InvestmentStore, venture_id: str, reporting: str
) -> reports.VentureSummary:
    """One venture's flows, by partner and by currency."""
    rows = store.venture_day_totals(venture_id)
    return reports.venture_summary(
        venture_id, rows, store.rates_to_convert(rows, reporting), reporting
    )


def portfolio_summary(
    store: InvestmentStore, query: contract.PortfolioQuery, owner: str | None
) -> reports.PortfolioSummary:
    """Every venture's flows, or only those of `owner`'s ventures (an investor's view)."""
    venture_ids = None if owner is None else store.venture_ids_of(owner)
    rows, rates = store.portfolio_rows(query.group_by, query.currency, venture_ids)
    return reports.portfolio_summary(
        rows,
        rates,
        query.currency,
        query.group_by,
        lambda days: store.flows_at(days, venture_ids),
    )


def export_page(
    store: InvestmentStore,
    venture_ids: list[str],
    start: str | None,
    form: contract.ExportFormat,
    limit: int = contract.EXPORT_PAGE_FLOWS,
) -> contract.ExportPage:
    """The page of the export of `venture_ids`' flows (in that order) from `start` (a
    page's `next`): about `limit` flows, whole value dates of each venture, each read by
    equality on its venture and $in on its dates. A venture this service does not know
    has no flows, and no activity either."""
    index, day = exports.parse_position(start)
    items: list[dict] = []
    flows = 0
    while index < len(venture_ids) and flows < limit:
        venture = store.venture(venture_ids[index])
        if venture is None:
            index, day = index + 1, None
            continue
        if day is None and form == "iati":
            items.append({"activity": exports.activity(venture)})
        days, day = exports.days_of_page(
            store.flow_days(venture.id), day, limit - flows, page_empty=not flows
        )
        for flow in store.flows_on(venture.id, days):
            if form == "csv":
                items.append({"row": exports.csv_row(flow, venture)})
            else:
                items.append({"transaction": exports.transaction(flow, venture)})
            flows += 1
        if day is not None:  # the page is full before this venture's next day
            break
        index += 1
    more = index < len(venture_ids)
    return contract.ExportPage(items=items, next=exports.position(index, day) if more else None)


class InvestmentsService(figures.ServiceFigures):
    name = SERVICE

    store: InvestmentStore = MongoStore(InvestmentStore)
    relay = OutboxRelay()
    # Folds the entries each flow leaves pending into the portfolio's report totals.
    folder = PortfolioFolder()
    ventures_seen: ProjectionWatch = ProjectionWatch(VENTURE_VIEWS, "venture")

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "mongo": self.store.ping()}

    @rpc
    def record_flow(
        self, venture_id: str, body: str, actor: dict, venture_version: int = 0
    ) -> dict:
        """`venture_version`: the venture's version as the caller read it from its owner;
        the flow waits (bounded) until this service has learned of it."""
        command = domain.parse_flow(body)
        self.ventures_seen.require(venture_id, venture_version)
        flow_id = new_flow_id()

        def record(venture: domain.VentureView | None) -> domain.FlowDecision:
            return domain.record(venture, venture_id, command, flow_id, actor, utcnow())

        return self.store.record_flow(venture_id, record).model_dump(mode="json")

    @rpc
    def list_flows(self, venture_id: str, filters: dict, after: str | None, limit: int) -> list:
        query = validated(contract.FlowFilters, filters)
        found = self.store.list_flows(venture_id, query.model_dump(exclude_none=True), after, limit)
        return [flow.model_dump(mode="json") for flow in found]

    @rpc
    def export_flows(self, venture_ids: list[str], start: str | None, form: str) -> dict:
        """A page of the export of these ventures' flows (`contract.ExportPage`); pass
        its `next` as `start` for the following one."""
        export = validated(contract.ExportQuery, {"format": form})
        page = export_page(self.store, venture_ids, start, export.format or "csv")
        return page.model_dump(mode="json")

    @rpc
    def venture_summary(self, venture_id: str, query: dict) -> dict:
        reporting = validated(contract.SummaryQuery, query).currency
        return venture_summary(self.store, venture_id, reporting).model_dump(mode="json")

    @rpc
    def portfolio_summary(self, query: dict, owner: str | None = None) -> dict:
        parsed = validated(contract.PortfolioQuery, query)
        return portfolio_summary(self.store, parsed, owner).model_dump(mode="json")

    @rpc
    def set_fx_rate(self, currency: str, day: str, body: str, actor: dict) -> dict:
        key, command = domain.parse_fx_rate(currency, day, body)

        def set_rate(current: contract.FxRate | None) -> domain.RateDecision | None:
            return domain.set_rate(key, command, current, actor, utcnow())

        rate, changed = self.store.set_fx_rate(key, set_rate)
        return {"fx_rate": rate.model_dump(mode="json"), "changed": changed}

    @cloud_event_handler(contract.PROJECTS_VENTURES)
    def project_venture(self, event: CloudEvent, changed: VentureEvent):
        self.store.apply_venture_event(event, fields_kept(domain.VentureView, changed.venture))

    @event_log_handler(SERVICE)
    def keep_event_log(self, event):
        EventLog(self.store.db).keep(event)
