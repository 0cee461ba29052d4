"""The report totals' entries: exact decimal strings that add, take away and vanish when
they sum no flow any more."""

from datetime import date
from decimal import Decimal
from functools import partial

import pytest

from services.investments.reports import Rates
from services.investments.totals import (
    Entry,
    FlowFacts,
    add_flow,
    combined,
    day_key,
    day_of,
    decode,
    encode,
    fold_buckets,
    pending_rows,
    portfolio_bucket,
    rows_of,
)


def test_an_entry_is_a_count_and_exact_sums_per_type():
    entry = Entry(2, {"commitment": Decimal("1250000.005"), "loan": Decimal("-0.10")})
    assert encode(entry) == "2,1250000.005,,,,-0.10,"
    assert decode(encode(entry)) == entry


def test_adding_and_taking_away_is_exact_and_drops_an_empty_day():
    one = Entry.of_flow("commitment", Decimal("0.1"))
    text = combined(None, one, 1)
    text = combined(text, Entry.of_flow("commitment", Decimal("0.2")), 1)
    assert decode(text) == Entry(2, {"commitment": Decimal("0.3")})
    assert decode(combined(text, one, -1)) == Entry(1, {"commitment": Decimal("0.2")})
    assert (
        combined(combined(text, one, -1), Entry.of_flow("commitment", Decimal("0.2")), -1) is None
    )


def test_taking_away_what_is_not_there_is_refused():
    with pytest.raises(ValueError, match="-1 flows"):
        combined(None, Entry.of_flow("loan", Decimal("5")), -1)


def test_days_are_keyed_within_their_year():
    assert day_key(date(2024, 2, 29)) == "02-29"
    assert day_of(2024, "02-29") == date(2024, 2, 29)
    assert day_of(1, "01-01") == date(1, 1, 1)


def test_a_flow_is_added_to_its_partner_and_to_each_portfolio_view():
    ventures, portfolio = {}, {}
    flow = FlowFacts(
        "jv_1", "Indus", "PK", "PKR", date(2025, 1, 15), "disbursement", Decimal("5.25")
    )
    add_flow(ventures, portfolio, flow, {"sector": "biologics_vaccines", "province": "sindh"})
    add_flow(ventures, portfolio, flow, None)  # a venture the projection does not know
    [(fields, days)] = ventures.values()
    assert fields["partner"] == "Indus" and days == {
        "01-15": Entry(2, {"disbursement": Decimal("10.50")})
    }
    views = {
        fields["view"]: (fields["group"], days["01-15"].count)
        for fields, days in portfolio.values()
    }
    assert views == {
        "partner_country": ("PK", 2),
        "sector": ("biologics_vaccines", 1),
        "province": ("sindh", 1),
    }
    [row] = rows_of({"year": 2025, "currency": "PKR", "days": {"01-15": "2,,10.50,,,,"}}, "PK")
    assert (row.group, row.value_date, row.sums) == (
        "PK",
        date(2025, 1, 15),
        {"disbursement": Decimal("10.50")},
    )


def pending(flow_id: str, venture_id: str, amount: str, day: str = "01-15") -> dict:
    entry = encode(Entry.of_flow("commitment", Decimal(amount)))
    return {
        "_id": flow_id,
        "venture_id": venture_id,
        "country": "PK",
        "currency": "USD",
        "year": 2025,
        "day": day,
        "entry": entry,
    }


FILED = {"jv_a": {"sector": "biologics_vaccines", "province": "sindh"}}


def test_a_fold_adds_each_entry_to_the_groups_its_venture_is_filed_under_now():
    entries = [pending("f1", "jv_a", "1.5"), pending("f2", "jv_a", "2"), pending("f3", "jv_x", "4")]
    buckets = fold_buckets(entries, FILED)
    days = {doc_id: {k: encode(e) for k, e in d.items()} for doc_id, (_, d) in buckets.items()}
    assert days == {
        portfolio_bucket("partner_country", "PK", "USD", 2025)[0]: {"01-15": "3,7.5,,,,,"},
        portfolio_bucket("sector", "biologics_vaccines", "USD", 2025)[0]: {"01-15": "2,3.5,,,,,"},
        portfolio_bucket("province", "sindh", "USD", 2025)[0]: {"01-15": "2,3.5,,,,,"},
    }  # jv_x is filed nowhere: by partner country only, as a flow of it would be


def test_pending_entries_are_report_rows_under_their_groups_now():
    entries = [
        pending("f1", "jv_a", "1.5"),
        pending("f2", "jv_a", "2"),
        pending("f3", "jv_a", "4", "01-16"),
        pending("f4", "jv_x", "8"),
    ]
    by_sector = pending_rows(entries, FILED, "sector", grouped=True)
    assert sorted((r.group, r.value_date, r.sums["commitment"]) for r in by_sector) == [
        ("biologics_vaccines", date(2025, 1, 15), Decimal("3.5")),
        ("biologics_vaccines", date(2025, 1, 16), Decimal("4")),
    ]
    ungrouped = pending_rows(entries, {}, "partner_country", grouped=False)
    assert sorted((r.group, r.value_date, r.sums["commitment"]) for r in ungrouped) == [
        (None, date(2025, 1, 15), Decimal("11.5")),
        (None, date(2025, 1, 16), Decimal("4")),
    ]


def test_a_month_one_rate_converts_is_read_whole_and_a_month_a_rate_splits_by_its_days():
    doc = {
        "year": 2025,
        "currency": "PKR",
        "days": {"01-03": "1,1.00,,,,,", "01-20": "1,2.00,,,,,", "02-05": "1,4.00,,,,,"},
        "months": {"01": "2,3.00,,,,,", "02": "1,4.00,,,,,"},
    }
    # PKR has a rate from 1 January and another set for 10 February: January converts at
    # one rate, February at two.
    rates = Rates(
        [
            ("PKR", date(2025, 1, 1), Decimal("0.0036")),
            ("PKR", date(2025, 2, 10), Decimal("0.0035")),
        ]
    )
    rows = rows_of(doc, "PK", partial(rates.one_rate, "USD"))
    assert sorted((row.value_date, row.sums["commitment"]) for row in rows) == [
        (date(2025, 1, 1), Decimal("3.00")),
        (date(2025, 2, 5), Decimal("4.00")),
    ]
    # Without one_rate (a venture's totals), every day is a row.
    assert len(rows_of(doc, "PK")) == 3


@pytest.mark.parametrize(
    ("rates", "currency", "reporting", "one"),
    [
        ([], "PKR", "PKR", True),  # no conversion
        ([], "USD", "USD", True),
        ([("PKR", "2025-01-01")], "PKR", "USD", True),
        ([("PKR", "2024-06-30")], "PKR", "USD", True),  # in force from before
        ([("PKR", "2025-01-02")], "PKR", "USD", False),  # the 1st has no rate
        ([], "PKR", "USD", False),
        ([("PKR", "2025-01-01"), ("PKR", "2025-01-31")], "PKR", "USD", False),
        ([("PKR", "2025-01-01"), ("PKR", "2025-02-01")], "PKR", "USD", True),
        # A cross rate: both currencies' rates must hold all month.
        ([("PKR", "2025-01-01"), ("CNY", "2025-01-01")], "PKR", "CNY", True),
        ([("PKR", "2025-01-01"), ("CNY", "2025-01-15")], "PKR", "CNY", False),
        ([("PKR", "2025-01-01")], "USD", "PKR", True),
        ([("CNY", "2025-01-01")], "USD", "PKR", False),
    ],
)
def test_one_rate_holds_for_a_month_only_when_no_rate_of_either_currency_changes_in_it(
    rates, currency, reporting, one
):
    known = Rates((code, date.fromisoformat(day), Decimal("0.5")) for code, day in rates)
    assert known.one_rate(reporting, currency, date(2025, 1, 1), date(2025, 1, 31)) is one
