"""The investments service in a real nameko container beside the ventures service: its
projection of ventures events, the disbursement rule under concurrent writers, reports
read from the totals each flow updates in its transaction, and the portfolio folder
folding the entries flows leave pending into the portfolio's totals."""

import json
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace

import eventlet
import pytest
from bson import Decimal128
from bson.codec_options import CodecOptions
from nameko.standalone.rpc import ServiceRpcProxy

from ops.processes import wait_until
from services.investments.service import InvestmentsService
from services.investments.store import PORTFOLIO_PENDING, PORTFOLIO_TOTALS, InvestmentStore
from services.ventures.service import VenturesService
from shared.errors import Conflict, InvalidInput, NotFound, RuleViolated

from investment_scenario import (
    FLOWS_A,
    FLOWS_B,
    MONTHLY_DISBURSEMENTS_USD,
    PORTFOLIO_GROUPS,
    PORTFOLIO_TOTAL_USD,
    RATES,
    VENTURE_A_USD,
    VENTURE_B_TOTAL_USD,
    venture_a,
    venture_b,
)

OWNER = "Lahore Pharma Holdings"
INVESTOR = {"key_id": "key_investor", "role": "investor", "owner": OWNER}
OPS = {"key_id": "key_ops", "role": "ops", "owner": "platform-ops"}
USD = {"currency": "USD"}


@pytest.fixture
def registry(service_config, container_factory):
    """The ventures and investments services on this test's vhost and databases."""
    investments = container_factory(InvestmentsService, service_config)
    investments.start()  # its queue for ventures events exists before any is published
    container_factory(VenturesService, service_config).start()
    store = next(d for d in investments.dependencies if d.attr_name == "store")
    with (
        ServiceRpcProxy("ventures", service_config) as ventures,
        ServiceRpcProxy("investments", service_config) as investments_rpc,
    ):
        yield SimpleNamespace(
            ventures=ventures, investments=investments_rpc, db=store.db, config=service_config
        )


def register(registry, body: dict, actor: dict = INVESTOR) -> dict:
    """A venture registered with the ventures service, once the investments service has
    it in its projection."""
    venture = registry.ventures.register_venture(json.dumps(body), actor)
    wait_until(
        lambda: registry.db.ventures.find_one({"_id": venture["id"]}) is not None,
        20,
        "the venture in the investments projection",
    )
    return venture


def record(registry, venture_id: str, flow: dict, actor: dict = INVESTOR) -> dict:
    return registry.investments.record_flow(venture_id, json.dumps(flow), actor)


def set_rates(registry):
    for currency, day, usd_per_unit in RATES:
        body = json.dumps({"usd_per_unit": usd_per_unit})
        registry.investments.set_fx_rate(currency, day, body, OPS)


def commitment(amount: str, currency="USD", partner="Indus Pharma (Pvt) Ltd") -> dict:
    return {
        "type": "commitment",
        "partner": partner,
        "amount": amount,
        "currency": currency,
        "value_date": "2025-01-15",
    }


def disbursement(amount: str, currency="USD", partner="Indus Pharma (Pvt) Ltd") -> dict:
    return {**commitment(amount, currency, partner), "type": "disbursement"}


def test_the_projection_follows_each_venture_in_sequence(registry):
    venture = register(registry, venture_a("Gwadar Vaccines JV"))
    projected = registry.db.ventures.find_one({"_id": venture["id"]})
    assert (projected["owner"], projected["status"], projected["sequence"]) == (
        OWNER,
        "registered",
        1,
    )
    partners = [
        dict(p, name="Karachi Biologics Ltd") if p["country"] == "PK" else p
        for p in venture["partners"]
    ]
    registry.ventures.update_venture(venture["id"], json.dumps({"partners": partners}), 1, OPS)
    registry.ventures.change_venture_status(
        venture["id"], json.dumps({"to": "dissolved", "reason": "partners parted"}), OPS
    )
    wait_until(
        lambda: registry.db.ventures.find_one({"_id": venture["id"]})["sequence"] == 3,
        20,
        "the dissolution in the projection",
    )
    projected = registry.db.ventures.find_one({"_id": venture["id"]})
    assert projected["status"] == "dissolved"
    assert {p["name"] for p in projected["partners"]} == {
        "Karachi Biologics Ltd",
        "Zhejiang Yangtze Pharmaceutical Co.",
    }
    with pytest.raises(Conflict) as caught:
        record(registry, venture["id"], commitment("10.00", partner="Karachi Biologics Ltd"))
    assert "dissolved" in caught.value.detail
    assert registry.db.flows.count_documents({}) == 0


def test_a_venture_the_projection_does_not_know_yet_is_not_found_there(registry):
    with pytest.raises(NotFound):
        record(registry, "jv_not_yet_projected", commitment("10.00"))
    assert registry.db.flows.count_documents({}) == 0


def test_concurrent_disbursements_never_exceed_the_commitment(registry):
    venture = register(registry, venture_a())
    record(registry, venture["id"], commitment("1000.00"))

    def disburse(_):
        # A proxy of its own: one proxy's reply queue is not shared between green threads.
        with ServiceRpcProxy("investments", registry.config) as proxy:
            body = json.dumps(disbursement("300.00"))
            try:
                proxy.record_flow(venture["id"], body, INVESTOR)
                return "recorded"
            except RuleViolated as error:
                return error.extra["excess"]

    outcomes = list(eventlet.GreenPool(12).imap(disburse, range(12)))
    # 3 x 300 fit in 1000; a fourth would exceed it by 200.00.
    assert outcomes.count("recorded") == 3
    assert sorted(set(outcomes) - {"recorded"}) == ["200.00"]
    balance = registry.db.balances.find_one({"venture_id": venture["id"]})
    assert (balance["committed"], balance["disbursed"]) == (Decimal("1000.00"), Decimal("900.00"))
    assert registry.db.flows.count_documents({"type": "disbursement"}) == 3
    assert registry.db.outbox.count_documents({"routing_key": "investment.recorded"}) == 4


def test_amounts_are_stored_as_decimal128(registry):
    venture = register(registry, venture_a())
    flow = record(registry, venture["id"], commitment("0.10"))
    raw = registry.db.flows.with_options(codec_options=CodecOptions(tz_aware=True))
    stored = raw.find_one({"_id": flow["id"]})
    assert stored["amount"] == Decimal128("0.10")
    assert flow["amount"] == "0.10"


def test_bad_input_records_nothing(registry):
    venture = register(registry, venture_a())
    record(registry, venture["id"], commitment("100.00"))
    with pytest.raises(InvalidInput):
        record(registry, venture["id"], {**commitment("100.00"), "amount": 100})
    with pytest.raises(InvalidInput):
        record(registry, venture["id"], commitment("100.00", partner="Someone Else"))
    with pytest.raises(RuleViolated):
        record(registry, venture["id"], disbursement("100.01"))
    assert registry.db.flows.count_documents({}) == 1
    assert registry.db.outbox.count_documents({}) == 1


def test_flows_are_listed_in_recording_order_with_filters(registry):
    venture = register(registry, venture_a())
    recorded = [
        record(registry, venture["id"], commitment("100.00")),
        record(registry, venture["id"], disbursement("40.00")),
        record(registry, venture["id"], commitment("50.00", currency="PKR")),
    ]
    listed = registry.investments.list_flows(venture["id"], {}, None, 10)
    assert [flow["id"] for flow in listed] == [flow["id"] for flow in recorded]
    after_first = registry.investments.list_flows(venture["id"], {}, recorded[0]["id"], 1)
    assert [flow["id"] for flow in after_first] == [recorded[1]["id"]]
    usd_commitments = registry.investments.list_flows(
        venture["id"], {"type": "commitment", "currency": "USD"}, None, 10
    )
    assert [flow["id"] for flow in usd_commitments] == [recorded[0]["id"]]
    with pytest.raises(InvalidInput) as caught:
        registry.investments.list_flows(venture["id"], {"type": "grant"}, None, 10)
    assert caught.value.errors[0]["loc"] == ["type"]


def test_reports_summed_by_the_wire_server_equal_the_hand_computed_figures(registry):
    a = register(registry, venture_a())
    b = register(registry, venture_b())
    someone_elses = register(
        registry, venture_a(), {**INVESTOR, "owner": "Karakoram Capital", "key_id": "key_2"}
    )
    set_rates(registry)
    for flow in FLOWS_A:
        record(registry, a["id"], flow)
    for flow in FLOWS_B:
        record(registry, b["id"], flow)
    record(registry, someone_elses["id"], commitment("100.00"))

    summary = registry.investments.venture_summary(a["id"], USD)
    assert {key: summary[key] for key in VENTURE_A_USD} == VENTURE_A_USD
    assert registry.investments.venture_summary(b["id"], USD)["total"] == VENTURE_B_TOTAL_USD

    for group_by, groups in PORTFOLIO_GROUPS.items():
        portfolio = registry.investments.portfolio_summary({**USD, "group_by": group_by}, OWNER)
        assert portfolio["groups"] == groups, group_by
        assert portfolio["total"] == PORTFOLIO_TOTAL_USD
        assert portfolio["monthly_disbursements"] == MONTHLY_DISBURSEMENTS_USD

    everyone = registry.investments.portfolio_summary(USD, None)
    assert everyone["total"]["committed"] == "5680600.00"  # 5680500.00 + 100.00


def test_the_service_folds_the_entries_flows_leave_pending(registry):
    """Each flow leaves a pending portfolio entry; the service's folder, woken by the
    commit, folds it into the portfolio's totals, and the report says the same before
    and after."""
    a = register(registry, venture_a())
    recorded = [record(registry, a["id"], commitment(f"{n}00.00")) for n in range(1, 4)]
    wait_until(
        lambda: registry.db[PORTFOLIO_PENDING].count_documents({}) == 0,
        20,
        "the pending entries folded",
    )
    by_sector = registry.db[PORTFOLIO_TOTALS].find_one({"view": "sector", "currency": "USD"})
    assert by_sector["group"] == venture_a()["sector"]
    assert by_sector["days"] == {"01-15": "3,600.00,,,,,"}
    assert len(recorded) == 3
    portfolio = registry.investments.portfolio_summary({**USD, "group_by": "sector"}, None)
    assert portfolio["groups"][0]["committed"] == "600.00"


def test_a_ventures_flows_follow_it_to_another_sector_in_the_portfolio(registry):
    """The ventures service changes the sector: the venture's event moves its totals, so
    the portfolio by sector files every flow under the sector the venture has now."""
    a = register(registry, venture_a())
    b = register(registry, venture_b())
    set_rates(registry)
    for flow in FLOWS_A:
        record(registry, a["id"], flow)
    for flow in FLOWS_B:
        record(registry, b["id"], flow)
    registry.ventures.update_venture(
        b["id"], json.dumps({"sector": "api_manufacturing", "province": "sindh"}), 1, INVESTOR
    )
    wait_until(
        lambda: registry.db.ventures.find_one({"_id": b["id"]})["sector"] == "api_manufacturing",
        20,
        "the new sector in the investments projection",
    )
    portfolio = registry.investments.portfolio_summary({**USD, "group_by": "sector"}, None)
    assert [group["group"] for group in portfolio["groups"]] == ["api_manufacturing"]
    assert {k: v for k, v in portfolio["groups"][0].items() if k != "group"} == (
        PORTFOLIO_TOTAL_USD
    )
    by_province = registry.investments.portfolio_summary({**USD, "group_by": "province"}, None)
    assert [group["group"] for group in by_province["groups"]] == ["khyber_pakhtunkhwa", "sindh"]
    assert by_province["groups"][1]["committed"] == PORTFOLIO_GROUPS["province"][1]["committed"]


def test_one_ventures_unconvertible_flows_do_not_break_anyones_report(registry):
    """A yen flow without a rate, and a flow dated 0001-01-01 written before dates were
    bounded, are reported as that venture's problems; every other figure is answered."""
    venture = register(registry, venture_a())
    other = register(
        registry, venture_b(), {**INVESTOR, "owner": "Karakoram Capital", "key_id": "key_2"}
    )
    record(registry, venture["id"], commitment("2500000", currency="JPY"))
    record(registry, other["id"], commitment("1000.00", partner="Lahore Formulations Ltd"))
    legacy = {**registry.db.flows.find_one({"venture_id": other["id"]}), "_id": "inv_legacy"}
    legacy.update(currency="PKR", value_date=datetime(1, 1, 1), amount=Decimal128("5.00"))
    registry.db.flows.insert_one(legacy)
    # Written beside the service, as before the report totals existed: built from the
    # flows as a start on a database without them builds them.
    InvestmentStore(registry.db.client, registry.db).build_report_totals()

    everyone = registry.investments.portfolio_summary({**USD, "group_by": "sector"}, None)
    assert everyone["total"]["committed"] == "1000.00"  # the USD commitment; nothing guessed
    assert [(p["venture_id"], p["currency"], p["date"]) for p in everyone["problems"]] == sorted(
        [(venture["id"], "JPY", "2025-01-15"), (other["id"], "PKR", "0001-01-01")]
    )
    jpy = next(p for p in everyone["problems"] if p["currency"] == "JPY")
    assert jpy["missing_rates"] == [{"currency": "JPY", "date": "2025-01-15"}]
    # An investor's portfolio names only its own ventures' problems.
    own = registry.investments.portfolio_summary(USD, OWNER)
    assert [p["venture_id"] for p in own["problems"]] == [venture["id"]]
    assert own["total"]["committed"] == "0.00"

    summary = registry.investments.venture_summary(venture["id"], USD)
    assert summary["total"]["committed"] == "0.00"
    assert [(p["venture_id"], p["currency"], p["date"]) for p in summary["problems"]] == [
        (venture["id"], "JPY", "2025-01-15")
    ]
    assert summary["by_currency"] == [
        {"currency": "JPY", "original": summary["by_currency"][0]["original"], "converted": None}
    ]
    assert summary["by_currency"][0]["original"]["committed"] == "2500000"
    in_yen = registry.investments.venture_summary(venture["id"], {"currency": "JPY"})
    assert in_yen["total"]["committed"] == "2500000"
    with pytest.raises(InvalidInput) as caught:
        registry.investments.venture_summary(venture["id"], {"currency": "YEN"})
    assert caught.value.errors[0]["loc"] == ["currency"]


def test_flows_and_rates_are_published_as_events(registry):
    venture = register(registry, venture_a())
    flow = record(registry, venture["id"], commitment("100.00"))
    rate = json.dumps({"usd_per_unit": "0.0036"})
    first = registry.investments.set_fx_rate("PKR", "2025-01-31", rate, OPS)
    again = registry.investments.set_fx_rate("PKR", "2025-01-31", rate, OPS)
    changed = registry.investments.set_fx_rate(
        "PKR", "2025-01-31", json.dumps({"usd_per_unit": "0.00358"}), OPS
    )
    assert (first["changed"], again["changed"], changed["changed"]) == (True, False, True)
    assert changed["fx_rate"]["version"] == 2

    log = registry.db.event_log
    wait_until(lambda: log.count_documents({}) == 3, 20, "three events in the event log")
    recorded = log.find_one({"type": "jvreg.investment.recorded"})
    assert (recorded["subject"], recorded["sequence"]) == (flow["id"], 1)
    assert recorded["data"]["investment"]["amount"] == "100.00"
    rates = list(log.find({"type": "jvreg.fx_rate.set"}).sort("sequence", 1))
    assert [(e["subject"], e["sequence"]) for e in rates] == [
        ("fx:PKR:2025-01-31", 1),
        ("fx:PKR:2025-01-31", 2),
    ]
    assert rates[1]["data"]["change"]["from"] == "0.0036"
    assert rates[1]["data"]["change"]["to"] == "0.00358"
