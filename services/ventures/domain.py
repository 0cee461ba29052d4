"""Joint ventures: what a valid venture is, and how its status may change.
Pure rules over pydantic models; no I/O."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.errors import Conflict
from shared.input_types import PartyName, confusable_key, number_or_decimal_text
from shared.vocabulary import Province

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

# Equity is a percentage with at most four decimals (a third is 33.3333).
EquityPct = number_or_decimal_text(gt=0, le=100, decimal_places=4)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    pass


class UpdateVenture(Strict):
    """A merge patch: fields present replace the venture's; `null` clears an optional one."""

    name: Name | None = None
    sector: Sector | None = None
    partners: list[Partner] | None = None
    province: Province | None = None
    sez: str | None = None
    description: Text | None = None
    focal_points: list[FocalPoint] | None = None

    @model_validator(mode="after")
    def not_empty(self):
        if not self.model_fields_set:
            raise ValueError("an update must change at least one field")
        return self


class ChangeVentureStatus(Strict):
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

    model_config = ConfigDict(extra="ignore")

    id: str
    status: VentureStatus
    owner: str = Field(description="the organisation whose key registered the venture")
    version: int = Field(ge=1)
    created_at: datetime
    updated_at: datetime


def name_key(name: str) -> str:
    """Venture names are unique by what they look like: ignoring case, runs of spaces
    and look-alike characters (Cyrillic "А" for "A", full-width "Ａ")."""
    return confusable_key(name)


STATUS_TRANSITIONS: dict[str, set[str]] = {
    "registered": {"active", "dissolved"},
    "active": {"suspended", "dissolved"},
    "suspended": {"active", "dissolved"},
    "dissolved": set(),
}


def check_status_change(current: str, target: str) -> None:
    allowed = sorted(STATUS_TRANSITIONS[current])
    if target not in allowed:
        raise Conflict(
            f"a {current} venture cannot become {target}"
            + (f"; allowed: {', '.join(allowed)}" if allowed else "; dissolved is final"),
            extra={"current": current, "allowed": allowed},
        )


def check_editable(venture: "Venture") -> None:
    if venture.status == "dissolved":
        raise Conflict(
            f"venture {venture.id} is dissolved; it can no longer be changed",
            extra={"current": "dissolved", "allowed": []},
        )


def apply_update(venture: Venture, update: UpdateVenture) -> tuple[VentureFields, dict]:
    """The venture's fields after a merge patch, validated as a whole (the equity and
    partner rules hold for the result), and what changed as {field: {from, to}}."""
    before = venture.model_dump(mode="json", include=set(VentureFields.model_fields))
    patch = update.model_dump(mode="json", include=update.model_fields_set)
    merged = VentureFields.model_validate({**before, **patch})
    after = merged.model_dump(mode="json")
    changes = {
        field: {"from": before.get(field), "to": after.get(field)}
        for field in patch
        if before.get(field) != after.get(field)
    }
    return merged, changes
