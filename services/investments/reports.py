"""Investment reports. The read model sums the flows per (group, currency, value date); here
those sums are converted into the reporting currency with the rate in force on each value
date, added up exactly, and rounded once, at the end. Pure functions; no I/O.

What counts as what (IATI transaction types):
- committed = commitments, reductions and cancellations (negative commitments) included;
- disbursed = disbursements; outstanding = committed - disbursed;
  disbursement_ratio = disbursed / committed;
- equity purchases and sales, loans and loan repayments are money of another kind (an
  asset bought or sold, a debt and its service): each is its own figure and none of
  them counts as committed or disbursed.
"""

from bisect import bisect_right
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import TypeVar, cast

from services.investments.contract import (
    COMMITMENT,
    DISBURSEMENT,
    FLOW_TYPES,
    USD,
    ConversionProblem,
    CurrencyFigures,
    Figures,
    GroupFigures,
    MissingRate,
    MonthlyDisbursement,
    PartnerFigures,
    PortfolioSummary,
    VentureSummary,
)
from services.investments.currencies import decimals_of

ROUNDING = ROUND_HALF_EVEN
RATIO_PLACES = 4
# Sums and products of the amounts and rates the registry accepts have far fewer digits
# than this, so they are exact; a division (a cross rate into a currency other than USD,
# the ratio) is carried to this many digits before the final rounding.
PRECISION = 100
ZERO = Decimal(0)
K = TypeVar("K", bound=Hashable)

FIGURE_OF_TYPE = {
    "commitment": "committed",
    "disbursement": "disbursed",
    "equity_purchase": "equity_purchases",
    "equity_sale": "equity_sales",
    "loan": "loans",
    "loan_repayment": "loan_repayments",
}


@dataclass(frozen=True)
class DayTotals:
    """One row of the aggregation: the sums, by flow type, of one group's flows in one
    currency with one value date."""

    group: Hashable
    currency: str
    value_date: date
    sums: Mapping[str, Decimal]


class Rates:
    """usd_per_unit per currency and day; a conversion takes the most recent rate on or
    before the value date. USD's rate is 1 by definition."""

    def __init__(self, rates: Iterable[tuple[str, date, Decimal]]):
        self._days: dict[str, list[date]] = {}
        self._values: dict[str, list[Decimal]] = {}
        for currency, day, usd_per_unit in sorted(rates):
            self._days.setdefault(currency, []).append(day)
            self._values.setdefault(currency, []).append(usd_per_unit)

    def usd_per_unit(self, currency: str, on: date) -> Decimal | None:
        if currency == USD:
            return Decimal(1)
        index = bisect_right(self._days.get(currency, []), on) - 1
        return self._values[currency][index] if index >= 0 else None

    def one_rate(self, reporting: str, currency: str, first: date, last: date) -> bool:
        """Whether every day from `first` to `last` converts `currency` into `reporting`
        at one rate: no conversion needed, or each of the two currencies has a rate in
        force on `first` and none set for a later day up to `last`."""
        if currency == reporting:
            return True
        return all(self._one_rate(code, first, last) for code in (currency, reporting))

    def _one_rate(self, currency: str, first: date, last: date) -> bool:
        if currency == USD:
            return True
        days = self._days.get(currency, [])
        in_force = bisect_right(days, first) - 1
        return in_force >= 0 and bisect_right(days, last) - 1 == in_force


@dataclass(frozen=True)
class Conversion:
    """Units of the reporting currency per unit of each (currency, value date) that can
    be converted, and, for each that cannot, the currencies without a rate on or before
    that day (the flows' own, the reporting currency's, or both)."""

    factors: Mapping[tuple[str, date], Decimal]
    missing: Mapping[tuple[str, date], tuple[str, ...]]


def conversion(rows: Iterable[DayTotals], rates: Rates, reporting: str) -> Conversion:
    """How to convert each (currency, value date) of `rows` into `reporting`, through
    USD; never guesses a rate that does not exist."""
    factors: dict[tuple[str, date], Decimal] = {}
    missing: dict[tuple[str, date], tuple[str, ...]] = {}
    for row in rows:
        key = (row.currency, row.value_date)
        if key in factors or key in missing:
            continue
        if row.currency == reporting:
            factors[key] = Decimal(1)
            continue
        source = rates.usd_per_unit(row.currency, row.value_date)
        target = rates.usd_per_unit(reporting, row.value_date)
        if source is not None and target is not None:
            factors[key] = source / target
        else:
            missing[key] = tuple(
                code for code, rate in ((row.currency, source), (reporting, target)) if not rate
            )
    return Conversion(factors, missing)


def conversion_problems(
    located: Iterable[tuple[str, str, date]],
    missing: Mapping[tuple[str, date], tuple[str, ...]],
    reporting: str,
) -> list[ConversionProblem]:
    """One problem per venture and currency, from the (venture id, currency, value
    date) of each flow that could not be converted: a rate on or before the earliest
    such day covers the later ones too."""
    needed: dict[tuple[str, str], dict[str, date]] = {}
    for venture_id, currency, day in located:
        rates = needed.setdefault((venture_id, currency), {})
        for code in missing[(currency, day)]:
            rates[code] = min(rates.get(code, day), day)
    problems = []
    for (venture_id, currency), rates in sorted(needed.items()):
        first = min(rates.values()).isoformat()
        named = " and ".join(f"{code} on or before {day}" for code, day in sorted(rates.items()))
        problems.append(
            ConversionProblem(
                venture_id=venture_id,
                currency=currency,
                date=first,
                missing_rates=[
                    MissingRate(currency=code, date=day.isoformat())
                    for code, day in sorted(rates.items())
                ],
                detail=f"the {currency} flows of venture {venture_id} that no rate covers "
                f"(the first dated {first}) are left out of the figures in {reporting}: no "
                f"usd_per_unit rate for {named}; ops sets one with "
                "PUT /v1/fx-rates/{currency}/{date}",
            )
        )
    return problems


class Totals:
    """Exact sums by flow type, in one currency."""

    def __init__(self):
        self.sums = dict.fromkeys(FLOW_TYPES, ZERO)

    def add(self, sums: Mapping[str, Decimal], factor: Decimal) -> None:
        for flow_type, amount in sums.items():
            self.sums[flow_type] += amount * factor


def accumulate(
    rows: Iterable[DayTotals],
    key: Callable[[DayTotals], K],
    factors: Mapping[tuple[str, date], Decimal] | None = None,
) -> dict[K, Totals]:
    """Totals per `key(row)`, converted by `factors` (in the original currency without);
    a row that `factors` cannot convert is left out (and reported as a problem)."""
    totals: dict[K, Totals] = {}
    for row in rows:
        factor: Decimal | None = Decimal(1)
        if factors is not None:
            factor = factors.get((row.currency, row.value_date))
        if factor is None:
            continue
        group = key(row)
        if (found := totals.get(group)) is None:  # not setdefault: one Totals per key
            found = totals[group] = Totals()
        found.add(row.sums, factor)
    return totals


def money(value: Decimal, places: int) -> str:
    """`value` to `places` decimals, half to even; never "-0.00"."""
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUNDING)
    return str(abs(rounded) if rounded == 0 else rounded)


def figures(totals: Totals | None, places: int) -> Figures:
    """The figures of `totals`, each rounded once to `places` decimals."""
    sums = totals.sums if totals else dict.fromkeys(FLOW_TYPES, ZERO)
    committed, disbursed = sums[COMMITMENT], sums[DISBURSEMENT]
    ratio = None
    if committed > 0:
        ratio = money(disbursed / committed, RATIO_PLACES)
    return Figures.model_validate(
        {
            **{FIGURE_OF_TYPE[flow_type]: money(sums[flow_type], places) for flow_type in sums},
            "outstanding": money(committed - disbursed, places),
            "disbursement_ratio": ratio,
        }
    )


def rounding_rule(currency: str) -> str:
    return (
        f"half to even (banker's rounding) to {decimals_of(currency)} decimal place(s), "
        f"the ISO 4217 minor unit of {currency}, applied once to each exact figure"
    )


def venture_summary(
    venture_id: str, rows: list[DayTotals], rates: Rates, reporting: str
) -> VentureSummary:
    """`rows` are grouped by (partner, partner's country)."""
    with localcontext(Context(prec=PRECISION)):
        convert = conversion(rows, rates, reporting)
        factors = convert.factors
        places = decimals_of(reporting)
        total = accumulate(rows, lambda row: None, factors).get(None)
        # The venture's rows are grouped by (partner, partner's country).
        by_partner = accumulate(rows, lambda row: cast(tuple[str, str], row.group), factors)
        converted = accumulate(rows, lambda row: row.currency, factors)
        original = accumulate(rows, lambda row: row.currency)
        return VentureSummary(
            venture_id=venture_id,
            currency=reporting,
            rounding=rounding_rule(reporting),
            total=figures(total, places),
            by_partner=[
                PartnerFigures(
                    partner=partner, country=country, **figures(totals, places).model_dump()
                )
                for (partner, country), totals in sorted(by_partner.items())
            ],
            by_currency=[
                CurrencyFigures(
                    currency=currency,
                    original=figures(totals, decimals_of(currency)),
                    converted=figures(converted[currency], places)
                    if currency in converted
                    else None,
                )
                for currency, totals in sorted(original.items())
            ],
            problems=conversion_problems(
                ((venture_id, currency, day) for currency, day in convert.missing),
                convert.missing,
                reporting,
            ),
        )


def months_between(first: date, last: date) -> list[date]:
    months, month = [], first.replace(day=1)
    while month <= last:
        months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


def monthly_disbursements(
    rows: list[DayTotals], factors: Mapping[tuple[str, date], Decimal], places: int
) -> list[MonthlyDisbursement]:
    by_month: dict[date, Decimal] = {}
    for row in rows:
        if disbursed := row.sums.get(DISBURSEMENT):
            month = row.value_date.replace(day=1)
            factor = factors.get((row.currency, row.value_date))
            if factor is not None:
                by_month[month] = by_month.get(month, ZERO) + disbursed * factor
    if not by_month:
        return []
    return [
        MonthlyDisbursement(
            month=month.strftime("%Y-%m"), disbursed=money(by_month.get(month, ZERO), places)
        )
        for month in months_between(min(by_month), max(by_month))
    ]


# Given the (currency, value date) pairs that cannot be converted, the (venture id,
# currency, value date) of every flow recorded at one of them.
Locate = Callable[[Collection[tuple[str, date]]], Iterable[tuple[str, str, date]]]


def portfolio_summary(
    rows: list[DayTotals], rates: Rates, reporting: str, group_by: str | None, locate: Locate
) -> PortfolioSummary:
    """`rows` are grouped by the `group_by` value (None when not grouped). Flows that
    cannot be converted are left out of the figures and reported, by venture (found
    with `locate`), in `problems`: one venture's flow never fails everyone's report."""
    with localcontext(Context(prec=PRECISION)):
        convert = conversion(rows, rates, reporting)
        factors = convert.factors
        places = decimals_of(reporting)
        groups = accumulate(rows, lambda row: row.group, factors) if group_by else {}
        return PortfolioSummary(
            currency=reporting,
            group_by=group_by,
            rounding=rounding_rule(reporting),
            total=figures(accumulate(rows, lambda row: None, factors).get(None), places),
            groups=[
                GroupFigures(group=str(group), **figures(totals, places).model_dump())
                for group, totals in sorted(groups.items(), key=lambda item: str(item[0]))
            ],
            monthly_disbursements=monthly_disbursements(rows, factors, places),
            problems=conversion_problems(
                locate(list(convert.missing)) if convert.missing else [],
                convert.missing,
                reporting,
            ),
        )
