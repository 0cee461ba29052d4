"""The report totals kept with each flow, against the exact recomputation from the raw
flows: random flows recorded through the store on a real SecantusDB (reductions, several
currencies and minor units, days on both sides of a year's end), ventures that change
sector or province between them, rates set afterwards for earlier days, and every
report the service answers compared in full with the same report computed from the
flows as stored."""

import contextlib
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.investments import contract, domain, reports
from services.investments.service import portfolio_summary, venture_summary
from services.investments.store import InvestmentStore
from services.investments.totals import decode, exact_day_totals
from shared.envelope import new_event
from shared.errors import RuleViolated
from shared.mongo import connect

ACTOR = {"key_id": "key_prop", "role": "ops", "owner": "platform-ops"}
OWNER, OTHER = "Owner One", "Owner Two"
VENTURES = ("jv_prop_a", "jv_prop_b", "jv_prop_c")
OWNERS = {"jv_prop_a": OWNER, "jv_prop_b": OWNER, "jv_prop_c": OTHER}
PARTNERS = [{"name": "Pak Partner", "country": "PK"}, {"name": "China Partner", "country": "CN"}]
SECTORS = ("api_manufacturing", "biologics_vaccines")
PROVINCES = ("punjab", "sindh")
# Minor units 2, 0 and 3: JPY and KWD amounts make half-units in USD at rates like 0.5.
CURRENCIES = ("USD", "PKR", "JPY", "KWD")
PLACES = {"USD": 2, "PKR": 2, "JPY": 0, "KWD": 3}
FIRST_DAY = date(2024, 12, 20)  # value dates on both sides of a year's end
RATES = ("0.5", "0.0036", "0.005", "1.25", "3.2505", "0.000333333333")

flows = st.tuples(
    st.just("flow"),
    st.sampled_from(VENTURES),
    st.sampled_from([p["name"] for p in PARTNERS]),
    st.sampled_from(contract.FLOW_TYPES),
    st.sampled_from(CURRENCIES),
    st.integers(1, 10**9),
    st.booleans(),  # a commitment made a reduction
    st.integers(0, 30),  # its value date, as days after FIRST_DAY
    st.integers(0, 30),  # the value date of the commitment a disbursement needs
)
moves = st.tuples(
    st.just("move"), st.sampled_from(VENTURES), st.sampled_from(SECTORS), st.sampled_from(PROVINCES)
)
# Rates for any day of the range (before flows of later days: back-dated), some
# currencies left without one so that some flows cannot be converted.
rates = st.lists(
    st.tuples(st.sampled_from(CURRENCIES[1:]), st.integers(-5, 30), st.sampled_from(RATES)),
    max_size=6,
)


@pytest.fixture(scope="module")
def client(backends):
    client = connect(backends["mongo_uri"])
    yield client
    client.close()


def venture(venture_id: str, sector: str, province: str) -> dict:
    return {
        "owner": OWNERS[venture_id],
        "name": venture_id,
        "sector": sector,
        "province": province,
        "status": "active",
        "partners": PARTNERS,
    }


def project(store: InvestmentStore, venture_id: str, sequence: int, fields: dict) -> None:
    event = new_event("ventures", "venture.updated", venture_id, sequence, {})
    assert store.apply_venture_event(event, fields)


def record(store: InvestmentStore, step: tuple, n: int) -> None:
    """The flow of `step`; a disbursement or a reduction after a commitment (of twice
    its amount, on a day of its own) that lets it through the disbursement rule."""
    _, venture_id, partner, flow_type, currency, units, reduce, day, before = step
    amount = Decimal(units).scaleb(-PLACES[currency])
    if flow_type == contract.DISBURSEMENT or (reduce and flow_type == contract.COMMITMENT):
        record_one(store, venture_id, partner, "commitment", currency, 2 * amount, before, n)
        if flow_type == contract.COMMITMENT:
            amount = -amount
    record_one(store, venture_id, partner, flow_type, currency, amount, day, n)


def record_one(store, venture_id, partner, flow_type, currency, amount, day, n) -> None:
    command = contract.RecordFlow(
        type=flow_type,
        partner=partner,
        currency=currency,
        amount=str(amount),
        value_date=FIRST_DAY + timedelta(days=day),
    )
    flow_id = f"inv_prop_{n:04d}_{flow_type}_{amount < 0:d}"

    def decide(view):
        return domain.record(view, venture_id, command, flow_id, ACTOR, datetime.now(UTC))

    with contextlib.suppress(RuleViolated):  # beyond commitments: refused, and in
        store.record_flow(venture_id, decide)  # neither the flows nor the totals


def set_rate(store: InvestmentStore, currency: str, day: int, usd_per_unit: str) -> None:
    key = contract.FxRateKey(currency=currency, date=FIRST_DAY + timedelta(days=day))
    command = contract.SetFxRate(usd_per_unit=usd_per_unit)
    store.set_fx_rate(
        key, lambda current: domain.set_rate(key, command, current, ACTOR, datetime.now(UTC))
    )


def recomputed_portfolio(
    store: InvestmentStore, group_by: str | None, reporting: str, owner: str | None
) -> reports.PortfolioSummary:
    """The portfolio summary from the raw flows: each grouped by what the projection
    says of its venture now, summed exactly, converted by reports.py."""
    projected = {doc["_id"]: doc for doc in store.db.ventures.find()}
    stored = [
        doc
        for doc in store.flows.find()
        if owner is None or projected[doc["venture_id"]]["owner"] == owner
    ]

    def group_of(doc):
        if group_by in ("sector", "province"):
            return projected[doc["venture_id"]][group_by]
        return doc["partner_country"] if group_by == "partner_country" else None

    rows = exact_day_totals(
        (group_of(d), d["currency"], d["value_date"].date(), d["type"], d["amount"]) for d in stored
    )

    def locate(days):
        wanted = set(days)
        return {
            (d["venture_id"], d["currency"], d["value_date"].date())
            for d in stored
            if (d["currency"], d["value_date"].date()) in wanted
        }

    all_rates = reports.Rates(
        (doc["currency"], doc["date"].date(), doc["usd_per_unit"])
        for doc in store.db.fx_rates.find()
    )
    return reports.portfolio_summary(rows, all_rates, reporting, group_by, locate)


def recomputed_venture(store: InvestmentStore, venture_id: str, reporting: str):
    rows = exact_day_totals(
        (
            (d["partner"], d["partner_country"]),
            d["currency"],
            d["value_date"].date(),
            d["type"],
            d["amount"],
        )
        for d in store.flows.find({"venture_id": venture_id})
    )
    all_rates = reports.Rates(
        (doc["currency"], doc["date"].date(), doc["usd_per_unit"])
        for doc in store.db.fx_rates.find()
    )
    return reports.venture_summary(venture_id, rows, all_rates, reporting)


def stored_totals(db) -> dict:
    """Every day's count and non-zero sums, per totals document (a venture moved out of
    a group leaves zeros behind where a build from the flows has nothing)."""
    found = {}
    for name in ("venture_totals", "portfolio_totals"):
        for doc in db[name].find():
            days = {}
            for key, text in doc["days"].items():
                entry = decode(text)
                days[key] = (entry.count, {t: v for t, v in entry.sums.items() if v != 0})
            if days:
                found[(name, doc["_id"])] = days
    return found


def assert_reports_equal_recomputation(store: InvestmentStore) -> None:
    for reporting in ("USD", "PKR"):
        for owner in (None, OWNER):
            for group_by in (None, "sector", "province", "partner_country"):
                query = contract.PortfolioQuery(currency=reporting, group_by=group_by)
                served = portfolio_summary(store, query, owner)
                expected = recomputed_portfolio(store, group_by, reporting, owner)
                assert served == expected, (reporting, owner, group_by)
        for venture_id in VENTURES:
            served_venture = venture_summary(store, venture_id, reporting)
            assert served_venture == recomputed_venture(store, venture_id, reporting)


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.one_of(flows, flows, flows, moves), min_size=1, max_size=25), later=rates)
def test_report_totals_equal_the_exact_recomputation_from_the_flows(client, steps, later):
    db = client[f"t_totals_{uuid.uuid4().hex[:10]}"]
    try:
        InvestmentStore.ensure_indexes(db)
        store = InvestmentStore(client, db)
        sequence = dict.fromkeys(VENTURES, 0)
        for n, venture_id in enumerate(VENTURES):
            sequence[venture_id] += 1
            fields = venture(venture_id, SECTORS[n % 2], PROVINCES[n % 2])
            project(store, venture_id, sequence[venture_id], fields)
        set_rate(store, "PKR", 0, "0.0036")
        for n, step in enumerate(steps):
            if step[0] == "move":
                _, venture_id, sector, province = step
                sequence[venture_id] += 1
                project(
                    store, venture_id, sequence[venture_id], venture(venture_id, sector, province)
                )
            else:
                record(store, step, n)
        for currency, day, usd_per_unit in later:
            set_rate(store, currency, day, usd_per_unit)
        assert_reports_equal_recomputation(store)
        # The totals built from the flows (as a start on a database without them does)
        # are those kept flow by flow.
        kept = stored_totals(db)
        store.build_report_totals()
        assert stored_totals(db) == kept
    finally:
        client.drop_database(db.name)
