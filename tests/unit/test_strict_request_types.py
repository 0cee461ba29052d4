"""Request bodies take JSON values as the OpenAPI document types them: pydantic's lax
mode would read `false` as 0, "3" as 3 and 1900000000 as a moment in 2030."""

import json

import pytest
from pydantic import ValidationError

from services.facilities.contract import Capacity
from services.gateway.keys import CreateApiKey, RotateApiKey
from services.licensing.contract import RequestTransition
from services.ventures.contract import Partner


def parsed(model, body: dict):
    return model.model_validate_json(json.dumps(body))


def refused_field(model, body: dict) -> tuple:
    with pytest.raises(ValidationError) as caught:
        parsed(model, body)
    return caught.value.errors()[0]["loc"]


KEY = {"role": "investor", "owner": "Indus Pharma"}
PARTNER = {"name": "Indus Pharma", "country": "PK", "kind": "private_company"}


@pytest.mark.parametrize("grace", [False, True, "60", 60.5])
def test_grace_seconds_is_a_json_integer(grace):
    assert refused_field(RotateApiKey, {"grace_seconds": grace}) == ("grace_seconds",)
    assert parsed(RotateApiKey, {"grace_seconds": 60}).grace_seconds == 60


@pytest.mark.parametrize("days", [True, "30"])
def test_expires_in_days_is_a_json_integer(days):
    assert refused_field(CreateApiKey, {**KEY, "expires_in_days": days}) == ("expires_in_days",)
    assert parsed(CreateApiKey, {**KEY, "expires_in_days": 30}).expires_in_days == 30


def test_moments_and_days_are_iso_text_not_unix_seconds():
    assert refused_field(RotateApiKey, {"expires_at": 1900000000}) == ("expires_at",)
    assert parsed(RotateApiKey, {"expires_at": "2030-03-17T17:46:40Z"}).expires_at.year == 2030
    transition = {"to": "granted", "reason": "inspection satisfactory"}
    assert refused_field(RequestTransition, {**transition, "valid_until": 1900000000}) == (
        "valid_until",
    )
    # 1900800000 seconds is midnight: a lax date would take it
    assert refused_field(RequestTransition, {**transition, "inspection_date": 1900800000}) == (
        "inspection_date",
    )
    assert parsed(RequestTransition, {**transition, "valid_until": "2030-03-17"}).valid_until


@pytest.mark.parametrize("text", ["1e1", " 10", "", "10."])
def test_a_decimal_string_is_plain(text):
    assert refused_field(Partner, {**PARTNER, "equity_pct": text}) == ("equity_pct",)
    assert refused_field(Capacity, {"value": text, "unit": "beds"}) == ("value",)


def test_decimals_as_plain_strings_or_json_numbers_still_pass():
    assert str(parsed(Partner, {**PARTNER, "equity_pct": "33.3333"}).equity_pct) == "33.3333"
    assert parsed(Partner, {**PARTNER, "equity_pct": 51}).equity_pct == 51
    assert str(parsed(Capacity, {"value": "250000000", "unit": "beds"}).value) == "250000000"


def test_the_document_states_the_decimal_string_pattern():
    for schema in (
        Partner.model_json_schema()["properties"]["equity_pct"],
        Capacity.model_json_schema()["properties"]["value"],
    ):
        (text,) = [option for option in schema["anyOf"] if option["type"] == "string"]
        assert text["pattern"] == r"^[+-]?\d+(\.\d+)?$"
