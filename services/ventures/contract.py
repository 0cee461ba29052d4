"""The ventures service's wire contract: what investors send (commands, filters), what
the registry answers (`Venture`), and the events it publishes to `ventures.events`.
Wire models only; the rules about them live in `domain.py`."""

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.contract import (
    Change,
    EventPayload,
    StatusChange,
    Strict,
    Subscription,
    events_of,
)
from shared.input_types import PartyName, confusable_key, number_or_decimal_text
from shared.vocabulary import Province

SERVICE = "ventures"

Sector = Literal[
    "api_manufacturing",
    "finished_formulations",
    "medical_devices",
    "biologics_vaccines",
    "telemedicine",
    "traditional_chinese_medicine",
    "other",
]
PartnerKind = Literal[
    "private_company",
    "state_owned_enterprise",
    "government_body",
    "investment_fund",
    "research_institute",
]
VentureStatus = Literal["registered", "active", "suspended", "dissolved"]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
# Names of ventures, partners and people: NFKC, nothing that hides what it is.
Name = PartyName
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]

# Equity is a percentage with at most four decimals (a third is 33.3333). The type is
# built at run time; to the type checker it is the Decimal it validates to.
if TYPE_CHECKING:
    EquityPct = Decimal
else:
    EquityPct = number_or_decimal_text(gt=0, le=100, decimal_places=4)


INVESTOR: dict[str, Any] = {
    "key_id": "key_7Qm2",
    "role": "investor",
    "owner": "Indus Pharma Holdings",
}
REGULATOR: dict[str, Any] = {
    "key_id": "key_R4dp",
    "role": "regulator",
    "owner": "DRAP Licensing Division",
}
VENTURE_EXAMPLE: dict[str, Any] = {
    "id": "jv_6650f1c2a9d3e81b2c4d5e6f",
    "name": "Indus-Yangtze API Works",
    "sector": "api_manufacturing",
    "province": "khyber_pakhtunkhwa",
    "sez": "Rashakai SEZ",
    "description": "Local production of paracetamol and amoxicillin APIs",
    "partners": [
        {
            "name": "Indus Pharma (Pvt) Ltd",
            "country": "PK",
            "kind": "private_company",
            "equity_pct": "51",
        },
        {
            "name": "Zhejiang Yangtze Pharmaceutical Co.",
            "country": "CN",
            "kind": "private_company",
            "equity_pct": "49",
        },
    ],
    "focal_points": [
        {"name": "Ayesha Khan", "email": "ayesha.khan@induspharma.example", "country": "PK"}
    ],
    "status": "registered",
    "owner": "Indus Pharma Holdings",
    "version": 1,
    "created_at": "2025-05-12T09:30:00.000Z",
    "updated_at": "2025-05-12T09:30:00.000Z",
}


class Partner(Strict):
    name: Name
    country: CountryCode = Field(description="ISO 3166-1 alpha-2, e.g. PK or CN")
    kind: PartnerKind
    equity_pct: EquityPct = Field(description="share of equity, a decimal; all sum to 100")


class FocalPoint(Strict):
    name: Name
    email: EmailStr
    country: CountryCode


class VentureFields(Strict):
    """What an investor states about a venture, whether registering or updating."""

    name: Name
    sector: Sector
    partners: list[Partner] = Field(min_length=2, max_length=20)
    province: Province
    sez: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = Field(
        None, description="special economic zone, e.g. Rashakai SEZ"
    )
    description: Text | None = None
    focal_points: list[FocalPoint] = Field(default_factory=list, max_length=20)

    @field_validator("partners")
    @classmethod
    def partners_make_a_pakistan_china_venture(cls, partners: list[Partner]) -> list[Partner]:
        countries = {partner.country for partner in partners}
        missing = [code for code in ("PK", "CN") if code not in countries]
        if missing:
            raise ValueError(
                "a joint venture needs at least one partner from Pakistan (PK) and one "
                f"from China (CN); missing: {', '.join(missing)}"
            )
        total = sum((partner.equity_pct for partner in partners), Decimal(0))
        if total != 100:
            raise ValueError(f"partners' equity_pct must sum to exactly 100, not {total}")
        names = [confusable_key(partner.name) for partner in partners]
        if len(set(names)) != len(names):
            raise ValueError("each partner may appear only once (names that look alike are one)")
        return partners


class RegisterVenture(VentureFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{field: VENTURE_EXAMPLE[field] for field in VentureFields.model_fields}]
        }
    )


class UpdateVenture(Strict):
    """A merge patch: fields present replace the venture's; `null` clears an optional one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"description": "APIs for the domestic market and export to Central Asia"}]
        }
    )

    name: Name | None = None
    sector: Sector | None = None
    partners: list[Partner] | None = None
    province: Province | None = None
    sez: str | None = None
    description: Text | None = None
    focal_points: list[FocalPoint] | None = None

    @model_validator(mode="after")
    def not_empty(self) -> "UpdateVenture":
        if not self.model_fields_set:
            raise ValueError("an update must change at least one field")
        return self


class ChangeVentureStatus(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"to": "active", "reason": "DRAP site verification completed"}]
        }
    )

    to: VentureStatus
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]


class VentureFilters(Strict):
    """Query parameters of the venture list."""

    owner: str | None = None
    sector: Sector | None = None
    province: Province | None = None
    status: VentureStatus | None = None
    partner_country: CountryCode | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class Venture(VentureFields):
    """A venture as the registry holds and shows it."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [VENTURE_EXAMPLE]})

    id: str
    status: VentureStatus
    owner: str = Field(description="the organisation whose key registered the venture")
    version: int = Field(ge=1)
    created_at: datetime
    updated_at: datetime


# --- events on ventures.events: subject = venture id, sequence = its version ----------

VENTURE_REGISTERED = "venture.registered"
VENTURE_UPDATED = "venture.updated"
VENTURE_STATUS_CHANGED = "venture.status_changed"


class VentureStatusChange(StatusChange):
    from_: VentureStatus | None = Field(alias="from")
    to: VentureStatus


class FieldChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: Any = Field(alias="from")
    to: Any


class VentureFieldsChange(Change):
    fields: dict[str, FieldChange] = Field(description="each changed field: {from, to}")


class VentureEvent(EventPayload):
    """`data` of every `venture.*` event: the venture after the change, and the change."""

    service = SERVICE
    aggregate = "venture"

    venture: Venture
    change: Change


class VentureRegistered(VentureEvent):
    """An investor (or ops) registered a new joint venture: it is `registered`, at
    version 1, owned by the registering key's organisation. Its partners meet the
    venture rules (at least one from PK and one from CN, equity summing to exactly 100)
    and no registered venture's name looks like its own."""

    routing_key = VENTURE_REGISTERED
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "venture": VENTURE_EXAMPLE,
                    "change": {
                        "from": None,
                        "to": "registered",
                        "reason": "registered",
                        "actor": INVESTOR,
                    },
                }
            ]
        }
    )

    change: VentureStatusChange


class VentureUpdated(VentureEvent):
    """The venture's owner (or ops) changed what it states about the venture with a
    merge patch: `change.fields` holds each field that changed, from and to. The venture
    as a whole still meets the rules; its status is unchanged, and a dissolved venture
    is never updated."""

    routing_key = VENTURE_UPDATED
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "venture": {
                        **VENTURE_EXAMPLE,
                        "description": "APIs for the domestic market and export to Central Asia",
                        "version": 2,
                        "updated_at": "2025-06-02T11:05:00.000Z",
                    },
                    "change": {
                        "fields": {
                            "description": {
                                "from": "Local production of paracetamol and amoxicillin APIs",
                                "to": "APIs for the domestic market and export to Central Asia",
                            }
                        },
                        "reason": "updated",
                        "actor": INVESTOR,
                    },
                }
            ]
        }
    )

    change: VentureFieldsChange


class VentureStatusChanged(VentureEvent):
    """A regulator (or ops) moved the venture along its lifecycle (`registered` →
    `active` ⇄ `suspended`, any → `dissolved`), for `change.reason`. `dissolved` is
    final: no event of the venture follows it, and the venture's plants are
    decommissioned."""

    routing_key = VENTURE_STATUS_CHANGED
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "venture": {
                        **VENTURE_EXAMPLE,
                        "status": "active",
                        "version": 2,
                        "updated_at": "2025-06-20T07:45:00.000Z",
                    },
                    "change": {
                        "from": "registered",
                        "to": "active",
                        "reason": "DRAP site verification completed",
                        "actor": REGULATOR,
                    },
                }
            ]
        }
    )

    change: VentureStatusChange


EVENTS: dict[str, type[BaseModel]] = events_of(
    VentureRegistered, VentureUpdated, VentureStatusChanged
)
# It consumes no other service's events.
SUBSCRIPTIONS: list[Subscription] = []
