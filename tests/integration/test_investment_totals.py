"""The report totals kept with each flow, against the exact recomputation from the raw
flows: random flows recorded through the store on a real SecantusDB (reductions, several
currencies and minor units, days on both sides of a year's end), ventures that change
sector or province between them, the portfolio folder folding some of the pending
entries at random steps (before and after a move, or none at all), rates set afterwards
for earlier days, and every report the service answers compared in full with the same
report computed from the flows as stored; and the folder folding each entry once, into
the groups its venture is filed under when it folds it."""

import contextlib
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.investments import contract, domain, reports
from services.investments.service import portfolio_summary, venture_summary
from services.investments.store import PORTFOLIO_PENDING, PORTFOLIO_TOTALS, InvestmentStore
from services.investments.totals import Entry, decode, exact_day_totals, months_of
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
# The folder folding up to that many pending entries (a batch smaller than the backlog).
folds = st.tuples(st.just("fold"), st.integers(1, 8))
moves = st.tuples(
    st.just("move"), st.sampled_from(VENTURES), st.sampled_from(SECTORS), st.sampled_from(PROVINCES)
)
# Rates for any day of the range (before flows of later days: back-dated), some
# currencies left without one so that some flows cannot be converted. A rate set on a
# month's first day (-19, 12) leaves the month one rate; on any other, it splits it.
rates = st.lists(
    st.tuples(
        st.sampled_from(CURRENCIES[1:]),
        st.one_of(st.integers(-5, 30), st.sampled_from([-19, 12])),
        st.sampled_from(RATES),
    ),
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
    """Every day's (and a portfolio group's every month's) count and non-zero sums, per
    totals document (a venture moved out of a group leaves zeros behind where a build
    from the flows has nothing); a portfolio group's months sum its days."""
    found = {}
    for name in ("venture_totals", "portfolio_totals"):
        for doc in db[name].find():
            days = {key: decode(text) for key, text in doc["days"].items()}
            entries = {key: non_zero(entry) for key, entry in days.items()}
            if name == "portfolio_totals":
                months = {key: non_zero(decode(text)) for key, text in doc["months"].items()}
                assert months == {k: non_zero(e) for k, e in months_of(days).items()}
                entries.update(months)
            if entries:
                found[(name, doc["_id"])] = entries
    return found


def non_zero(entry: Entry) -> tuple[int, dict[str, Decimal]]:
    return entry.count, {t: v for t, v in entry.sums.items() if v != 0}


def fold_all(store: InvestmentStore) -> int:
    folded = 0
    for _ in range(100):  # bounded: a folder that never deletes what it folds fails here
        if not (count := store.fold_pending()):
            break
        folded += count
    assert store.db[PORTFOLIO_PENDING].count_documents({}) == 0
    return folded


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
@given(
    steps=st.lists(st.one_of(flows, flows, flows, moves, folds), min_size=1, max_size=25),
    later=rates,
)
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
            elif step[0] == "fold":
                store.fold_pending(limit=step[1])
            else:
                record(store, step, n)
        for currency, day, usd_per_unit in later:
            set_rate(store, currency, day, usd_per_unit)
        # With whatever is still pending (the reads add it), then with all of it folded.
        assert_reports_equal_recomputation(store)
        fold_all(store)
        assert_reports_equal_recomputation(store)
        # The totals built from the flows (as a start on a database without them does)
        # are those kept flow by flow and folded.
        kept = stored_totals(db)
        store.build_report_totals()
        assert stored_totals(db) == kept
    finally:
        client.drop_database(db.name)


@pytest.fixture
def store(client):
    db = client[f"t_fold_{uuid.uuid4().hex[:10]}"]
    InvestmentStore.ensure_indexes(db)
    yield InvestmentStore(client, db)
    client.drop_database(db.name)


def sector_totals(store: InvestmentStore) -> dict[str, tuple[int, Decimal]]:
    """(flows, committed) per sector in the portfolio's stored totals, days summed."""
    found: dict[str, tuple[int, Decimal]] = {}
    for doc in store.db[PORTFOLIO_TOTALS].find({"view": "sector"}):
        count, committed = found.get(doc["group"], (0, Decimal(0)))
        for entry in map(decode, doc["days"].values()):
            count += entry.count
            committed += entry.sums.get("commitment", Decimal(0))
        found[doc["group"]] = (count, committed)
    return found


def commit(store: InvestmentStore, venture_id: str, amount: str, n: int) -> None:
    record_one(store, venture_id, "Pak Partner", "commitment", "USD", Decimal(amount), n, n)


def test_a_pending_entry_is_folded_once_into_the_group_its_venture_has_when_folded(store):
    a, b = SECTORS
    project(store, "jv_prop_a", 1, venture("jv_prop_a", a, "punjab"))
    commit(store, "jv_prop_a", "100.00", 1)
    assert store.fold_pending() == 1
    assert sector_totals(store) == {a: (1, Decimal("100.00"))}
    commit(store, "jv_prop_a", "20.00", 2)  # pending while the venture moves
    project(store, "jv_prop_a", 2, venture("jv_prop_a", b, "punjab"))
    # Only the folded flow moved; the pending one is counted by the reads meanwhile.
    assert sector_totals(store) == {a: (0, Decimal(0)), b: (1, Decimal("100.00"))}
    assert_reports_equal_recomputation(store)
    assert store.fold_pending() == 1
    assert sector_totals(store) == {a: (0, Decimal(0)), b: (2, Decimal("120.00"))}
    assert store.fold_pending() == 0  # nothing folds twice
    assert sector_totals(store) == {a: (0, Decimal(0)), b: (2, Decimal("120.00"))}
    assert_reports_equal_recomputation(store)


def test_folders_racing_fold_every_entry_exactly_once(store):
    """Several folders (other instances) and moves at once: each entry is folded once
    by one of them, the others lose the race on the same documents and fold later."""
    for n, venture_id in enumerate(VENTURES):
        project(store, venture_id, 1, venture(venture_id, SECTORS[n % 2], PROVINCES[n % 2]))
    for n in range(60):
        commit(store, VENTURES[n % 3], f"{n + 1}.00", n)
    folded: list[int] = []
    errors: list[BaseException] = []

    def fold() -> None:
        try:
            for _ in range(40):
                folded.append(InvestmentStore(store.client, store.db).fold_pending(limit=7))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    folders = [threading.Thread(target=fold) for _ in range(3)]
    for thread in folders:
        thread.start()
    for sequence in range(2, 6):  # moves meanwhile: folded parts move, pending ones wait
        project(store, "jv_prop_a", sequence, venture("jv_prop_a", SECTORS[sequence % 2], "sindh"))
    for thread in folders:
        thread.join()
    assert not errors
    folded.append(fold_all(store))
    assert sum(folded) == 60
    assert_reports_equal_recomputation(store)
    assert sum(count for count, _ in sector_totals(store).values()) == 60
