"""Dates within the registry's bounds and names that cannot pass for another's, as every
service that takes them applies them (shared/input_types.py)."""

import json
from datetime import date

import pytest

from services.facilities.contract import RegisterFacility
from services.investments.domain import parse_flow, parse_fx_rate
from services.licensing.contract import LicenceFilters, RequestTransition
from services.ventures.contract import RegisterVenture
from services.ventures.domain import name_key
from shared.errors import InvalidInput, validated
from shared.input_types import today_in_pakistan, years_after

from support import venture_body

TODAY = date(2025, 6, 30)
FLOW = {
    "type": "commitment",
    "partner": "Indus Pharma (Pvt) Ltd",
    "amount": "1000.00",
    "currency": "PKR",
    "value_date": "2025-06-01",
}
VENTURE = venture_body("Indus-Yangtze API Works")


def error_at(call, *loc) -> str:
    """The message of the one error, which must name `loc`."""
    with pytest.raises(InvalidInput) as caught:
        call()
    assert [error["loc"] for error in caught.value.errors] == [list(loc)]
    return caught.value.errors[0]["msg"]


# --- dates ------------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["0001-01-01", "1899-12-31", "1989-12-31"])
def test_a_value_date_before_1990_is_refused(day):
    flow = json.dumps({**FLOW, "value_date": day})
    message = error_at(lambda: parse_flow(flow, TODAY), "body", "value_date")
    assert "on or after 1990-01-01" in message
    floor = json.dumps({**FLOW, "value_date": "1990-01-01"})
    assert parse_flow(floor, TODAY).value_date == date(1990, 1, 1)


@pytest.mark.parametrize("day", ["0001-01-01", "1989-12-31"])
def test_an_fx_rate_before_1990_is_refused(day):
    set_rate = lambda: parse_fx_rate("PKR", day, '{"usd_per_unit": "0.0036"}', TODAY)  # noqa: E731
    assert "1990-01-01" in error_at(set_rate, "path", "date")


def transition(**fields):
    body = {"to": "inspection_scheduled", "reason": "site visit", **fields}
    return lambda: validated(RequestTransition, json.dumps(body))


@pytest.mark.parametrize("day", ["0001-01-01", "1989-12-31"])
def test_an_inspection_date_before_1990_is_refused(day):
    assert "1990-01-01" in error_at(transition(inspection_date=day), "body", "inspection_date")


def test_an_inspection_is_at_most_two_years_ahead():
    today = today_in_pakistan()
    last = years_after(today, 2)
    assert transition(inspection_date=last.isoformat())().inspection_date == last
    too_late = date.fromordinal(last.toordinal() + 1).isoformat()
    message = error_at(transition(inspection_date=too_late), "body", "inspection_date")
    assert f"at most 2 years ahead: on or before {last.isoformat()}" in message


@pytest.mark.parametrize("valid_until", ["0001-01-01", "1989-12-31T12:00:00Z"])
def test_a_validity_before_1990_is_refused(valid_until):
    grant = transition(to="granted", decision_ref="DRAP/1", valid_until=valid_until)
    assert "1990-01-01" in error_at(grant, "body", "valid_until")


def test_a_validity_is_at_most_ten_years_ahead():
    last = years_after(today_in_pakistan(), 10)
    grant = transition(to="granted", decision_ref="DRAP/1", valid_until=last.isoformat())
    assert grant().valid_until.date() == last
    beyond = f"{last.year + 1}-01-01T00:00:00+05:00"
    too_long = transition(to="granted", decision_ref="DRAP/1", valid_until=beyond)
    assert "at most 10 years ahead" in error_at(too_long, "body", "valid_until")


def test_an_expiry_filter_is_bounded_too():
    filters = lambda day: validated(LicenceFilters, {"expiring_before": day}, ("query",))  # noqa: E731
    assert "1990-01-01" in error_at(lambda: filters("0001-01-01"), "query", "expiring_before")
    assert filters("2027-01-01").expiring_before == date(2027, 1, 1)


def test_years_after_a_leap_day_is_the_28th():
    assert years_after(date(2024, 2, 29), 2) == date(2026, 2, 28)


# --- names ------------------------------------------------------------------------------

CYRILLIC_A = "\u0410"  # looks like A
FULL_WIDTH_A = "\uff21"  # Ａ
ZWSP = "\u200b"
RTL_OVERRIDE = "\u202e"
NUL = "\x00"


def register(**overrides):
    return lambda: validated(RegisterVenture, json.dumps({**VENTURE, **overrides}))


@pytest.mark.parametrize(
    "hidden",
    [ZWSP, RTL_OVERRIDE, NUL, "\u2066", "\ufeff", "\u00ad", "\n", "\u115f", "\ufe0f", "\u2028"],
)
def test_a_venture_name_hiding_a_character_is_refused(hidden):
    message = error_at(register(name=f"Indus{hidden}-Yangtze API Works"), "body", "name")
    assert f"U+{ord(hidden):04X}" in message


def test_a_partner_or_focal_point_name_hiding_a_character_is_refused():
    partners = [dict(partner) for partner in VENTURE["partners"]]
    partners[1]["name"] = f"Zhejiang{RTL_OVERRIDE} Yangtze"
    assert "U+202E" in error_at(register(partners=partners), "body", "partners", 1, "name")
    person = [{**VENTURE["focal_points"][0], "name": f"Ayesha{ZWSP} Khan"}]
    assert "U+200B" in error_at(register(focal_points=person), "body", "focal_points", 0, "name")


def test_a_facility_name_hiding_a_character_is_refused():
    plant = {
        "name": f"Rashakai{NUL} Plant",
        "kind": "formulation_plant",
        "address": "Plot 14, Rashakai SEZ",
        "city": "Nowshera",
        "province": "khyber_pakhtunkhwa",
    }
    assert "U+0000" in error_at(lambda: validated(RegisterFacility, plant), "body", "name")


def test_stacked_combining_marks_are_refused():
    zalgo = "Indus" + "\u0301" * 5 + " Works"
    assert "combining marks" in error_at(register(name=zalgo), "body", "name")


def test_names_are_stored_in_nfkc():
    assert register(name=f"{FULL_WIDTH_A}PI Works")().name == "API Works"
    # "e" + combining acute is stored as the one letter "é".
    assert register(name="Cafe\u0301 Pharma")().name == "Caf\u00e9 Pharma"
    # Scripts other than Latin stay as written.
    assert register(name="浙江 Pharma")().name == "浙江 Pharma"


@pytest.mark.parametrize(
    "look_alike",
    [
        f"Indus-Yangtze {CYRILLIC_A}PI Works",
        f"Indus-Yangtze {FULL_WIDTH_A}PI Works",
        "Indus-Yangtze \u0391PI Works",  # Greek capital alpha
    ],
)
def test_look_alike_names_have_the_same_key(look_alike):
    assert name_key(look_alike) == name_key("Indus-Yangtze API Works")
    assert name_key(look_alike) != name_key("Indus-Yangtze APl Works")


def test_a_combining_form_and_its_composed_letter_have_the_same_key():
    assert name_key("Cafe\u0301 Pharma") == name_key("Caf\u00e9 Pharma")


def test_look_alike_partners_are_one_partner():
    partners = [
        *VENTURE["partners"],
        {
            "name": f"Indus Ph{CYRILLIC_A.lower()}rma (Pvt) Ltd",
            "country": "CN",
            "kind": "private_company",
            "equity_pct": "0.0001",
        },
    ]
    partners[1] = {**partners[1], "equity_pct": "48.9999"}
    assert "only once" in error_at(register(partners=partners), "body", "partners")
