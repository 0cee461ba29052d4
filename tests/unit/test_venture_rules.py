"""The rules of a valid joint venture (docs/architecture.md §7.1), without broker or database."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.ventures import contract, domain
from shared.errors import Conflict

from support import venture_body


def register(**overrides) -> contract.RegisterVenture:
    return contract.RegisterVenture.model_validate_json(body(**overrides))


def partners(*shares, countries=None):
    countries = countries or ["PK", "CN"] + ["PK"] * (len(shares) - 2)
    return [
        {"name": f"Partner {i}", "country": country, "kind": "private_company", "equity_pct": share}
        for i, (share, country) in enumerate(zip(shares, countries, strict=True))
    ]


def errors_of(body_json: str) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        contract.RegisterVenture.model_validate_json(body_json)
    return caught.value.errors()


def body(**overrides) -> str:
    return json.dumps(venture_body("Karachi-Shenzhen Devices", **overrides))


def test_a_valid_registration_keeps_equity_exact():
    venture = register()
    assert [p.equity_pct for p in venture.partners] == [Decimal("51"), Decimal("49")]


@pytest.mark.parametrize("shares", [(33.33, 33.33, 33.34), (33.1, 33.2, 33.7)])
def test_equity_is_summed_in_decimal_not_binary_floating_point(shares):
    # As JSON numbers; 33.1 + 33.2 + 33.7 is 100.00000000000001 in floating point.
    venture = contract.RegisterVenture.model_validate_json(body(partners=partners(*shares)))
    assert sum(p.equity_pct for p in venture.partners) == 100


def test_equity_that_falls_short_of_100_is_refused():
    errors = errors_of(body(partners=partners(33.3, 33.3, 33.3)))
    assert errors[0]["loc"] == ("partners",)
    assert "sum to exactly 100, not 99.9" in errors[0]["msg"]


@pytest.mark.parametrize("share", [0, -10, "0", "100.5", "12.34567"])
def test_each_share_must_be_positive_at_most_100_with_four_decimals(share):
    errors = errors_of(body(partners=partners(share, 50)))
    assert errors[0]["loc"][:3] == ("partners", 0, "equity_pct")


def test_a_single_partner_is_not_a_joint_venture():
    errors = errors_of(body(partners=partners(100, countries=["PK"])[:1]))
    assert errors[0]["loc"] == ("partners",)
    assert errors[0]["type"] == "too_short"


@pytest.mark.parametrize("countries, missing", [(["PK", "PK"], "CN"), (["CN", "US"], "PK")])
def test_a_pakistani_and_a_chinese_partner_are_required(countries, missing):
    errors = errors_of(body(partners=partners(50, 50, countries=countries)))
    assert errors[0]["loc"] == ("partners",)
    assert f"missing: {missing}" in errors[0]["msg"]


def test_unknown_sector_and_unknown_fields_are_refused_by_name():
    errors = errors_of(body(sector="cosmetics", colour="blue"))
    assert {e["loc"] for e in errors} == {("sector",), ("colour",)}


def test_missing_fields_are_named():
    raw = json.dumps({"name": "Quetta Herbal TCM"})
    locs = {e["loc"] for e in errors_of(raw)}
    assert locs == {("sector",), ("partners",), ("province",)}


def test_names_compare_case_and_space_insensitively():
    assert domain.name_key("Sino-Indus  API Works") == domain.name_key("sino-indus api works")


@pytest.mark.parametrize(
    "current, target, allowed",
    [
        ("registered", "active", True),
        ("active", "suspended", True),
        ("suspended", "active", True),
        ("registered", "dissolved", True),
        ("suspended", "dissolved", True),
        ("registered", "suspended", False),
        ("active", "registered", False),
        ("dissolved", "active", False),
    ],
)
def test_status_transitions(current, target, allowed):
    if allowed:
        domain.check_status_change(current, target)
    else:
        with pytest.raises(Conflict) as caught:
            domain.check_status_change(current, target)
        assert caught.value.extra["allowed"] == sorted(domain.STATUS_TRANSITIONS[current])


def stored_venture(**overrides) -> contract.Venture:
    now = datetime.now(UTC)
    stored = {
        "id": "jv_1",
        "status": "registered",
        "owner": "Lahore Pharma",
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    return contract.Venture(**register().model_dump(), **{**stored, **overrides})


def test_an_update_is_validated_as_a_whole_and_reports_what_changed():
    update = contract.UpdateVenture.model_validate({"province": "punjab", "sez": None})
    fields, changes = domain.apply_update(stored_venture(), update)
    assert fields.province == "punjab" and fields.sez is None
    assert changes == {
        "province": {"from": "khyber_pakhtunkhwa", "to": "punjab"},
        "sez": {"from": "Rashakai SEZ", "to": None},
    }


def test_an_update_may_not_break_the_partner_rules():
    update = contract.UpdateVenture.model_validate({"partners": partners(60, 50)})
    with pytest.raises(ValidationError, match="sum to exactly 100"):
        domain.apply_update(stored_venture(), update)


def test_an_empty_update_is_refused():
    with pytest.raises(ValidationError, match="at least one field"):
        contract.UpdateVenture.model_validate({})


def test_a_dissolved_venture_cannot_be_edited():
    with pytest.raises(Conflict):
        domain.check_editable(stored_venture(status="dissolved"))
