"""Benchmark: the portfolio investment report over 100,000 flows (`make bench`).

Starts its own SecantusDB (as the tests do), loads the investments service's database
with 200 ventures, monthly PKR and CNY rates and 100,000 flows spread over six years,
then times the report the service answers `GET /v1/investments/summary` with: MongoDB
sums the flows per (group, currency, value date), Python converts those sums. Not a
test (pytest does not collect `bench_*.py`); it prints its figures.
"""

import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from services.investments import contract, domain
from services.investments.service import portfolio_summary
from services.investments.store import InvestmentStore

from scratch import scratch_database

FLOWS = 100_000
VENTURES = 200
BATCH = 5_000
RUNS = 3
FIRST_DAY, DAYS = date(2020, 1, 1), 6 * 365
SECTORS = ("api_manufacturing", "finished_formulations", "medical_devices", "biologics_vaccines")
PROVINCES = ("punjab", "sindh", "khyber_pakhtunkhwa", "balochistan")
CURRENCIES = ("PKR", "CNY", "USD")
# Mostly commitments and disbursements, as in development-finance datasets.
TYPE_WEIGHTS = {
    "commitment": 30,
    "disbursement": 45,
    "equity_purchase": 8,
    "equity_sale": 2,
    "loan": 10,
    "loan_repayment": 5,
}
ACTOR = {"key_id": "key_bench", "role": "ops", "owner": "platform-ops"}


def ventures(rng: random.Random) -> list[dict]:
    return [
        {
            "_id": f"jv_bench_{n:04d}",
            "owner": f"Investor {n % 20}",
            "name": f"Bench Venture {n}",
            "sector": rng.choice(SECTORS),
            "province": rng.choice(PROVINCES),
            "status": "active",
            "partners": [
                {"name": f"Pak Partner {n}", "country": "PK"},
                {"name": f"China Partner {n}", "country": "CN"},
            ],
            "sequence": 1,
        }
        for n in range(VENTURES)
    ]


def flow_documents(rng: random.Random, projected: list[dict], count: int) -> list[dict]:
    """Random flows stored as the service stores them. They bypass the disbursement rule
    (checked per write, not part of what is timed here)."""
    types, weights = zip(*TYPE_WEIGHTS.items(), strict=True)
    recorded_at = datetime.now(UTC)
    documents = []
    for _ in range(count):
        venture = rng.choice(projected)
        partner = rng.choice(venture["partners"])
        flow_type = rng.choices(types, weights)[0]
        amount = Decimal(rng.randrange(100_000, 5_000_000_000)).scaleb(-2)
        if flow_type == "commitment" and rng.random() < 0.05:
            amount = -amount  # a reduction
        flow = contract.Flow(
            id=f"inv_bench_{len(documents):07d}_{rng.getrandbits(32):08x}",
            venture_id=venture["_id"],
            type=flow_type,
            partner=partner["name"],
            partner_country=partner["country"],
            currency=rng.choice(CURRENCIES),
            amount=amount,
            value_date=FIRST_DAY + timedelta(days=rng.randrange(DAYS)),
            recorded_at=recorded_at,
            recorded_by=ACTOR,
        )
        documents.append(InvestmentStore.document(flow))
    return documents


def set_monthly_rates(store: InvestmentStore, rng: random.Random) -> None:
    base = {"PKR": Decimal("0.0036"), "CNY": Decimal("0.139")}
    for month in range(DAYS // 30 + 1):
        day = date(FIRST_DAY.year + month // 12, month % 12 + 1, 1)
        for currency, rate in base.items():
            drift = Decimal(rng.randrange(-500, 500)).scaleb(-4)  # +-5 %
            key = contract.FxRateKey(currency=currency, date=day)
            usd_per_unit = (rate * (1 + drift)).quantize(Decimal("1E-7"))
            command = contract.SetFxRate(usd_per_unit=str(usd_per_unit))
            store.set_fx_rate(
                key,
                lambda current, key=key, command=command: domain.set_rate(
                    key, command, current, ACTOR, datetime.now(UTC)
                ),
            )


def load(store: InvestmentStore) -> None:
    rng = random.Random(4)  # the same data on every run
    projected = ventures(rng)
    store.db.ventures.insert_many(projected)
    set_monthly_rates(store, rng)
    for start in range(0, FLOWS, BATCH):
        store.flows.insert_many(flow_documents(rng, projected, min(BATCH, FLOWS - start)))
        print(f"\r  loaded {start + BATCH:,} flows", end="", flush=True)
    print()


def time_report(store: InvestmentStore, group_by: str | None) -> tuple[float, int, int, dict]:
    query = contract.PortfolioQuery(currency="USD", group_by=group_by)
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        summary = portfolio_summary(store, query, None)
        timings.append(time.perf_counter() - started)
    rows = store.portfolio_day_totals(group_by)
    documents = sum(len(row.sums) for row in rows)  # one per flow type present
    return statistics.median(timings), len(rows), documents, summary.total.model_dump()


def main() -> int:
    with scratch_database() as client:
        store = InvestmentStore(client, client["jvreg_bench_investments"])
        InvestmentStore.ensure_indexes(store.db)
        print(f"loading {FLOWS:,} flows of {VENTURES} ventures into SecantusDB ...")
        started = time.perf_counter()
        load(store)
        print(f"  took {time.perf_counter() - started:.1f} s")
        print(f"portfolio report in USD over {store.flows.count_documents({}):,} flows")
        print(
            f"(median of {RUNS} runs; documents = what the aggregation hands to Python, "
            "one per group, currency, value date and flow type)"
        )
        for group_by in (None, "sector", "province", "partner_country"):
            seconds, rows, documents, total = time_report(store, group_by)
            print(
                f"  group_by={group_by or '-':16} {seconds:6.2f} s  {documents:7,} documents"
                f"  {rows:7,} (group, currency, day) rows"
            )
        print(f"  total committed {total['committed']} USD, disbursed {total['disbursed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
