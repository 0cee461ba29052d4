"""Benchmark: the investment reports over 1,000 and 100,000 flows (`make bench`).

Starts its own SecantusDB (as the tests do), loads the investments service's database
with 200 ventures, monthly PKR and CNY rates and random flows spread over six years,
builds the report totals from them (as a start on a database without them does), then
times the reports the service answers: the portfolio summary (`GET
/v1/investments/summary`, every grouping), one investor's portfolio and one venture's
summary, each read from the totals and converted in Python. At the largest size it
then adds flows whose portfolio entries are left pending (as flows recorded faster than
the folder folds them), times the portfolio summary that adds them to the totals, and
times folding them. Then it records flows through the service's store, timing what
keeping the totals costs a write. `run(quick)`
returns the figures as a dict (`--quick`: 1,000 and 10,000 flows), `--json PATH`
writes them. Not a test (pytest does not collect `bench_*.py`).
"""

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from timing import median_ms

from services.investments import contract, domain
from services.investments.service import portfolio_summary, venture_summary
from services.investments.store import PORTFOLIO_PENDING, PORTFOLIO_TOTALS, InvestmentStore

from scratch import scratch_database

SIZES = (1_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
VENTURES = 200
BATCH = 5_000
RUNS = 3
WRITES = 200
# Flows left pending (not yet folded into the portfolio's totals) for the summary timed
# with them.
PENDING = 5_000
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
    return [InvestmentStore.document(flow) for flow in random_flows(rng, projected, count)]


def random_flows(rng: random.Random, projected: list[dict], count: int) -> list[contract.Flow]:
    types, weights = zip(*TYPE_WEIGHTS.items(), strict=True)
    recorded_at = datetime.now(UTC)
    flows: list[contract.Flow] = []
    for _ in range(count):
        venture = rng.choice(projected)
        partner = rng.choice(venture["partners"])
        flow_type = rng.choices(types, weights)[0]
        amount = Decimal(rng.randrange(100_000, 5_000_000_000)).scaleb(-2)
        if flow_type == "commitment" and rng.random() < 0.05:
            amount = -amount  # a reduction
        flow = contract.Flow(
            id=f"inv_bench_{len(flows):07d}_{rng.getrandbits(32):08x}",
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
        flows.append(flow)
    return flows


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


def load(store: InvestmentStore, rng: random.Random, projected: list[dict], count: int) -> None:
    """Add `count` flows, in batches, as stored flows (beside the service)."""
    for start in range(0, count, BATCH):
        store.flows.insert_many(flow_documents(rng, projected, min(BATCH, count - start)))
        print(f"\r  loaded {min(start + BATCH, count):,} of {count:,} flows", end="", flush=True)
    print()


def median_runs(work) -> float:
    return median_ms(work, RUNS, warm=False, digits=1)


def time_reports(store: InvestmentStore, projected: list[dict]) -> dict:
    figures: dict = {"portfolio_summary_ms": {}}
    for group_by in (None, "sector", "province", "partner_country"):
        query = contract.PortfolioQuery(currency="USD", group_by=group_by)
        figures["portfolio_summary_ms"][group_by or "none"] = median_runs(
            lambda query=query: portfolio_summary(store, query, None)
        )
    owner = projected[0]["owner"]
    query = contract.PortfolioQuery(currency="USD", group_by="sector")
    figures["owner_portfolio_ms"] = median_runs(lambda: portfolio_summary(store, query, owner))
    venture_id = projected[0]["_id"]
    figures["venture_summary_ms"] = median_runs(lambda: venture_summary(store, venture_id, "USD"))
    figures["portfolio_rows"] = len(store.portfolio_rows("sector", "USD")[0])
    figures["portfolio_documents"] = store.db[PORTFOLIO_TOTALS].count_documents({})
    summary = portfolio_summary(store, contract.PortfolioQuery(currency="USD"), None)
    figures["total_committed_usd"] = summary.total.committed
    return figures


def time_with_pending(store: InvestmentStore, rng: random.Random, projected: list[dict]) -> dict:
    """The portfolio summary with PENDING flows not yet folded into the portfolio's
    totals (stored with their pending entries, as recorded flows leave them), then how
    long the folder takes to fold them, batch by batch."""
    flows = random_flows(rng, projected, PENDING)
    store.flows.insert_many([InvestmentStore.document(flow) for flow in flows])
    store.db[PORTFOLIO_PENDING].insert_many([InvestmentStore.pending_entry(f) for f in flows])
    figures: dict = {"pending": PENDING, "portfolio_summary_ms": {}}
    for group_by in (None, "sector"):
        query = contract.PortfolioQuery(currency="USD", group_by=group_by)
        figures["portfolio_summary_ms"][group_by or "none"] = median_runs(
            lambda query=query: portfolio_summary(store, query, None)
        )
    summary = portfolio_summary(store, contract.PortfolioQuery(currency="USD"), None)
    started = time.perf_counter()
    while store.fold_pending():
        pass
    elapsed = time.perf_counter() - started
    figures["fold_s"] = round(elapsed, 2)
    figures["folded_per_s"] = round(PENDING / elapsed)
    after = portfolio_summary(store, contract.PortfolioQuery(currency="USD"), None)
    figures["same_summary_after_folding"] = after == summary
    return figures


def time_record_flow(store: InvestmentStore, projected: list[dict], count: int) -> float:
    """Median ms of recording a commitment through the store: its transaction checks the
    balance and adds it to the flows, the outbox and the report totals."""
    timings = []
    rng = random.Random(5)
    for n in range(count):
        venture = rng.choice(projected)
        command = contract.RecordFlow(
            type="commitment",
            partner=venture["partners"][0]["name"],
            currency=rng.choice(CURRENCIES),
            amount=str(Decimal(rng.randrange(100, 100_000)).scaleb(-2)),
            value_date=FIRST_DAY + timedelta(days=rng.randrange(DAYS)),
        )

        def decide(view, command=command, n=n, venture_id=venture["_id"]):
            return domain.record(
                view, venture_id, command, f"inv_bench_write_{n:05d}", ACTOR, datetime.now(UTC)
            )

        started = time.perf_counter()
        store.record_flow(venture["_id"], decide)
        timings.append(time.perf_counter() - started)
    return round(statistics.median(timings) * 1000, 1)


def run(quick: bool = False) -> dict:
    sizes = QUICK_SIZES if quick else SIZES
    figures: dict = {"runs": RUNS, "ventures": VENTURES, "sizes": {}}
    with scratch_database() as client:
        store = InvestmentStore(client, client["jvreg_bench_investments"])
        InvestmentStore.ensure_indexes(store.db)
        rng = random.Random(4)  # the same data on every run
        projected = ventures(rng)
        store.db.ventures.insert_many(projected)
        set_monthly_rates(store, rng)
        loaded = 0
        for size in sizes:
            print(f"loading {size - loaded:,} more flows into SecantusDB ...")
            started = time.perf_counter()
            load(store, rng, projected, size - loaded)
            loaded = size
            print(f"  took {time.perf_counter() - started:.1f} s; building the report totals")
            started = time.perf_counter()
            store.build_report_totals()
            at_size = {"build_totals_s": round(time.perf_counter() - started, 1)}
            at_size.update(time_reports(store, projected))
            figures["sizes"][str(size)] = at_size
            print(f"  {size:,} flows: {json.dumps(at_size)}", flush=True)
        figures["with_pending"] = time_with_pending(store, rng, projected)
        print(f"  with pending entries: {json.dumps(figures['with_pending'])}", flush=True)
        figures["record_flow_ms"] = time_record_flow(store, projected, WRITES)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 flows")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    figures = run(args.quick)
    for size, at_size in figures["sizes"].items():
        by_group = ", ".join(f"{g} {ms:.0f}" for g, ms in at_size["portfolio_summary_ms"].items())
        print(
            f"{int(size):,} flows: portfolio summary ms ({by_group}) (goal < 500 at 100,000); "
            f"an investor's {at_size['owner_portfolio_ms']:.0f} ms, a venture's "
            f"{at_size['venture_summary_ms']:.0f} ms; totals built in "
            f"{at_size['build_totals_s']:.1f} s"
        )
    pending = figures["with_pending"]
    by_group = ", ".join(f"{g} {ms:.0f}" for g, ms in pending["portfolio_summary_ms"].items())
    print(
        f"with {pending['pending']:,} flows pending: portfolio summary ms ({by_group}); "
        f"folded in {pending['fold_s']:.1f} s ({pending['folded_per_s']:,} entries/s)"
    )
    print(f"recording a flow: {figures['record_flow_ms']:.0f} ms (median)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
