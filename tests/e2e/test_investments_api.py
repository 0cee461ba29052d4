"""Investments through the gateway, against the registry's real processes: the worked
example's exact summaries, bad input refused without a trace, rates, who sees what."""

import json
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ops.processes import wait_until

from investment_scenario import (
    FLOWS_A,
    FLOWS_B,
    INDUS,
    MONTHLY_DISBURSEMENTS_USD,
    PORTFOLIO_GROUPS,
    PORTFOLIO_TOTAL_USD,
    RATES,
    VENTURE_A_USD,
    VENTURE_B_TOTAL_USD,
    venture_a,
    venture_b,
)

PROBLEM = "application/problem+json"


def register(api, body: dict) -> str:
    response = api.post("/v1/ventures", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def record(api, venture_id: str, flow: dict):
    return api.post(f"/v1/ventures/{venture_id}/investments", json=flow)


def record_first(api, venture_id: str, flow: dict) -> dict:
    """The first flow of a venture just registered: accepted at once (the investments
    service waits for the venture's registration, docs/architecture.md §5.7)."""
    response = record(api, venture_id, flow)
    assert response.status_code == 201, response.text
    return response.json()


def record_all(api, venture_id: str, flows: list[dict]) -> list[dict]:
    recorded = [record_first(api, venture_id, flows[0])]
    for flow in flows[1:]:
        response = record(api, venture_id, flow)
        assert response.status_code == 201, response.text
        recorded.append(response.json())
    return recorded


def set_rates(ops, rates=RATES):
    for currency, day, usd_per_unit in rates:
        response = ops.put(f"/v1/fx-rates/{currency}/{day}", json={"usd_per_unit": usd_per_unit})
        assert response.status_code in (200, 201), response.text


def all_flows(api, venture_id: str, limit: int = 4) -> list[dict]:
    flows, cursor = [], None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = api.get(f"/v1/ventures/{venture_id}/investments", params=params)
        assert response.status_code == 200, response.text
        flows += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return flows


def new_investor(new_key):
    return new_key("investor", f"Investor {uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def worked_example(ops, new_key):
    """The scenario of docs/investments.md, recorded through the gateway."""
    investor = new_investor(new_key)
    a = register(investor, venture_a())
    b = register(investor, venture_b())
    set_rates(ops)
    recorded_a = record_all(investor, a, FLOWS_A)
    record_all(investor, b, FLOWS_B)
    return {"investor": investor, "a": a, "b": b, "recorded_a": recorded_a}


def test_a_ventures_summary_is_exactly_the_hand_computed_one(worked_example):
    investor, a = worked_example["investor"], worked_example["a"]
    response = investor.get(f"/v1/ventures/{a}/investments/summary", params={"currency": "USD"})
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["venture_id"] == a
    assert "half to even" in summary["rounding"]
    assert {key: summary[key] for key in VENTURE_A_USD} == VENTURE_A_USD
    b = investor.get(f"/v1/ventures/{worked_example['b']}/investments/summary").json()
    assert b["total"] == VENTURE_B_TOTAL_USD  # USD is the default


@pytest.mark.parametrize("group_by", sorted(PORTFOLIO_GROUPS))
def test_an_investors_portfolio_per_group(worked_example, group_by):
    response = worked_example["investor"].get(
        "/v1/investments/summary", params={"group_by": group_by, "currency": "USD"}
    )
    assert response.status_code == 200, response.text
    portfolio = response.json()
    assert portfolio["group_by"] == group_by
    assert portfolio["groups"] == PORTFOLIO_GROUPS[group_by]
    assert portfolio["total"] == PORTFOLIO_TOTAL_USD
    assert portfolio["monthly_disbursements"] == MONTHLY_DISBURSEMENTS_USD


def test_the_venture_view_includes_its_investment_summary(worked_example):
    response = worked_example["investor"].get(f"/v1/ventures/{worked_example['a']}")
    assert response.status_code == 200
    assert response.json()["investment_summary"]["total"] == VENTURE_A_USD["total"]


def test_flows_are_listed_page_by_page_as_recorded(worked_example, regulator):
    flows = all_flows(regulator, worked_example["a"])
    assert flows == worked_example["recorded_a"]
    assert [(f["type"], f["amount"], f["currency"]) for f in flows] == [
        (f["type"], f["amount"], f["currency"]) for f in FLOWS_A
    ]
    assert {f["partner_country"] for f in flows} == {"PK", "CN"}


def test_other_investors_see_nothing_of_it(worked_example, new_key):
    stranger = new_investor(new_key)
    a = worked_example["a"]
    assert stranger.get(f"/v1/ventures/{a}/investments").status_code == 404
    assert stranger.get(f"/v1/ventures/{a}/investments/summary").status_code == 404
    assert record(stranger, a, FLOWS_A[0]).status_code == 404
    own = stranger.get("/v1/investments/summary").json()
    assert (own["total"]["committed"], own["monthly_disbursements"]) == ("0.00", [])


def test_regulators_read_but_do_not_record(worked_example, regulator):
    a = worked_example["a"]
    assert regulator.get(f"/v1/ventures/{a}/investments/summary").status_code == 200
    assert record(regulator, a, FLOWS_A[0]).status_code == 403


@pytest.fixture
def committed_venture(new_key):
    """A venture of a fresh investor with Indus's 1000.00 USD commitment."""
    investor = new_investor(new_key)
    venture = register(investor, venture_a())
    record_first(
        investor,
        venture,
        {
            "type": "commitment",
            "partner": INDUS,
            "amount": "1000.00",
            "currency": "USD",
            "value_date": "2025-01-15",
        },
    )
    return investor, venture


def karachi_today():
    return datetime.now(ZoneInfo("Asia/Karachi")).date()


DISBURSEMENT = {
    "type": "disbursement",
    "partner": INDUS,
    "amount": "100.00",
    "currency": "USD",
    "value_date": "2025-02-01",
}
BAD_FLOWS = [
    ("cents of a cent", {"amount": "10.123"}, "amount"),
    ("yen with decimals", {"amount": "100.5", "currency": "JPY"}, "amount"),
    ("an unknown currency", {"currency": "XYZ"}, "currency"),
    ("a negative disbursement", {"amount": "-5.00"}, "amount"),
    ("a future value date", {"value_date": str(karachi_today() + timedelta(days=2))}, "value_date"),
    ("a partner not in the venture", {"partner": "Karachi Generics Ltd"}, "partner"),
    ("a disbursement beyond commitments", {"amount": "1000.01"}, "amount"),
    ("an unknown field", {"amount_usd": "5"}, "amount_usd"),
]


def assert_refused(response, field: str, investor, venture: str) -> None:
    """A problem naming `field`, and the venture still has only its one commitment."""
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == PROBLEM
    assert [error["loc"] for error in response.json()["errors"]] == [["body", field]]
    assert [f["type"] for f in all_flows(investor, venture)] == ["commitment"]


@pytest.mark.parametrize(("what", "change", "field"), BAD_FLOWS, ids=[c[0] for c in BAD_FLOWS])
def test_bad_input_is_a_problem_naming_the_field_and_records_nothing(
    committed_venture, what, change, field
):
    investor, venture = committed_venture
    assert_refused(record(investor, venture, {**DISBURSEMENT, **change}), field, investor, venture)


@pytest.mark.parametrize("number", ["1e3", "0.1", "100"])
def test_an_amount_as_a_json_number_is_refused(committed_venture, number):
    investor, venture = committed_venture
    body = json.dumps(DISBURSEMENT).replace('"100.00"', number)
    response = investor.post(
        f"/v1/ventures/{venture}/investments",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert_refused(response, "amount", investor, venture)


def test_over_disbursement_says_by_how_much(committed_venture):
    investor, venture = committed_venture
    assert record(investor, venture, {**DISBURSEMENT, "amount": "600.00"}).status_code == 201
    response = record(investor, venture, {**DISBURSEMENT, "amount": "400.50"})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "/problems/rule-violated"
    assert "by 0.50 USD" in problem["detail"]
    assert problem["excess"] == "0.50"


def test_a_missing_rate_is_a_problem_inside_the_report_not_a_failure(committed_venture, ops):
    """One investor's yen flow without a rate does not make anyone's report fail: the
    summaries answer 200 and name the venture, currency and date that need a rate."""
    investor, venture = committed_venture
    yen = {**DISBURSEMENT, "type": "commitment", "amount": "2500000", "currency": "JPY"}
    assert record(investor, venture, yen).status_code == 201
    expected = [{"currency": "JPY", "date": "2025-02-01"}]
    response = investor.get(f"/v1/ventures/{venture}/investments/summary")
    assert response.status_code == 200, response.text
    (problem,) = response.json()["problems"]
    assert (problem["venture_id"], problem["currency"], problem["date"]) == (
        venture,
        "JPY",
        "2025-02-01",
    )
    assert problem["missing_rates"] == expected
    assert "JPY on or before 2025-02-01" in problem["detail"]
    for group_by in ("", "sector", "province", "partner_country"):
        portfolio = ops.get(
            f"/v1/investments/summary?group_by={group_by}"
            if group_by
            else "/v1/investments/summary"
        )
        assert portfolio.status_code == 200, portfolio.text
        # (the registry is shared by the session's tests: other ventures may have some)
        assert venture in [p["venture_id"] for p in portfolio.json()["problems"]]
    # The venture's view shows the same problems inside its summary.
    view = investor.get(f"/v1/ventures/{venture}")
    assert view.status_code == 200
    assert view.json()["investment_summary"]["problems"][0]["missing_rates"] == expected


def test_a_dissolved_venture_takes_no_more_flows(committed_venture, ops):
    investor, venture = committed_venture
    dissolve = {"to": "dissolved", "reason": "the partners parted ways"}
    assert ops.post(f"/v1/ventures/{venture}/status", json=dissolve).status_code == 200

    def refused_as_dissolved() -> bool:
        # Until the dissolution reaches the investments service a flow still gets in.
        response = record(investor, venture, {**DISBURSEMENT, "type": "commitment"})
        assert response.status_code in (201, 409), response.text
        return response.status_code == 409 and "dissolved" in response.json()["detail"]

    wait_until(refused_as_dissolved, 30, "the dissolution in the investments service")


def test_only_ops_set_rates_and_a_rate_has_versions(ops, new_key):
    path = "/v1/fx-rates/THB/2024-07-01"
    assert new_investor(new_key).put(path, json={"usd_per_unit": "0.027"}).status_code == 403
    created = ops.put(path, json={"usd_per_unit": "0.027"})
    assert (created.status_code, created.headers["ETag"]) == (201, '"1"')
    assert created.json()["usd_per_unit"] == "0.027"
    unchanged = ops.put(path, json={"usd_per_unit": "0.027"})
    assert (unchanged.status_code, unchanged.headers["ETag"]) == (200, '"1"')
    changed = ops.put(path, json={"usd_per_unit": "0.0275"})
    assert (changed.status_code, changed.headers["ETag"]) == (200, '"2"')
    for bad_path, body, loc in [
        ("/v1/fx-rates/USD/2024-07-01", {"usd_per_unit": "1"}, ["path", "currency"]),
        ("/v1/fx-rates/THB/2024-02-30", {"usd_per_unit": "1"}, ["path", "date"]),
        (path, {"usd_per_unit": 0.027}, ["body", "usd_per_unit"]),
        (path, {"usd_per_unit": "0"}, ["body", "usd_per_unit"]),
    ]:
        response = ops.put(bad_path, json=body)
        assert response.status_code == 422, response.text
        assert [error["loc"] for error in response.json()["errors"]] == [loc]


def test_report_queries_are_validated(ops):
    response = ops.get("/v1/investments/summary", params={"group_by": "city"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "group_by"]
    response = ops.get("/v1/investments/summary", params={"currency": "EURO"})
    assert response.json()["errors"][0]["loc"] == ["query", "currency"]
