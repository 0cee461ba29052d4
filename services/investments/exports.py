"""Exports of investment flows (docs/investments.md, "Exports"): which value dates of
which ventures a page holds, a flow as a CSV row, and the IATI mapping of a venture (an
activity) and of its flows (transactions). Pure rules over the contract's models."""

from collections.abc import Sequence
from datetime import date
from typing import Any

from services.investments.contract import Flow
from services.investments.domain import VentureView
from shared.codec import rfc3339
from shared.spreadsheet import text_cell

# The registry as the reporting organisation of the activities it publishes: a
# government register (type 10) republishing what the partners report to it, so a
# secondary reporter. The ref is the registry's own until it registers an IATI
# organisation identifier.
REPORTING_ORG = {
    "ref": "PK-JVREG",
    "type": "10",
    "secondary-reporter": "1",
    "narrative": [{"text": "JV Pharma Registry", "lang": "en"}],
}
# IATI TransactionType, seen from the partner, who provides the money (provider-org)
# to the venture (receiver-org): a commitment is its firm obligation to provide funds
# (2), a disbursement and a loan paid out are funds placed at the venture's disposal
# (3; the loan told apart by its finance type), equity bought or sold is 8 or 9, and a
# loan repaid by the venture to the partner is 6. Incoming funds (1) would be the same
# money seen from the venture, counted twice; the registry records no expenditure (4).
TRANSACTION_TYPES = {
    "commitment": "2",
    "disbursement": "3",
    "loan": "3",
    "equity_purchase": "8",
    "equity_sale": "9",
    "loan_repayment": "6",
}
# IATI FinanceType of the flows whose instrument is known: standard loan, common equity.
FINANCE_TYPES = {
    "loan": "421",
    "loan_repayment": "421",
    "equity_purchase": "510",
    "equity_sale": "510",
}
# Flows whose money goes to the partner: the venture repays a loan (provider-org the
# venture); an equity sale's buyer is not recorded (no provider-org).
TO_PARTNER = {"loan_repayment", "equity_sale"}
# IATI ActivityStatus of a venture's status.
ACTIVITY_STATUS = {"registered": "1", "active": "2", "suspended": "6", "dissolved": "4"}
# IATI OrganisationType of a partner's kind.
ORGANISATION_TYPES = {
    "private_company": "70",
    "state_owned_enterprise": "15",
    "government_body": "10",
    "investment_fund": "70",
    "research_institute": "80",
}
FUNDING, IMPLEMENTING = "1", "4"
# OECD DAC CRS purpose codes (IATI sector vocabulary 1): 32168 "Pharmaceutical
# production" covers drugs, vaccines and medical equipment; 12191 "Medical services".
DAC_SECTORS = {
    "api_manufacturing": "32168",
    "finished_formulations": "32168",
    "medical_devices": "32168",
    "biologics_vaccines": "32168",
    "traditional_chinese_medicine": "32168",
    "telemedicine": "12191",
}
DAC_VOCABULARY, OWN_VOCABULARY = "1", "99"


# --- pages ------------------------------------------------------------------------------


def position(venture_index: int, day: date | None) -> str:
    """Where a page starts: the `venture_index`-th venture asked for, at `day` (None: its
    first day, and its activity not yet written)."""
    return f"{venture_index}" if day is None else f"{venture_index}:{day.isoformat()}"


def parse_position(text: str | None) -> tuple[int, date | None]:
    if not text:
        return 0, None
    index, _, day = text.partition(":")
    return int(index), date.fromisoformat(day) if day else None


def days_of_page(
    days: Sequence[tuple[date, int]], start: date | None, room: int, page_empty: bool
) -> tuple[list[date], date | None]:
    """Of a venture's (value date, flows) in date order, from `start` on: the days that
    fit in `room` flows, and the first day left over (None when none is). Days are
    never split, so an empty page takes its first day whatever it holds."""
    taken: list[date] = []
    for day, count in days:
        if start is not None and day < start:
            continue
        if count > room and (taken or not page_empty):
            return taken, day
        taken.append(day)
        room -= count
    return taken, None


# --- CSV --------------------------------------------------------------------------------


def csv_row(flow: Flow, venture: VentureView) -> list[str]:
    """A flow as the row of `contract.EXPORT_COLUMNS`; the amount exactly as recorded,
    to its currency's minor unit; text a spreadsheet would run written as text."""
    return [
        flow.venture_id,
        text_cell(venture.name),
        flow.id,
        flow.type,
        TRANSACTION_TYPES[flow.type],
        text_cell(flow.partner),
        flow.partner_country,
        flow.currency,
        format(flow.amount, "f"),
        flow.value_date.isoformat(),
        text_cell(flow.reference),
        text_cell(flow.note),
        rfc3339(flow.recorded_at),
        flow.recorded_by.role,
        text_cell(flow.recorded_by.owner),
    ]


# --- IATI -------------------------------------------------------------------------------


def narrative(text: str) -> dict[str, Any]:
    return {"narrative": [{"text": text}]}


def organisation(name: str, kind: str | None, **attributes: str) -> dict[str, Any]:
    """A participating, provider or receiver organisation: its IATI type when its kind
    maps to one, and its name."""
    known = ORGANISATION_TYPES.get(kind or "")
    return {**attributes, **({"type": known} if known else {}), **narrative(name)}


def iati_identifier(venture_id: str) -> str:
    return f"{REPORTING_ORG['ref']}-{venture_id}"


def activity(venture: VentureView) -> dict[str, Any]:
    """The venture as an IATI activity, without its transactions: its partners fund it,
    the venture implements it, in Pakistan (its province as the location)."""
    partners = [organisation(p.name, p.kind, role=FUNDING) for p in venture.partners]
    implementer = organisation(
        venture.name,
        "private_company",
        role=IMPLEMENTING,
        **{"activity-id": iati_identifier(venture.id)},
    )
    sectors = [{"vocabulary": OWN_VOCABULARY, "code": venture.sector, "percentage": "100"}]
    if dac := DAC_SECTORS.get(venture.sector):
        sectors.insert(0, {"vocabulary": DAC_VOCABULARY, "code": dac, "percentage": "100"})
    return {
        "iati-identifier": iati_identifier(venture.id),
        "reporting-org": REPORTING_ORG,
        "title": narrative(venture.name),
        "participating-org": [*partners, implementer],
        "activity-status": {"code": ACTIVITY_STATUS[venture.status]},
        "recipient-country": [{"code": "PK", "percentage": "100"}],
        "location": [{"name": narrative(venture.province.replace("_", " ").title())}],
        "sector": sectors,
    }


def transaction(flow: Flow, venture: VentureView) -> dict[str, Any]:
    """A flow as an IATI transaction of its venture's activity."""
    kinds = {partner.name: partner.kind for partner in venture.partners}
    partner = organisation(flow.partner, kinds.get(flow.partner))
    the_venture = organisation(
        venture.name, "private_company", **{"activity-id": iati_identifier(venture.id)}
    )
    if flow.type in TO_PARTNER:
        parties = {"receiver-org": partner}
        if flow.type == "loan_repayment":
            parties["provider-org"] = the_venture
    else:
        parties = {"provider-org": partner, "receiver-org": the_venture}
    found: dict[str, Any] = {
        "ref": flow.id,
        "transaction-type": {"code": TRANSACTION_TYPES[flow.type]},
        "transaction-date": {"iso-date": flow.value_date.isoformat()},
        "value": {
            "currency": flow.currency,
            "value-date": flow.value_date.isoformat(),
            "amount": format(flow.amount, "f"),
        },
        **parties,
    }
    if texts := [text for text in (flow.reference, flow.note) if text]:
        found["description"] = {"narrative": [{"text": text} for text in texts]}
    if finance := FINANCE_TYPES.get(flow.type):
        found["finance-type"] = {"code": finance}
    return found
