"""The rules of flows exports without a database: which value dates a page takes, text
cells a spreadsheet would run, and which way each IATI transaction's money goes."""

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

from services.investments import exports
from services.investments.contract import (
    EXPORT_COLUMNS,
    EXPORT_CSV_EXAMPLE,
    FLOW_EXAMPLE,
    IATI_EXAMPLE,
    Flow,
)
from services.investments.domain import VentureView
from services.ventures.contract import VENTURE_EXAMPLE

DAYS = [(date(2025, 1, 1), 3), (date(2025, 1, 2), 5), (date(2025, 1, 3), 1)]
VENTURE = VentureView.model_validate(
    {
        "id": "jv_rules",
        "owner": "Owner",
        "name": "Indus-Yangtze API Works",
        "sector": "telemedicine",
        "province": "khyber_pakhtunkhwa",
        "status": "dissolved",
        "partners": [
            {"name": "Indus Pharma (Pvt) Ltd", "country": "PK", "kind": "government_body"},
            {"name": "Zhejiang Yangtze", "country": "CN"},
        ],
    }
)


def flow(flow_type: str, amount: str = "10.00", partner: str = "Indus Pharma (Pvt) Ltd") -> Flow:
    return Flow(
        id="inv_rules",
        venture_id=VENTURE.id,
        type=flow_type,
        partner=partner,
        partner_country="PK",
        currency="PKR",
        amount=Decimal(amount),
        value_date=date(2025, 1, 2),
        recorded_at=datetime(2025, 1, 3, tzinfo=UTC),
        recorded_by={"key_id": "key_x", "role": "investor", "owner": "Owner"},
    )


def test_a_page_takes_whole_days_that_fit_from_its_start():
    assert exports.days_of_page(DAYS, None, 8, page_empty=True) == (
        [date(2025, 1, 1), date(2025, 1, 2)],
        date(2025, 1, 3),
    )
    assert exports.days_of_page(DAYS, date(2025, 1, 2), 10, page_empty=True) == (
        [date(2025, 1, 2), date(2025, 1, 3)],
        None,
    )


def test_a_day_larger_than_a_page_is_taken_whole_only_by_an_empty_page():
    assert exports.days_of_page(DAYS, date(2025, 1, 2), 2, page_empty=True) == (
        [date(2025, 1, 2)],
        date(2025, 1, 3),
    )
    assert exports.days_of_page(DAYS, date(2025, 1, 2), 2, page_empty=False) == (
        [],
        date(2025, 1, 2),
    )


def test_positions_read_back():
    for index, day in ((0, None), (3, date(2025, 1, 2))):
        assert exports.parse_position(exports.position(index, day)) == (index, day)
    assert exports.parse_position(None) == (0, None)


def test_text_a_spreadsheet_would_run_is_written_as_text_but_amounts_are_not():
    row = exports.csv_row(flow("commitment", "-5.00", partner="=HYPERLINK(1)"), VENTURE)
    assert row[5] == "'=HYPERLINK(1)"
    assert row[8] == "-5.00"


def test_the_money_of_a_repayment_and_a_sale_goes_to_the_partner():
    repaid = exports.transaction(flow("loan_repayment"), VENTURE)
    assert repaid["provider-org"]["activity-id"] == "PK-JVREG-jv_rules"
    assert repaid["receiver-org"] == {
        "type": "10",
        "narrative": [{"text": "Indus Pharma (Pvt) Ltd"}],
    }
    sold = exports.transaction(flow("equity_sale"), VENTURE)
    assert "provider-org" not in sold and sold["finance-type"] == {"code": "510"}
    disbursed = exports.transaction(flow("disbursement"), VENTURE)
    assert disbursed["provider-org"]["narrative"] == [{"text": "Indus Pharma (Pvt) Ltd"}]
    assert "finance-type" not in disbursed


def test_an_activity_names_its_status_sector_and_place():
    activity = exports.activity(VENTURE)
    assert activity["activity-status"] == {"code": "4"}  # dissolved: closed
    assert activity["sector"][0] == {"vocabulary": "1", "code": "12191", "percentage": "100"}
    assert activity["location"] == [{"name": {"narrative": [{"text": "Khyber Pakhtunkhwa"}]}}]
    # A partner of no known kind has no organisation type.
    assert "type" not in activity["participating-org"][1]


def test_the_contracts_examples_are_what_the_exports_write():
    venture = VentureView.model_validate(VENTURE_EXAMPLE)
    flow = Flow.model_validate(FLOW_EXAMPLE)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([EXPORT_COLUMNS, exports.csv_row(flow, venture)])
    assert buffer.getvalue() == EXPORT_CSV_EXAMPLE
    [activity] = IATI_EXAMPLE["iati-activities"]
    assert activity == {
        **exports.activity(venture),
        "transaction": [exports.transaction(flow, venture)],
    }
