"""Investment flows after the IATI transaction model, the exchange rates that convert
them, and the rule that a partner never disburses more than it committed.
Pure rules over pydantic models; no I/O."""

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from services.investments.currencies import currency_codes, minor_units
from shared.errors import Conflict, RuleViolated, field_error, invalid_input, validated
from shared.input_types import PartyName, PastDate, confusable_key

FlowType = Literal[
    "commitment",
    "disbursement",
    "equity_purchase",
    "equity_sale",
    "loan",
    "loan_repayment",
]
FLOW_TYPES: tuple[str, ...] = FlowType.__args__
COMMITMENT, DISBURSEMENT = "commitment", "disbursement"
USD = "USD"

# Amounts up to 10^15 with at most 4 decimals (the largest ISO 4217 minor unit): sums of
# even a billion of them stay within Decimal128's 34 digits, so MongoDB adds them exactly.
MAX_INTEGER_DIGITS = 15
MAX_RATE_DECIMALS = 12
PLAIN_DECIMAL = re.compile(r"[+-]?(?P<integer>\d+)(?:\.\d+)?")
DECIMAL_STRING_SCHEMA = {
    "type": "string",
    "pattern": r"^[+-]?\d+(\.\d+)?$",
    "description": "a decimal string; JSON numbers are refused because they lose exactness",
}


def parse_decimal_string(value: Any) -> Decimal:
    """An exact decimal from a JSON string such as "1250000.00". A JSON number is refused:
    1e3 or 0.1 may already have been rounded by whoever wrote it."""
    if not isinstance(value, str):
        raise ValueError('must be a decimal string such as "1250000.00", not a JSON number')
    match = PLAIN_DECIMAL.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            'must be a plain decimal such as "1250000.00": digits, an optional sign and '
            "decimal point, no exponent"
        )
    if len(match["integer"].lstrip("0")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"must be less than 10^{MAX_INTEGER_DIGITS}")
    return Decimal(value.strip())


DecimalString = Annotated[
    Decimal, BeforeValidator(parse_decimal_string), WithJsonSchema(DECIMAL_STRING_SCHEMA)
]


def decimals(value: Decimal) -> int:
    """How many decimal places `value` was written with ("1.50" has 2)."""
    return max(0, -value.as_tuple().exponent)


def known_currency(code: str) -> str:
    if minor_units(code) is None:
        raise ValueError(
            f"{code!r} is not an ISO 4217 currency code (three capitals, e.g. PKR, CNY, USD)"
        )
    return code


Currency = Annotated[
    str,
    AfterValidator(known_currency),
    # The codes themselves, not just their shape: "AAA" is three capitals and no currency.
    WithJsonSchema(
        {"type": "string", "enum": currency_codes(), "description": "ISO 4217, e.g. PKR, CNY"}
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordFlow(Strict):
    """A flow as a partner reports it. Field order matters: `amount` is checked against
    the `type` and `currency` validated before it."""

    type: FlowType = Field(description="IATI transaction type")
    partner: PartyName = Field(description="the partner's name, as registered on the venture")
    currency: Currency
    amount: DecimalString = Field(
        description="in `currency`, at most its minor-unit decimals; negative only for a "
        "commitment (a reduction or cancellation)"
    )
    value_date: PastDate = Field(description="the day the money moved or was committed")
    reference: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = (
        None
    )
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None

    @field_validator("amount")
    @classmethod
    def amount_fits_type_and_currency(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        if amount == 0:
            raise ValueError("must not be zero")
        flow_type = info.data.get("type")
        if amount < 0 and flow_type is not None and flow_type != COMMITMENT:
            raise ValueError(
                f"must be positive for a {flow_type}; only a commitment may be negative "
                "(a reduction or cancellation)"
            )
        currency = info.data.get("currency")
        if currency is not None and decimals(amount) > minor_units(currency):
            raise ValueError(
                f"{currency} amounts have at most {minor_units(currency)} decimal place(s) "
                f"(ISO 4217 minor unit), not {decimals(amount)}"
            )
        return amount


class Actor(BaseModel):
    key_id: str
    role: str
    owner: str


class Flow(BaseModel):
    """A recorded flow. Flows are never changed: a correction is a further flow."""

    id: str
    venture_id: str
    type: FlowType
    partner: str
    partner_country: str = Field(description="the partner's ISO 3166-1 country")
    currency: str
    amount: Decimal = Field(description="a decimal string, to the currency's minor unit")
    value_date: date
    reference: str | None = None
    note: str | None = None
    recorded_at: datetime
    recorded_by: Actor


class PartnerView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    country: str


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
        ["body", "partner"],
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
    exponent = Decimal(1).scaleb(-minor_units(command.currency))
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
                    "loc": ["body", "amount"],
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


class FlowFilters(Strict):
    """Query parameters of a venture's flow list."""

    type: FlowType | None = None
    currency: Currency | None = None


# --- exchange rates ---------------------------------------------------------------------


class FxRateKey(Strict):
    """The currency and day a rate is set for, from the path."""

    currency: Currency
    date: PastDate

    @field_validator("currency")
    @classmethod
    def not_usd(cls, currency: str) -> str:
        if currency == USD:
            raise ValueError("USD is the unit of every rate: its usd_per_unit is 1 by definition")
        return currency

    @property
    def id(self) -> str:
        return f"fx:{self.currency}:{self.date.isoformat()}"


class SetFxRate(Strict):
    usd_per_unit: DecimalString = Field(
        description="US dollars for one unit of the currency, e.g. 0.0035714 for PKR"
    )

    @field_validator("usd_per_unit")
    @classmethod
    def positive_and_precise_enough(cls, rate: Decimal) -> Decimal:
        if rate <= 0:
            raise ValueError("must be greater than zero")
        if decimals(rate) > MAX_RATE_DECIMALS:
            raise ValueError(f"may have at most {MAX_RATE_DECIMALS} decimal places")
        return rate


class FxRate(BaseModel):
    currency: str
    date: date
    usd_per_unit: Decimal
    version: int = Field(ge=1, description="+1 each time the rate of this day is changed")
    set_at: datetime
    set_by: Actor


def parse_fx_rate(currency: str, day: str, body: str, today: date | None = None):
    """The rate's key (errors name `path.currency`, `path.date`) and its new value."""
    try:
        key = FxRateKey.model_validate_json(
            json.dumps({"currency": currency, "date": day}), context={"today": today}
        )
    except ValidationError as error:
        raise invalid_input(error) from None
    return key, validated(SetFxRate, body)


# --- report queries ---------------------------------------------------------------------

GroupBy = Literal["sector", "province", "partner_country"]


class SummaryQuery(Strict):
    currency: Currency = USD


class PortfolioQuery(SummaryQuery):
    group_by: GroupBy | None = None
