"""Report arithmetic against hand-computed figures: conversion with the rate in force on
each value date, exact sums, one rounding at the end (half to even)."""

from datetime import date
from decimal import Decimal

import pytest

from services.investments.reports import (
    DayTotals,
    Rates,
    money,
    portfolio_summary,
    venture_summary,
)

from investment_scenario import (
    COUNTRY,
    FLOWS_A,
    FLOWS_B,
    MONTHLY_DISBURSEMENTS_USD,
    PORTFOLIO_GROUPS,
    PORTFOLIO_TOTAL_USD,
    RATES,
    VENTURE_A_USD,
    VENTURE_B_TOTAL_USD,
    day_totals,
)


def NOWHERE(days):  # noqa: N802 - a constant of a test: every flow converts
    raise AssertionError(f"no flow should need locating, asked for {days}")


SCENARIO_RATES = Rates((code, date.fromisoformat(day), Decimal(v)) for code, day, v in RATES)
# Where each scenario venture sits, as the ventures projection says.
VENTURE_OF = {
    "sector": ("api_manufacturing", "finished_formulations"),
    "province": ("khyber_pakhtunkhwa", "punjab"),
}


def rows(flows, group_of) -> list[DayTotals]:
    return [
        DayTotals(group, currency, day, sums)
        for group, currency, day, sums in day_totals(flows, group_of)
    ]


def partner_rows(flows) -> list[DayTotals]:
    return rows(flows, lambda body: (body["partner"], COUNTRY[body["partner"]]))


def portfolio_rows(group_by: str | None) -> list[DayTotals]:
    if group_by in VENTURE_OF:
        group_a, group_b = VENTURE_OF[group_by]
        return rows(FLOWS_A, lambda body: group_a) + rows(FLOWS_B, lambda body: group_b)
    if group_by == "partner_country":
        return rows(FLOWS_A + FLOWS_B, lambda body: COUNTRY[body["partner"]])
    return rows(FLOWS_A + FLOWS_B, lambda body: None)


def test_a_venture_in_usd_by_partner_and_original_currency():
    summary = venture_summary("jv_a", partner_rows(FLOWS_A), SCENARIO_RATES, "USD")
    assert summary.model_dump(mode="json") == {
        "venture_id": "jv_a",
        "rounding": "half to even (banker's rounding) to 2 decimal place(s), the ISO 4217 "
        "minor unit of USD, applied once to each exact figure",
        **VENTURE_A_USD,
        "problems": [],
    }


def test_half_a_cent_rounds_to_even():
    summary = venture_summary("jv_b", partner_rows(FLOWS_B), SCENARIO_RATES, "USD")
    # 44444.385 + 120000 = 164444.385: half-up would say 164444.39.
    assert summary.total.model_dump() == VENTURE_B_TOTAL_USD


@pytest.mark.parametrize("group_by", ["sector", "province", "partner_country"])
def test_the_portfolio_per_group_with_a_monthly_series(group_by):
    summary = portfolio_summary(portfolio_rows(group_by), SCENARIO_RATES, "USD", group_by, NOWHERE)
    assert summary.model_dump(mode="json")["groups"] == PORTFOLIO_GROUPS[group_by]
    assert summary.total.model_dump() == PORTFOLIO_TOTAL_USD
    assert [m.model_dump() for m in summary.monthly_disbursements] == MONTHLY_DISBURSEMENTS_USD


def test_the_portfolio_without_groups():
    summary = portfolio_summary(portfolio_rows(None), SCENARIO_RATES, "USD", None, NOWHERE)
    assert (summary.group_by, summary.groups) == (None, [])
    assert summary.total.model_dump() == PORTFOLIO_TOTAL_USD


def test_a_report_in_another_currency_crosses_through_usd_on_each_value_date():
    flows = [
        DayTotals(None, "USD", date(2025, 2, 1), {"commitment": Decimal("1000000.00")}),
        DayTotals(None, "CNY", date(2025, 1, 20), {"commitment": Decimal("20000000.00")}),
        DayTotals(None, "PKR", date(2025, 3, 20), {"disbursement": Decimal("12.50")}),
    ]
    summary = portfolio_summary(flows, SCENARIO_RATES, "PKR", None, NOWHERE)
    # 1000000 / 0.0036 = 277777777.777...; 20000000 x 0.1390 / 0.0036 = 772222222.222...;
    # together 1049999999.999... -> 1050000000.00; PKR flows are not converted at all.
    assert summary.total.committed == "1050000000.00"
    assert summary.total.disbursed == "12.50"
    # 12.50 / 1049999999.999... = 0.0000000119...
    assert summary.total.disbursement_ratio == "0.0000"


def test_flows_in_the_reporting_currency_need_no_rate():
    flows = [DayTotals(None, "JPY", date(2025, 1, 2), {"commitment": Decimal("150000000")})]
    summary = portfolio_summary(flows, Rates([]), "JPY", None, NOWHERE)
    assert summary.total.committed == "150000000"  # JPY has no minor unit


def test_flows_without_a_rate_are_left_out_and_reported_per_venture():
    """One venture's flow that cannot be converted does not fail the report: every other
    figure is answered, and the problem names that venture, currency and date."""
    flows = [
        DayTotals(None, "USD", date(2025, 3, 1), {"commitment": Decimal("1000.00")}),
        DayTotals(None, "JPY", date(2025, 3, 1), {"commitment": Decimal("5000")}),
        DayTotals(None, "JPY", date(2025, 2, 1), {"disbursement": Decimal("5000")}),
        DayTotals(None, "PKR", date(2024, 12, 31), {"commitment": Decimal("100.00")}),
        DayTotals(None, "PKR", date(2025, 1, 1), {"commitment": Decimal("100.00")}),
    ]
    asked = []

    def locate(days):
        asked.append(sorted(days))
        return [
            ("jv_b", "JPY", date(2025, 3, 1)),
            ("jv_b", "JPY", date(2025, 2, 1)),
            ("jv_c", "PKR", date(2024, 12, 31)),
        ]

    summary = portfolio_summary(flows, SCENARIO_RATES, "USD", None, locate)
    assert asked == [
        [("JPY", date(2025, 2, 1)), ("JPY", date(2025, 3, 1)), ("PKR", date(2024, 12, 31))]
    ]
    # 1000 USD + 100 PKR at 0.0036 (2025-01-01); the yen and the 2024 rupees are left out.
    assert summary.total.committed == "1000.36"
    assert summary.total.disbursed == "0.00"
    assert summary.monthly_disbursements == []
    problems = [problem.model_dump() for problem in summary.problems]
    assert [(p["venture_id"], p["currency"], p["date"]) for p in problems] == [
        ("jv_b", "JPY", "2025-02-01"),
        ("jv_c", "PKR", "2024-12-31"),
    ]
    assert problems[0]["type"] == "missing_fx_rate"
    assert problems[0]["missing_rates"] == [{"currency": "JPY", "date": "2025-02-01"}]
    assert "JPY on or before 2025-02-01" in problems[0]["detail"]
    assert "jv_b" in problems[0]["detail"]


def test_a_venture_summary_reports_what_it_could_not_convert():
    flows = [
        DayTotals(("Indus", "PK"), "PKR", date(2025, 1, 15), {"commitment": Decimal("1000.00")}),
        DayTotals(("Indus", "PK"), "PKR", date(1999, 1, 1), {"commitment": Decimal("50.00")}),
        DayTotals(("Yangtze", "CN"), "JPY", date(2025, 2, 1), {"commitment": Decimal("700")}),
    ]
    summary = venture_summary("jv_a", flows, SCENARIO_RATES, "USD")
    assert summary.total.committed == "3.60"  # 1000 PKR at 0.0036; the rest has no rate
    by_currency = {item.currency: item for item in summary.by_currency}
    assert by_currency["PKR"].original.committed == "1050.00"  # as recorded: needs no rate
    assert by_currency["PKR"].converted.committed == "3.60"
    assert by_currency["JPY"].converted is None
    assert [(p.venture_id, p.currency, p.date) for p in summary.problems] == [
        ("jv_a", "JPY", "2025-02-01"),
        ("jv_a", "PKR", "1999-01-01"),
    ]


def test_the_reporting_currency_needs_its_own_rate_too():
    flows = [DayTotals(None, "USD", date(2024, 6, 1), {"commitment": Decimal("1.00")})]
    summary = portfolio_summary(
        flows, SCENARIO_RATES, "CNY", None, lambda days: [("jv_a", "USD", date(2024, 6, 1))]
    )
    assert summary.total.committed == "0.00"
    (problem,) = summary.problems
    assert (problem.venture_id, problem.currency, problem.date) == ("jv_a", "USD", "2024-06-01")
    assert [rate.model_dump() for rate in problem.missing_rates] == [
        {"currency": "CNY", "date": "2024-06-01"}
    ]


def test_a_rate_applies_from_its_day_until_the_next():
    assert SCENARIO_RATES.usd_per_unit("PKR", date(2024, 12, 31)) is None
    assert SCENARIO_RATES.usd_per_unit("PKR", date(2025, 1, 1)) == Decimal("0.0036")
    assert SCENARIO_RATES.usd_per_unit("PKR", date(2025, 2, 28)) == Decimal("0.0036")
    assert SCENARIO_RATES.usd_per_unit("PKR", date(2025, 3, 1)) == Decimal("0.00357")
    assert SCENARIO_RATES.usd_per_unit("USD", date(1990, 1, 1)) == 1


@pytest.mark.parametrize(
    ("exact", "places", "rounded"),
    [
        ("0.045", 2, "0.04"),  # half to even: down to 4 (half-up: 0.05)
        ("0.035", 2, "0.04"),  # half to even: up to 4
        ("0.0451", 2, "0.05"),  # more than half
        ("-0.045", 2, "-0.04"),
        ("-0.004", 2, "0.00"),  # never "-0.00"
        ("2.5", 0, "2"),  # JPY
        ("1.0005", 3, "1.000"),  # KWD
        ("0.12345", 4, "0.1234"),  # a ratio
    ],
)
def test_rounding_is_half_to_even_to_the_minor_unit(exact, places, rounded):
    assert money(Decimal(exact), places) == rounded


def test_nothing_committed_has_no_ratio():
    summary = portfolio_summary([], Rates([]), "USD", "sector", NOWHERE)
    assert summary.total.committed == "0.00"
    assert summary.total.disbursement_ratio is None
    assert summary.monthly_disbursements == []
