"""The investments service's wire contract: the flows partners record and the rates ops
sets, the reports it answers, the events it publishes to `investments.events`, and what
it consumes (every venture event, for each venture's partners and status). Wire models
only; the rules (balances, conversion) live in `domain.py` and `reports.py`."""

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from services.investments.currencies import currency_codes, decimals_of, minor_units
from services.ventures import contract as ventures
from shared.contract import Actor, Change, EventPayload, Strict, Subscription, events_of
from shared.input_types import PartyName, PastDate

SERVICE = "investments"

FlowType = Literal[
    "commitment",
    "disbursement",
    "equity_purchase",
    "equity_sale",
    "loan",
    "loan_repayment",
]
FLOW_TYPES: tuple[str, ...] = get_args(FlowType)
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
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0  # NaN and infinity: none


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


OPS: dict[str, Any] = {"key_id": "key_0psB", "role": "ops", "owner": "jvreg operations"}
FLOW_EXAMPLE: dict[str, Any] = {
    "id": "inv_6653c2f6d9a4b15e3f405162",
    "venture_id": ventures.VENTURE_EXAMPLE["id"],
    "type": "disbursement",
    "partner": "Indus Pharma (Pvt) Ltd",
    "partner_country": "PK",
    "currency": "PKR",
    "amount": "123456789.55",
    "value_date": "2025-02-10",
    "reference": "HBL transfer 2025-0210-77",
    "note": "first tranche for the Rashakai API plant",
    "recorded_at": "2025-02-11T05:20:00.000Z",
    "recorded_by": ventures.INVESTOR,
}
FX_RATE_EXAMPLE: dict[str, Any] = {
    "currency": "PKR",
    "date": "2025-03-01",
    "usd_per_unit": "0.00357",
    "version": 2,
    "set_at": "2025-03-01T04:00:00.000Z",
    "set_by": OPS,
}
USD_ROUNDING = (
    "half to even (banker's rounding) to 2 decimal place(s), the ISO 4217 minor unit of "
    "USD, applied once to each exact figure"
)
# A venture's flows in PKR and CNY, as the reports sum them (tests/investment_scenario.py).
VENTURE_SUMMARY_EXAMPLE: dict[str, Any] = {
    "venture_id": "jv_6650f1c2a9d3e81b2c4d5e6f",
    "currency": "USD",
    "rounding": USD_ROUNDING,
    "total": {
        "committed": "3892500.00",
        "disbursed": "1717094.44",
        "outstanding": "2175405.56",
        "disbursement_ratio": "0.4411",
        "equity_purchases": "35700.00",
        "equity_sales": "0.00",
        "loans": "169753.08",
        "loan_repayments": "0.00",
    },
    "by_partner": [
        {
            "partner": "Indus Pharma (Pvt) Ltd",
            "country": "PK",
            "committed": "1800000.00",
            "disbursed": "605094.44",
            "outstanding": "1194905.56",
            "disbursement_ratio": "0.3362",
            "equity_purchases": "35700.00",
            "equity_sales": "0.00",
            "loans": "0.00",
            "loan_repayments": "0.00",
        },
        {
            "partner": "Zhejiang Yangtze Pharmaceutical Co.",
            "country": "CN",
            "committed": "2092500.00",
            "disbursed": "1112000.00",
            "outstanding": "980500.00",
            "disbursement_ratio": "0.5314",
            "equity_purchases": "0.00",
            "equity_sales": "0.00",
            "loans": "169753.08",
            "loan_repayments": "0.00",
        },
    ],
    "by_currency": [
        {
            "currency": "CNY",
            "original": {
                "committed": "15000000.00",
                "disbursed": "8000000.00",
                "outstanding": "7000000.00",
                "disbursement_ratio": "0.5333",
                "equity_purchases": "0.00",
                "equity_sales": "0.00",
                "loans": "1234567.89",
                "loan_repayments": "0.00",
            },
            "converted": {
                "committed": "2092500.00",
                "disbursed": "1112000.00",
                "outstanding": "980500.00",
                "disbursement_ratio": "0.5314",
                "equity_purchases": "0.00",
                "equity_sales": "0.00",
                "loans": "169753.08",
                "loan_repayments": "0.00",
            },
        },
        {
            "currency": "PKR",
            "original": {
                "committed": "500000000.00",
                "disbursed": "168456789.80",
                "outstanding": "331543210.20",
                "disbursement_ratio": "0.3369",
                "equity_purchases": "10000000.00",
                "equity_sales": "0.00",
                "loans": "0.00",
                "loan_repayments": "0.00",
            },
            "converted": {
                "committed": "1800000.00",
                "disbursed": "605094.44",
                "outstanding": "1194905.56",
                "disbursement_ratio": "0.3362",
                "equity_purchases": "35700.00",
                "equity_sales": "0.00",
                "loans": "0.00",
                "loan_repayments": "0.00",
            },
        },
    ],
    "problems": [],
}
PORTFOLIO_SUMMARY_EXAMPLE: dict[str, Any] = {
    "currency": "USD",
    "group_by": "sector",
    "rounding": USD_ROUNDING,
    "total": {
        "committed": "5680500.00",
        "disbursed": "2131539.58",
        "outstanding": "3548960.42",
        "disbursement_ratio": "0.3752",
        "equity_purchases": "35700.00",
        "equity_sales": "3570.00",
        "loans": "211003.08",
        "loan_repayments": "6875.00",
    },
    "groups": [
        {
            "group": "api_manufacturing",
            "committed": "4892500.00",
            "disbursed": "1967095.19",
            "outstanding": "2925404.81",
            "disbursement_ratio": "0.4021",
            "equity_purchases": "35700.00",
            "equity_sales": "0.00",
            "loans": "169753.08",
            "loan_repayments": "0.00",
        },
        {
            "group": "finished_formulations",
            "committed": "788000.00",
            "disbursed": "164444.38",
            "outstanding": "623555.62",
            "disbursement_ratio": "0.2087",
            "equity_purchases": "0.00",
            "equity_sales": "3570.00",
            "loans": "41250.00",
            "loan_repayments": "6875.00",
        },
    ],
    "monthly_disbursements": [
        {"month": "2025-02", "disbursed": "488888.83"},
        {"month": "2025-03", "disbursed": "1272650.00"},
        {"month": "2025-04", "disbursed": "250000.75"},
        {"month": "2025-05", "disbursed": "0.00"},
        {"month": "2025-06", "disbursed": "120000.00"},
    ],
    "problems": [],
}


class RecordFlow(Strict):
    """A flow as a partner reports it. Field order matters: `amount` is checked against
    the `type` and `currency` validated before it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    field: FLOW_EXAMPLE[field]
                    for field in (
                        "type",
                        "partner",
                        "currency",
                        "amount",
                        "value_date",
                        "reference",
                        "note",
                    )
                }
            ]
        }
    )

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
        if currency is not None and decimals(amount) > decimals_of(currency):
            raise ValueError(
                f"{currency} amounts have at most {decimals_of(currency)} decimal place(s) "
                f"(ISO 4217 minor unit), not {decimals(amount)}"
            )
        return amount


class Flow(BaseModel):
    """A recorded flow. Flows are never changed: a correction is a further flow."""

    model_config = ConfigDict(json_schema_extra={"examples": [FLOW_EXAMPLE]})

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


class FlowFilters(Strict):
    """Query parameters of a venture's flow list."""

    type: FlowType | None = None
    currency: Currency | None = None


# --- exchange rates ---------------------------------------------------------------------


def fx_rate_id(currency: str, day: date) -> str:
    """One rate per currency and day: the id of its document, and its events' subject."""
    return f"fx:{currency}:{day.isoformat()}"


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
        return fx_rate_id(self.currency, self.date)


class SetFxRate(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"usd_per_unit": FX_RATE_EXAMPLE["usd_per_unit"]}]}
    )

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
    model_config = ConfigDict(json_schema_extra={"examples": [FX_RATE_EXAMPLE]})

    currency: str
    date: date
    usd_per_unit: Decimal
    version: int = Field(ge=1, description="+1 each time the rate of this day is changed")
    set_at: datetime
    set_by: Actor


# --- reports ----------------------------------------------------------------------------

GroupBy = Literal["sector", "province", "partner_country"]


class SummaryQuery(Strict):
    currency: Currency = USD


class PortfolioQuery(SummaryQuery):
    group_by: GroupBy | None = None


class MissingRate(BaseModel):
    currency: str
    date: str = Field(description="a rate set for this day or any earlier one would do")


class ConversionProblem(BaseModel):
    """Flows of one venture that no figure in the reporting currency includes."""

    type: str = Field("missing_fx_rate", description="why they could not be converted")
    venture_id: str
    currency: str = Field(description="the currency the flows were recorded in")
    date: str = Field(description="the earliest value date of those flows")
    missing_rates: list[MissingRate] = Field(description="the rates that would convert them")
    detail: str


class Figures(BaseModel):
    """Decimal strings in the report's currency, each rounded from the exact sum."""

    committed: str = Field(description="commitments net of reductions and cancellations")
    disbursed: str
    outstanding: str = Field(description="committed - disbursed")
    disbursement_ratio: str | None = Field(
        description="disbursed / committed to 4 decimals; null when nothing is committed"
    )
    equity_purchases: str
    equity_sales: str
    loans: str
    loan_repayments: str


class PartnerKey(BaseModel):
    partner: str
    country: str


class PartnerFigures(Figures, PartnerKey):
    pass


class CurrencyFigures(BaseModel):
    currency: str
    original: Figures = Field(description="in this currency, as recorded")
    converted: Figures | None = Field(
        description="in the report's currency; the flows that cannot be converted are left "
        "out (see `problems`), and it is null when none can"
    )


PROBLEMS: list[ConversionProblem] = Field(
    default_factory=list,
    description="flows that no figure in the reporting currency includes, per venture and "
    "currency, and the exchange rates that would convert them; empty when every flow counts",
)


class VentureSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [VENTURE_SUMMARY_EXAMPLE]})

    venture_id: str
    currency: str = Field(description="the reporting currency")
    rounding: str
    total: Figures
    by_partner: list[PartnerFigures]
    by_currency: list[CurrencyFigures]
    problems: list[ConversionProblem] = PROBLEMS


class GroupKey(BaseModel):
    group: str


class GroupFigures(Figures, GroupKey):
    pass


class MonthlyDisbursement(BaseModel):
    month: str = Field(description="YYYY-MM of the value dates")
    disbursed: str


class PortfolioSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PORTFOLIO_SUMMARY_EXAMPLE]})

    currency: str
    group_by: str | None
    rounding: str
    total: Figures
    groups: list[GroupFigures]
    monthly_disbursements: list[MonthlyDisbursement] = Field(
        description="every month from the first to the last with a disbursement"
    )
    problems: list[ConversionProblem] = PROBLEMS


# --- exports ------------------------------------------------------------------------

ExportFormat = Literal["csv", "iati"]
# The columns of a flows export in CSV, in order (docs/investments.md, "Exports").
EXPORT_COLUMNS: tuple[str, ...] = (
    "venture_id",
    "venture_name",
    "flow_id",
    "type",
    "iati_transaction_type",
    "partner",
    "partner_country",
    "currency",
    "amount",
    "value_date",
    "reference",
    "note",
    "recorded_at",
    "recorded_by_role",
    "recorded_by_owner",
)
# The IATI activity standard version the activity JSON follows.
IATI_VERSION = "2.03"
# What the exports of FLOW_EXAMPLE (of ventures.VENTURE_EXAMPLE) write, for the OpenAPI
# document (a unit test checks they are what services/investments/exports.py makes).
EXPORT_CSV_EXAMPLE = (
    ",".join(EXPORT_COLUMNS) + "\r\n"
    "jv_6650f1c2a9d3e81b2c4d5e6f,Indus-Yangtze API Works,inv_6653c2f6d9a4b15e3f405162,"
    "disbursement,3,Indus Pharma (Pvt) Ltd,PK,PKR,123456789.55,2025-02-10,"
    "HBL transfer 2025-0210-77,first tranche for the Rashakai API plant,"
    "2025-02-11T05:20:00.000Z,investor,Indus Pharma Holdings\r\n"
)
IATI_EXAMPLE: dict[str, Any] = {
    "version": "2.03",
    "generated-datetime": "2025-02-11T06:00:00Z",
    "iati-activities": [
        {
            "iati-identifier": "PK-JVREG-jv_6650f1c2a9d3e81b2c4d5e6f",
            "reporting-org": {
                "ref": "PK-JVREG",
                "type": "10",
                "secondary-reporter": "1",
                "narrative": [{"text": "JV Pharma Registry", "lang": "en"}],
            },
            "title": {"narrative": [{"text": "Indus-Yangtze API Works"}]},
            "participating-org": [
                {"role": "1", "type": "70", "narrative": [{"text": "Indus Pharma (Pvt) Ltd"}]},
                {
                    "role": "1",
                    "type": "70",
                    "narrative": [{"text": "Zhejiang Yangtze Pharmaceutical Co."}],
                },
                {
                    "role": "4",
                    "activity-id": "PK-JVREG-jv_6650f1c2a9d3e81b2c4d5e6f",
                    "type": "70",
                    "narrative": [{"text": "Indus-Yangtze API Works"}],
                },
            ],
            "activity-status": {"code": "1"},
            "recipient-country": [{"code": "PK", "percentage": "100"}],
            "location": [{"name": {"narrative": [{"text": "Khyber Pakhtunkhwa"}]}}],
            "sector": [
                {"vocabulary": "1", "code": "32168", "percentage": "100"},
                {"vocabulary": "99", "code": "api_manufacturing", "percentage": "100"},
            ],
            "transaction": [
                {
                    "ref": "inv_6653c2f6d9a4b15e3f405162",
                    "transaction-type": {"code": "3"},
                    "transaction-date": {"iso-date": "2025-02-10"},
                    "value": {
                        "currency": "PKR",
                        "value-date": "2025-02-10",
                        "amount": "123456789.55",
                    },
                    "provider-org": {
                        "type": "70",
                        "narrative": [{"text": "Indus Pharma (Pvt) Ltd"}],
                    },
                    "receiver-org": {
                        "activity-id": "PK-JVREG-jv_6650f1c2a9d3e81b2c4d5e6f",
                        "type": "70",
                        "narrative": [{"text": "Indus-Yangtze API Works"}],
                    },
                    "description": {
                        "narrative": [
                            {"text": "HBL transfer 2025-0210-77"},
                            {"text": "first tranche for the Rashakai API plant"},
                        ]
                    },
                }
            ],
        }
    ],
}
# Flows per page of an export (one RPC): a page holds whole value dates of a venture.
EXPORT_PAGE_FLOWS = 200


class ExportQuery(Strict):
    """Query parameters of a flows export."""

    format: ExportFormat | None = Field(
        None,
        description="csv (one row per flow) or iati (IATI-style activity JSON); without it "
        "the Accept header decides (text/csv, application/json), else csv",
    )


class ExportPage(BaseModel):
    """A page of a flows export, in export order (ventures as asked, each venture's flows
    by value date, then recording order): CSV rows (`EXPORT_COLUMNS`), or for IATI each
    venture's activity (without transactions) before its transactions."""

    items: list[dict[str, Any]] = Field(
        description='{"row": [...]}, {"activity": {...}} or {"transaction": {...}}'
    )
    next: str | None = Field(description="where the next page starts; null after the last")


# --- events on investments.events ------------------------------------------------------

INVESTMENT_RECORDED = "investment.recorded"
FX_RATE_SET = "fx_rate.set"


class InvestmentRecorded(EventPayload):
    """A partner's flow into or out of the venture (a commitment, a disbursement, an
    equity or loan movement) was recorded, exactly, in its own currency; the partner's
    disbursements in that currency still stay within its net commitments. A flow never
    changes after (subject the flow's id, sequence 1): a correction is a further
    flow."""

    service = SERVICE

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "investment": FLOW_EXAMPLE,
                    "change": {"reason": "recorded", "actor": ventures.INVESTOR},
                }
            ]
        }
    )

    routing_key = INVESTMENT_RECORDED

    aggregate = "investment"

    investment: Flow
    change: Change

    @property
    def sequence(self) -> int:
        return 1  # a flow is never changed: its one event


class FxRateChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: DecimalString | None = Field(alias="from", description="the day's rate before, if any")
    to: DecimalString
    actor: Actor


class FxRateSet(EventPayload):
    """Ops set, or changed, the US dollars one unit of `currency` was worth on `date`
    (subject `fx:<currency>:<date>`; sequence the rate's version, +1 per change);
    `change.from` is the day's previous rate, null if none. Reports convert a flow at
    the latest rate on or before its value date."""

    service = SERVICE

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "fx_rate": FX_RATE_EXAMPLE,
                    "change": {"from": "0.0036", "to": "0.00357", "actor": OPS},
                }
            ]
        }
    )

    routing_key = FX_RATE_SET

    fx_rate: FxRate
    change: FxRateChange

    @property
    def subject(self) -> str:
        return fx_rate_id(self.fx_rate.currency, self.fx_rate.date)

    @property
    def sequence(self) -> int:
        return self.fx_rate.version


EVENTS: dict[str, type[BaseModel]] = events_of(InvestmentRecorded, FxRateSet)

# --- what it consumes ---------------------------------------------------------------

# Every change of a venture carries the whole venture after it: its partners (whose
# flows may be recorded) and its status (a dissolved venture takes no more flows).
PROJECTS_VENTURES = Subscription(
    "investments.project_venture", ventures.SERVICE, "venture.#", lambda: ventures.EVENTS
)
SUBSCRIPTIONS: list[Subscription] = [PROJECTS_VENTURES]
