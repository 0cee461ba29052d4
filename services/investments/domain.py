"""Investment flows after the IATI transaction model, and the rule that a partner never
disburses more than it committed. Pure rules over the contract's models; no I/O."""

import json
from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, ValidationError

from services.investments.contract import (
    COMMITMENT,
    DISBURSEMENT,
    Flow,
    FxRate,
    FxRateKey,
    FxRateSet,
    InvestmentRecorded,
    RecordFlow,
    SetFxRate,
)
from services.investments.currencies import decimals_of
from shared.contract import Actor
from shared.errors import Conflict, NotFound, RuleViolated, field_error, invalid_input, validated
from shared.input_types import confusable_key

# What the domain decides: a flow or a day's rate, and the event that tells of it.
FlowDecision = tuple[Flow, InvestmentRecorded]
RateDecision = tuple[FxRate, FxRateSet]


class PartnerView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    country: str
    kind: str | None = None  # read by exports (the IATI organisation type)


class VentureView(BaseModel):
    """What the investments service knows of a venture: its projection of `ventures.events`."""

    model_config = ConfigDict(extra="ignore")

    id: str
    owner: str
    name: str
    sector: str
    province: str
    status: str
    partners: list[PartnerView]


def partner_key(name: str) -> str:
    """The partner part of a balance's id: case-insensitive, ignoring runs of spaces.
    (Stored in balance ids, so it stays as it was; lookups use `confusable_key`.)"""
    return " ".join(name.split()).casefold()


def find_partner(venture: VentureView, name: str) -> PartnerView:
    """The partner `name` looks like; a venture's partners never look alike."""
    for partner in venture.partners:
        if confusable_key(partner.name) == confusable_key(name):
            return partner
    known = ", ".join(partner.name for partner in venture.partners)
    raise field_error(
        ["partner"],
        f"{name!r} is not a partner of venture {venture.id}; its partners are: {known}",
        "unknown_partner",
    )


def check_accepts_flows(venture: VentureView) -> None:
    if venture.status == "dissolved":
        raise Conflict(
            f"venture {venture.id} is dissolved; no further flows can be recorded",
            extra={"current": "dissolved"},
        )


def new_flow(
    venture: VentureView, command: RecordFlow, flow_id: str, actor: dict, now: datetime
) -> Flow:
    """The flow to record on `venture`, its amount written to the currency's minor unit."""
    check_accepts_flows(venture)
    partner = find_partner(venture, command.partner)
    exponent = Decimal(1).scaleb(-decimals_of(command.currency))
    return Flow(
        **command.model_dump(exclude={"partner", "amount"}),
        id=flow_id,
        venture_id=venture.id,
        partner=partner.name,
        partner_country=partner.country,
        amount=command.amount.quantize(exponent),
        recorded_at=now,
        recorded_by=Actor.model_validate(actor),
    )


def record(
    venture: VentureView | None,
    venture_id: str,
    command: RecordFlow,
    flow_id: str,
    actor: dict,
    now: datetime,
) -> FlowDecision:
    """The flow to record on the venture as the projection has it now, and its event."""
    if venture is None:
        raise NotFound(f"the investments service knows no venture {venture_id}")
    flow = new_flow(venture, command, flow_id, actor, now)
    change = {"reason": "recorded", "actor": flow.recorded_by}
    return flow, InvestmentRecorded(investment=flow, change=change)


class Balance(BaseModel):
    """Cumulative (net) commitments and disbursements of one partner of one venture in
    one currency. `version` guards against two writers deciding on the same balance."""

    committed: Decimal = Decimal(0)
    disbursed: Decimal = Decimal(0)
    version: int = 0


def counts_against_commitments(flow_type: str) -> bool:
    return flow_type in (COMMITMENT, DISBURSEMENT)


def apply_to_balance(balance: Balance, flow: Flow) -> Balance:
    """The balance after `flow`, which must leave disbursements within commitments: a
    disbursement beyond them, or a reduction below what was already disbursed, is refused."""
    committed = balance.committed + (flow.amount if flow.type == COMMITMENT else 0)
    disbursed = balance.disbursed + (flow.amount if flow.type == DISBURSEMENT else 0)
    excess = disbursed - committed
    if excess > 0:
        if flow.type == DISBURSEMENT:
            what = "this disbursement would take disbursements beyond commitments"
        elif disbursed > 0:
            what = "this reduction would take commitments below what was already disbursed"
        else:
            what = "this reduction would take commitments below zero"
        raise RuleViolated(
            f"{what} of {flow.partner} in {flow.currency} by {excess} {flow.currency} "
            f"(net committed {committed}, disbursed {disbursed} including this flow)",
            errors=[
                {
                    "loc": ["amount"],
                    "msg": f"exceeds commitments by {excess} {flow.currency}",
                    "type": "disbursed_exceeds_committed",
                }
            ],
            extra={
                "currency": flow.currency,
                "excess": str(excess),
                "committed": str(committed),
                "disbursed": str(disbursed),
            },
        )
    return Balance(committed=committed, disbursed=disbursed, version=balance.version + 1)


def parse_flow(body: str, today: date | None = None) -> RecordFlow:
    try:
        return RecordFlow.model_validate_json(body, context={"today": today})
    except ValidationError as error:
        raise invalid_input(error) from None


def set_rate(
    key: FxRateKey, command: SetFxRate, current: FxRate | None, actor: dict, now: datetime
) -> RateDecision | None:
    """The day's rate as `command` sets it, and its event; None when it already has
    that value (setting it again changes nothing and publishes nothing)."""
    if current and current.usd_per_unit == command.usd_per_unit:
        return None
    rate = FxRate(
        currency=key.currency,
        date=key.date,
        usd_per_unit=command.usd_per_unit,
        version=current.version + 1 if current else 1,
        set_at=now,
        set_by=Actor.model_validate(actor),
    )
    change = {
        "from": str(current.usd_per_unit) if current else None,
        "to": str(rate.usd_per_unit),
        "actor": actor,
    }
    return rate, FxRateSet(fx_rate=rate, change=change)


def parse_fx_rate(
    currency: str, day: str, body: str, today: date | None = None
) -> tuple[FxRateKey, SetFxRate]:
    """The rate's key (errors name `currency`, `date`) and its new value."""
    try:
        key = FxRateKey.model_validate_json(
            json.dumps({"currency": currency, "date": day}), context={"today": today}
        )
    except ValidationError as error:
        raise invalid_input(error) from None
    return key, validated(SetFxRate, body)
