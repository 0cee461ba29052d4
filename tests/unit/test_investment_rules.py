"""Investment flow rules without a broker or a database: what a valid flow is, minor
units, the disbursement rule, partners, value dates and exchange rates."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.investments.domain import (
    Balance,
    VentureView,
    apply_to_balance,
    counts_against_commitments,
    new_flow,
    parse_flow,
    parse_fx_rate,
)
from shared.errors import Conflict, InvalidInput, RuleViolated
from shared.input_types import today_in_pakistan

TODAY = date(2025, 6, 30)
ACTOR = {"key_id": "key_1", "role": "investor", "owner": "Lahore Pharma Holdings"}
VENTURE = VentureView(
    id="jv_1",
    owner="Lahore Pharma Holdings",
    name="Indus-Yangtze API Works",
    sector="api_manufacturing",
    province="khyber_pakhtunkhwa",
    status="active",
    partners=[
        {"name": "Indus Pharma (Pvt) Ltd", "country": "PK"},
        {"name": "Zhejiang Yangtze Pharmaceutical Co.", "country": "CN"},
    ],
)


def body(**overrides) -> str:
    flow = {
        "type": "disbursement",
        "partner": "Indus Pharma (Pvt) Ltd",
        "amount": "1500000.00",
        "currency": "PKR",
        "value_date": "2025-06-01",
    }
    flow.update(overrides)
    return json.dumps({k: v for k, v in flow.items() if v is not None})


def refused(text: str) -> list[dict]:
    with pytest.raises(InvalidInput) as caught:
        parse_flow(text, TODAY)
    return caught.value.errors


def only_error_at(text: str, field: str) -> str:
    errors = refused(text)
    assert [error["loc"] for error in errors] == [[field]], errors
    return errors[0]["msg"]


def flow(text: str, venture: VentureView = VENTURE):
    at = datetime(2025, 6, 30, 9, tzinfo=UTC)
    return new_flow(venture, parse_flow(text, TODAY), "inv_1", ACTOR, at)


@pytest.mark.parametrize("amount", ["1e3", "0.1"])
def test_a_json_number_amount_is_refused(amount):
    text = body().replace('"1500000.00"', amount)  # a JSON number, not a string
    assert "not a JSON number" in only_error_at(text, "amount")


def test_an_integer_json_number_is_refused_too():
    assert "not a JSON number" in only_error_at(body(amount=1000), "amount")


@pytest.mark.parametrize("amount", ["1e3", "1,000.00", "12.", ".5", "NaN", "Infinity", ""])
def test_an_amount_must_be_a_plain_decimal_string(amount):
    assert "plain decimal" in only_error_at(body(amount=amount), "amount")


@pytest.mark.parametrize(
    ("currency", "amount"),
    [("JPY", "100.5"), ("PKR", "10.125"), ("CNY", "0.001"), ("USD", "1.999"), ("KWD", "1.2345")],
)
def test_more_decimals_than_the_minor_unit_are_refused(currency, amount):
    message = only_error_at(body(currency=currency, amount=amount), "amount")
    assert f"{currency} amounts have at most" in message


@pytest.mark.parametrize(
    ("currency", "amount", "stored"),
    [
        ("JPY", "150000000", "150000000"),
        ("KWD", "1.234", "1.234"),
        ("USD", "2.5", "2.50"),  # written to the minor unit
        ("PKR", "1500000", "1500000.00"),
        ("CNY", "0.01", "0.01"),
    ],
)
def test_amounts_within_the_minor_unit_are_kept_exactly(currency, amount, stored):
    recorded = flow(body(currency=currency, amount=amount))
    assert recorded.amount == Decimal(stored)
    assert recorded.model_dump(mode="json")["amount"] == stored


@pytest.mark.parametrize("currency", ["XYZ", "usd", "US", "XAU", "XXX"])
def test_a_currency_must_be_an_iso_4217_currency(currency):
    assert "ISO 4217" in only_error_at(body(currency=currency), "currency")


def test_zero_is_refused():
    assert "zero" in only_error_at(body(amount="0.00"), "amount")


@pytest.mark.parametrize("flow_type", ["disbursement", "equity_purchase", "loan_repayment"])
def test_only_a_commitment_may_be_negative(flow_type):
    message = only_error_at(body(type=flow_type, amount="-10.00"), "amount")
    assert "only a commitment may be negative" in message
    assert parse_flow(body(type="commitment", amount="-10.00"), TODAY).amount == Decimal("-10.00")


def test_a_future_value_date_is_refused():
    message = only_error_at(body(value_date="2025-07-01"), "value_date")
    assert "future" in message and "2025-06-30" in message
    assert parse_flow(body(value_date="2025-06-30"), TODAY).value_date == TODAY


@pytest.mark.parametrize("value_date", ["2025-06-01T00:00:00", "01/06/2025", 20250601])
def test_a_value_date_is_a_plain_date(value_date):
    only_error_at(body(value_date=value_date), "value_date")


def test_today_is_todays_date_in_pakistan():
    # 20:00 UTC is already 01:00 the next day in Karachi (UTC+05:00).
    assert today_in_pakistan(datetime(2025, 1, 1, 20, tzinfo=UTC)) == date(2025, 1, 2)
    assert today_in_pakistan(datetime(2025, 1, 1, 18, 59, tzinfo=UTC)) == date(2025, 1, 1)


def test_unknown_fields_and_types_are_refused():
    errors = refused(body(type="grant", amount_usd="5"))
    assert sorted(error["loc"][0] for error in errors) == ["amount_usd", "type"]


def test_the_partner_is_matched_ignoring_case_and_spacing():
    recorded = flow(body(partner="  zhejiang  YANGTZE pharmaceutical co. "))
    assert (recorded.partner, recorded.partner_country) == (
        "Zhejiang Yangtze Pharmaceutical Co.",
        "CN",
    )


def test_a_partner_not_in_the_venture_is_refused_naming_the_partners():
    with pytest.raises(InvalidInput) as caught:
        flow(body(partner="Karachi Generics Ltd"))
    assert caught.value.errors[0]["loc"] == ["partner"]
    assert "Indus Pharma (Pvt) Ltd" in caught.value.errors[0]["msg"]


def test_a_dissolved_venture_takes_no_flows():
    with pytest.raises(Conflict):
        flow(body(), VENTURE.model_copy(update={"status": "dissolved"}))


def balance_after(*flows: str) -> Balance:
    balance = Balance()
    for text in flows:
        balance = apply_to_balance(balance, flow(text))
    return balance


def test_disbursements_within_net_commitments_pass():
    balance = balance_after(
        body(type="commitment", amount="1000.00"),
        body(type="commitment", amount="-200.00"),
        body(amount="800.00"),
    )
    assert (balance.committed, balance.disbursed, balance.version) == (
        Decimal("800.00"),
        Decimal("800.00"),
        3,
    )


def test_a_disbursement_beyond_commitments_says_by_how_much():
    committed = balance_after(body(type="commitment", amount="1000.00"), body(amount="600.00"))
    with pytest.raises(RuleViolated) as caught:
        apply_to_balance(committed, flow(body(amount="400.01")))
    error = caught.value
    assert "by 0.01 PKR" in error.detail
    assert error.errors[0]["loc"] == ["amount"]
    assert error.extra["excess"] == "0.01"


def test_a_reduction_below_what_was_disbursed_is_refused():
    disbursed = balance_after(body(type="commitment", amount="1000.00"), body(amount="600.00"))
    with pytest.raises(RuleViolated) as caught:
        apply_to_balance(disbursed, flow(body(type="commitment", amount="-500.00")))
    assert "below what was already disbursed" in caught.value.detail
    assert caught.value.extra["excess"] == "100.00"


def test_a_disbursement_without_any_commitment_is_refused():
    with pytest.raises(RuleViolated) as caught:
        balance_after(body(amount="5.00"))
    assert caught.value.extra["excess"] == "5.00"


def test_other_flow_types_do_not_count_against_commitments():
    assert [
        t
        for t in ("equity_purchase", "equity_sale", "loan", "loan_repayment")
        if counts_against_commitments(t)
    ] == []


def test_a_rate_is_a_positive_decimal_string_for_a_past_day_and_not_for_usd():
    key, command = parse_fx_rate("PKR", "2025-01-31", '{"usd_per_unit": "0.0035714"}', TODAY)
    assert (key.id, command.usd_per_unit) == ("fx:PKR:2025-01-31", Decimal("0.0035714"))
    cases = [
        (("PKR", "2025-01-31", '{"usd_per_unit": 0.0036}'), ["usd_per_unit"]),
        (("PKR", "2025-01-31", '{"usd_per_unit": "0"}'), ["usd_per_unit"]),
        (("PKR", "2025-01-31", '{"usd_per_unit": "-1"}'), ["usd_per_unit"]),
        (("PKR", "2025-01-31", '{"usd_per_unit": "0.0000000000001"}'), ["usd_per_unit"]),
        (("USD", "2025-01-31", '{"usd_per_unit": "1"}'), ["currency"]),
        (("ABC", "2025-01-31", '{"usd_per_unit": "1"}'), ["currency"]),
        (("PKR", "2025-07-01", '{"usd_per_unit": "1"}'), ["date"]),
        (("PKR", "31-01-2025", '{"usd_per_unit": "1"}'), ["date"]),
    ]
    for args, loc in cases:
        with pytest.raises(InvalidInput) as caught:
            parse_fx_rate(*args, TODAY)
        assert [error["loc"] for error in caught.value.errors] == [loc], args
