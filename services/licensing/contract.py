"""The licensing service's wire contract: licence applications and transition requests,
what the registry answers about licences and their history, the events it publishes to
`licensing.events` (one per transition: `license.<new status>`, `license.reinstated`,
`license.renewed`, `license.renewal_granted`, `license.expiring`), and what it consumes
(every facility event). Wire models only; the lifecycle itself lives in `domain.py`."""

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from services.facilities import contract as facilities
from shared.clock import to_bson_precision
from shared.contract import Change, EventPayload, Strict, Subscription, events_of
from shared.input_types import ISO_TEXT_ONLY, date_bounds, number_or_decimal_text

SERVICE = "licensing"

LicenceType = Literal[
    "dml_formulation",
    "dml_basic",
    "dml_semi_basic",
    "dml_repacking",
    "dml_experimental",
    "product_registration",
    "gmp_certificate",
]
LicenceStatus = Literal[
    "submitted",
    "under_review",
    "deferred",
    "inspection_scheduled",
    "granted",
    "rejected",
    "suspended",
    "revoked",
    "expired",
    "renewal_granted",
]
# What a transition request may ask for: a status, or `renewed` (granted → granted).
TransitionTarget = Literal[LicenceStatus, "renewed"]

# How far ahead a decision may reach: an inspection is scheduled within two years, a
# licence is granted or renewed for at most ten (DRAP grants five); a filter on expiry
# dates beyond the furthest valid_until could select nothing more.
INSPECTION_YEARS_AHEAD = 2
# The expiry warnings (license.expiring), in days before valid_until: DRAP licences run
# five years and are renewed on an application made in time.
EXPIRY_WARNING_DAYS = (180, 90, 30)
VALID_UNTIL_YEARS_AHEAD = 10

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]
DecisionRef = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=100, pattern=r"^[A-Za-z0-9][\w/.\- ]*$"
    ),
]
# Stored and sent as "YYYY-MM-DD" (BSON has no date-only type).
IsoDate = Annotated[date, PlainSerializer(lambda day: day.isoformat(), return_type=str)]
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# --- what a product registration registers (docs/licensing.md "Product registrations") --

# The dosage forms DRAP registers (its registration dossiers' "dosage form" field),
# as a closed vocabulary so that the same product is never spelled two ways.
DosageForm = Literal[
    "tablet",
    "film_coated_tablet",
    "chewable_tablet",
    "dispersible_tablet",
    "capsule",
    "injection",
    "powder_for_injection",
    "infusion",
    "oral_solution",
    "oral_suspension",
    "dry_powder_for_suspension",
    "syrup",
    "oral_drops",
    "cream",
    "ointment",
    "gel",
    "eye_drops",
    "ear_drops",
    "nasal_spray",
    "inhaler",
    "suppository",
    "sachet",
    "granules",
]
# Units of a strength: per dosage unit (mg, g, mcg, IU, U: units such as a vaccine's
# D-antigen units), per volume or mass of the
# preparation (mg/ml, mg/5ml, mcg/ml, IU/ml, mg/g), per dose of an inhaler, or % w/w.
StrengthUnit = Literal[
    "mg", "g", "mcg", "IU", "U", "mg/ml", "mg/5ml", "mcg/ml", "IU/ml", "mg/g", "mcg/dose", "%"
]
# International Nonproprietary Names: letters, with spaces, hyphens and the odd
# apostrophe or digit of salts and esters ("amoxicillin trihydrate").
InnName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9 '\-]*$"
    ),
]
RegistrationNumber = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=30, pattern=r"^[A-Za-z0-9][A-Za-z0-9/\-]*$"
    ),
]
# Built at run time; to the type checker it is the Decimal it validates to.
if TYPE_CHECKING:
    StrengthValue = Decimal
else:
    StrengthValue = number_or_decimal_text(gt=0, max_digits=12)


class Strength(Strict):
    value: StrengthValue = Field(description="a decimal above zero, e.g. '500' or '2.5'")
    unit: StrengthUnit

    def __str__(self) -> str:
        return f"{format(self.value.normalize(), 'f')} {self.unit}"


class ActiveIngredient(Strict):
    inn: InnName = Field(description="its International Nonproprietary Name, e.g. Amoxicillin")
    strength: Strength | None = Field(
        None, description="required when the product has more than one active ingredient"
    )


class ProductDetails(Strict):
    """What identifies a registered product: its active ingredients, strength and dosage
    form (two registrations with the same three are the same product)."""

    dosage_form: DosageForm
    strength: Strength = Field(description="the product's strength as labelled, e.g. 500 mg")
    active_ingredients: list[ActiveIngredient] = Field(min_length=1, max_length=10)

    @field_validator("active_ingredients")
    @classmethod
    def combinations_give_each_strength(
        cls, ingredients: list[ActiveIngredient]
    ) -> list[ActiveIngredient]:
        if len(ingredients) > 1 and any(i.strength is None for i in ingredients):
            raise ValueError("each ingredient of a combination gives its strength")
        if len({i.inn.casefold() for i in ingredients}) < len(ingredients):
            raise ValueError("an ingredient is named twice")
        return ingredients

    def ingredients_text(self) -> str:
        """e.g. "Amoxicillin 500 mg", "Amoxicillin 500 mg + Clavulanic acid 125 mg"."""
        if len(self.active_ingredients) == 1:
            return f"{self.active_ingredients[0].inn} {self.strength}"
        return " + ".join(f"{i.inn} {i.strength}" for i in self.active_ingredients)

    def display_name(self) -> str:
        """e.g. "Amoxicillin 500 mg capsule"."""
        return f"{self.ingredients_text()} {self.dosage_form.replace('_', ' ')}"


def end_of_day(day: date) -> datetime:
    """A licence valid until a date is valid through that whole day (UTC)."""
    return datetime.combine(day, time(23, 59, 59, 999000), UTC)


DRAP: dict[str, Any] = {
    "key_id": "key_R4dp",
    "role": "regulator",
    "owner": "DRAP Licensing Division",
}
APPLICANT: dict[str, Any] = {
    "key_id": "key_7Qm2",
    "role": "investor",
    "owner": "Indus Pharma Holdings",
}
SWEEP: dict[str, Any] = {"key_id": "system:expiry-sweep", "role": "system", "owner": "jvreg"}
LICENCE_EXAMPLE: dict[str, Any] = {
    "id": "lic_6652b1e5c8f3a04d2e3f4051",
    "facility_id": "fac_6651a0d4b7e2f93c1d2e3f40",
    "venture_id": "jv_6650f1c2a9d3e81b2c4d5e6f",
    "owner": "Indus Pharma Holdings",
    "type": "dml_formulation",
    "product": None,
    "product_details": None,
    "registration_number": None,
    "renews": None,
    "status": "submitted",
    "valid_until": None,
    "decision_ref": None,
    "inspection_date": None,
    "version": 1,
    "created_at": "2026-11-02T06:40:00.000Z",
    "updated_at": "2026-11-02T06:40:00.000Z",
}


AMOXICILLIN: dict[str, Any] = {
    "dosage_form": "capsule",
    "strength": {"value": "500", "unit": "mg"},
    "active_ingredients": [{"inn": "Amoxicillin"}],
}


class ApplyForLicence(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {field: LICENCE_EXAMPLE[field] for field in ("facility_id", "type")},
                {
                    "facility_id": LICENCE_EXAMPLE["facility_id"],
                    "type": "product_registration",
                    "product_details": AMOXICILLIN,
                },
            ]
        }
    )

    facility_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    type: LicenceType
    product: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
        | None
    ) = Field(
        None,
        validate_default=True,
        description="a product registration's display name, e.g. 'Amoxil 500 mg capsules'; "
        "derived from product_details when not given; refused for every other type",
    )
    product_details: ProductDetails | None = Field(
        None,
        validate_default=True,
        description="what the product registration registers: dosage form, strength, "
        "active ingredients; required for product_registration and only for it",
    )

    @field_validator("product")
    @classmethod
    def product_only_for_product_registration(
        cls, product: str | None, info: ValidationInfo
    ) -> str | None:
        licence_type = info.data.get("type")
        if licence_type is not None and licence_type != "product_registration" and product:
            raise ValueError(f"a {licence_type} licence is for the plant, not for a product")
        return product

    @field_validator("product_details")
    @classmethod
    def details_only_for_product_registration(
        cls, details: ProductDetails | None, info: ValidationInfo
    ) -> ProductDetails | None:
        licence_type = info.data.get("type")
        if licence_type == "product_registration" and details is None:
            raise ValueError(
                "a product registration identifies its product: dosage_form, strength, "
                "active_ingredients"
            )
        if licence_type is not None and licence_type != "product_registration" and details:
            raise ValueError(f"a {licence_type} licence is for the plant, not for a product")
        return details

    def display_name(self) -> str | None:
        """The product's name as given, else as its details spell it."""
        if self.product is not None or self.product_details is None:
            return self.product
        return self.product_details.display_name()


class RequestTransition(Strict):
    """`{"to", "reason", ...}` plus the fields of that transition (see domain.TRANSITIONS)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "to": "granted",
                    "reason": "inspection of 14 December found the plant GMP-compliant",
                    "decision_ref": "DRAP/LIC/2026/0412",
                    "valid_until": "2031-12-14",
                }
            ]
        }
    )

    to: TransitionTarget
    reason: Reason
    inspection_date: (
        Annotated[IsoDate, ISO_TEXT_ONLY, date_bounds(INSPECTION_YEARS_AHEAD)] | None
    ) = Field(
        None, description="when scheduling the inspection; from 1990-01-01, at most 2 years ahead"
    )
    valid_until: (
        Annotated[AwareDatetime, ISO_TEXT_ONLY, date_bounds(VALID_UNTIL_YEARS_AHEAD)] | None
    ) = Field(
        None,
        description="on grant (default 5 years) and renewal: a date (valid through that "
        "day, UTC) or an RFC 3339 time; at most 10 years ahead",
    )
    decision_ref: DecisionRef | None = Field(
        None, description="DRAP's reference of the decision, e.g. DRAP/LIC/2026/0412"
    )
    registration_number: RegistrationNumber | None = Field(
        None,
        description="DRAP's registration number of the product, e.g. 082341: required "
        "when a product registration is granted, refused otherwise; unique in the registry",
    )

    @field_validator("valid_until", mode="before")
    @classmethod
    def date_means_through_that_day(cls, value: Any) -> Any:
        if isinstance(value, str) and DATE_ONLY.match(value):
            return end_of_day(date.fromisoformat(value))
        return value

    @field_validator("valid_until")
    @classmethod
    def stored_precision(cls, value: datetime | None) -> datetime | None:
        return to_bson_precision(value) if value else None


class LicenceFilters(Strict):
    """Query parameters of the licence list."""

    owner: str | None = None
    status: LicenceStatus | None = None
    type: LicenceType | None = None
    facility_id: str | None = None
    venture_id: str | None = None
    registration_number: str | None = None
    renews: str | None = Field(None, description="the renewal applications of this licence")
    expiring_before: Annotated[date, date_bounds(VALID_UNTIL_YEARS_AHEAD + 1)] | None = Field(
        None, description="valid_until before this date (combine with status=granted)"
    )


class Licence(BaseModel):
    """A licence as the registry holds and shows it."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [LICENCE_EXAMPLE]})

    id: str
    facility_id: str
    venture_id: str
    owner: str = Field(description="the organisation that registered the venture")
    type: LicenceType
    product: str | None = Field(None, description="a product registration's display name")
    product_details: ProductDetails | None = Field(
        None, description="what a product registration registers (null on those made before)"
    )
    registration_number: str | None = Field(
        None, description="DRAP's registration number of a granted product registration"
    )
    renews: str | None = Field(
        None, description="a renewal application: the licence it renews (docs/licensing.md)"
    )
    status: LicenceStatus
    valid_until: datetime | None = None
    decision_ref: str | None = Field(None, description="the reference of the latest decision")
    inspection_date: IsoDate | None = None
    expiry_warnings: list[int] = Field(
        default_factory=list,
        description="the warnings (days before valid_until: 180, 90, 30) already sent "
        "for the current valid_until; a renewal starts them again",
    )
    version: int = Field(ge=1, description="+1 per transition; the events' sequence")
    created_at: datetime
    updated_at: datetime


class HistoryEntry(BaseModel):
    """One transition of a licence, as the history shows it."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "lic_6652b1e5c8f3a04d2e3f4051.000002",
                    "license_id": LICENCE_EXAMPLE["id"],
                    "sequence": 2,
                    "from": "submitted",
                    "to": "under_review",
                    "event": "license.under_review",
                    "actor": DRAP,
                    "role": "regulator",
                    "reason": "dossier complete",
                    "time": "2026-11-05T09:10:00.000Z",
                    "fields": {},
                }
            ]
        },
    )

    id: str
    license_id: str
    sequence: int
    from_: LicenceStatus | None = Field(alias="from")
    to: LicenceStatus
    event: str = Field(description="the event it emitted, e.g. license.reinstated")
    actor: dict[str, Any]
    role: str
    reason: str
    time: datetime
    fields: dict[str, Any]


# --- events on licensing.events: subject = licence id, sequence = its version ---------


class LicenceChange(Change):
    """One transition, as the event and the licence's history record it."""

    from_: LicenceStatus | None = Field(alias="from")
    to: LicenceStatus
    event: str = Field(description="the event's routing key, e.g. license.reinstated")
    role: str = Field(description="the actor's role")
    fields: dict[str, Any] = Field(
        description="what the transition recorded: inspection_date, valid_until, "
        "decision_ref, registration_number, renewal_application, days_before"
    )
    time: datetime


class LicenceEvent(EventPayload):
    """`data` of every `license.*` event: the licence after the change, and the change."""

    service = SERVICE
    aggregate = "license"

    license: Licence
    change: LicenceChange


def licence_example(
    source: str | None,
    status: str,
    event: str,
    version: int,
    reason: str,
    fields: dict[str, Any] | None = None,
    actor: dict[str, Any] = DRAP,
    licence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An example `data` of the event a transition from `source` to `status` emits."""
    moment = f"2026-12-{version + 10:02d}T08:15:00.000Z"
    return {
        "license": {
            **LICENCE_EXAMPLE,
            **(licence or {}),
            "status": status,
            "version": version,
            "updated_at": moment,
        },
        "change": {
            "from": source,
            "to": status,
            "event": f"license.{event}",
            "reason": reason,
            "actor": actor,
            "role": actor["role"],
            "fields": fields or {},
            "time": moment,
        },
    }


def examples(*data: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(data)})


GRANT: dict[str, Any] = {
    "decision_ref": "DRAP/LIC/2026/0412",
    "valid_until": "2031-12-14T23:59:59.999Z",
}
INSPECTED: dict[str, Any] = {"inspection_date": "2026-12-14"}


class LicenceSubmitted(LicenceEvent):
    """The plant's owner (or ops) applied to DRAP for a licence of `type` for the plant:
    it is `submitted`, at version 1, and not in force. The plant was not decommissioned,
    and the same plant and licence type had no rejection in the 90 days before."""

    routing_key = "license.submitted"
    model_config = examples(
        licence_example(None, "submitted", "submitted", 1, "application submitted", actor=APPLICANT)
    )


class LicenceUnderReview(LicenceEvent):
    """DRAP began reviewing the application's dossier, first after its submission or
    again after a deferral; nothing is decided yet."""

    routing_key = "license.under_review"
    model_config = examples(
        licence_example("submitted", "under_review", "under_review", 2, "dossier complete")
    )


class LicenceDeferred(LicenceEvent):
    """DRAP paused its review until the applicant supplies what `change.reason` names;
    the review resumes with a further `license.under_review`."""

    routing_key = "license.deferred"
    model_config = examples(
        licence_example(
            "under_review", "deferred", "deferred", 3, "stability data for Zone IVa missing"
        )
    )


class LicenceInspectionScheduled(LicenceEvent):
    """DRAP scheduled its inspection of the plant for `inspection_date` (on the licence
    and in `change.fields`); a grant or a rejection follows it."""

    routing_key = "license.inspection_scheduled"
    model_config = examples(
        licence_example(
            "under_review",
            "inspection_scheduled",
            "inspection_scheduled",
            3,
            "site visit to Rashakai SEZ",
            INSPECTED,
            licence={**INSPECTED},
        )
    )


class LicenceGranted(LicenceEvent):
    """DRAP granted the licence under `decision_ref`: it is in force from `change.time`
    until the moment `valid_until`, five years on unless DRAP gave a date (which runs to
    that day's end, UTC). A plant with a DML in force is operational."""

    routing_key = "license.granted"
    model_config = examples(
        licence_example(
            "inspection_scheduled",
            "granted",
            "granted",
            4,
            "inspection satisfactory",
            GRANT,
            licence={**INSPECTED, **GRANT},
        )
    )


class LicenceRejected(LicenceEvent):
    """DRAP rejected the application under `decision_ref`: the licence is final and
    never in force, and the same plant may not apply for the same licence type again for
    90 days."""

    routing_key = "license.rejected"
    model_config = examples(
        licence_example(
            "inspection_scheduled",
            "rejected",
            "rejected",
            4,
            "HVAC of the tablet compression area fails GMP",
            {"decision_ref": "DRAP/LIC/2026/0417"},
            licence={**INSPECTED, "decision_ref": "DRAP/LIC/2026/0417"},
        )
    )


class LicenceSuspended(LicenceEvent):
    """DRAP suspended a granted licence under `decision_ref`: it is not in force until
    it is reinstated, and may still be revoked; its `valid_until` is unchanged."""

    routing_key = "license.suspended"
    model_config = examples(
        licence_example(
            "granted",
            "suspended",
            "suspended",
            5,
            "out-of-specification paracetamol batches",
            {"decision_ref": "DRAP/LIC/2027/0031"},
            licence={**INSPECTED, **GRANT, "decision_ref": "DRAP/LIC/2027/0031"},
        )
    )


class LicenceReinstated(LicenceEvent):
    """DRAP lifted the licence's suspension under `decision_ref`: it is `granted` and in
    force again until its unchanged `valid_until`."""

    routing_key = "license.reinstated"
    model_config = examples(
        licence_example(
            "suspended",
            "granted",
            "reinstated",
            6,
            "corrective actions verified",
            {"decision_ref": "DRAP/LIC/2027/0058"},
            licence={**INSPECTED, **GRANT, "decision_ref": "DRAP/LIC/2027/0058"},
        )
    )


class LicenceRevoked(LicenceEvent):
    """DRAP revoked a granted or suspended licence under `decision_ref`: it is never in
    force again (final)."""

    routing_key = "license.revoked"
    model_config = examples(
        licence_example(
            "granted",
            "revoked",
            "revoked",
            5,
            "manufacturing outside the licensed premises",
            {"decision_ref": "DRAP/LIC/2027/0102"},
            licence={**INSPECTED, **GRANT, "decision_ref": "DRAP/LIC/2027/0102"},
        )
    )


class LicenceExpired(LicenceEvent):
    """The licence's `valid_until` passed without a renewal and the registry's expiry
    sweep (actor `system:expiry-sweep`) ended it: it is never in force again (final)."""

    routing_key = "license.expired"
    model_config = examples(
        licence_example(
            "granted",
            "expired",
            "expired",
            5,
            "valid_until 2031-12-14T23:59:59.999Z passed",
            actor=SWEEP,
            licence={**INSPECTED, **GRANT},
        )
    )


class LicenceExpiring(LicenceEvent):
    """A granted licence's `valid_until` is `change.fields.days_before` days away or
    less (180, 90, then 30): the holder should apply for its renewal in time. Sent once
    per threshold and valid_until by the registry's sweep (actor `system:expiry-sweep`);
    when a licence is granted with less time left, only the nearest threshold is sent.
    The licence stays `granted`; the warnings sent are in `license.expiry_warnings`."""

    routing_key = "license.expiring"
    model_config = examples(
        licence_example(
            "granted",
            "granted",
            "expiring",
            5,
            "valid_until 2031-12-14T23:59:59.999Z is 180 days away or less",
            {"days_before": 180},
            actor=SWEEP,
            licence={**INSPECTED, **GRANT, "expiry_warnings": [180]},
        )
    )


RENEWAL_EXAMPLE_ID = "lic_6652b1e5c8f3a04d2e3f9a17"
RENEWAL: dict[str, Any] = {
    "decision_ref": "DRAP/LIC/2031/0877",
    "valid_until": "2036-12-14T23:59:59.999Z",
}


class LicenceRenewed(LicenceEvent):
    """DRAP renewed a granted licence under `decision_ref`, moving its `valid_until`
    later (in `change.fields`); it stays `granted` and was in force throughout. When the
    renewal was applied for, `change.fields.renewal_application` names the application
    granted with it (which ends `renewal_granted` in the same transaction); without it,
    a regulator renewed the licence directly."""

    routing_key = "license.renewed"
    model_config = examples(
        licence_example(
            "granted",
            "granted",
            "renewed",
            5,
            "renewal dossier approved",
            {**RENEWAL, "renewal_application": RENEWAL_EXAMPLE_ID},
            licence={**INSPECTED, **RENEWAL},
        )
    )


class LicenceRenewalGranted(LicenceEvent):
    """DRAP granted a renewal application (`license.renews` names the licence renewed)
    under `decision_ref`: the application is final (`renewal_granted`) and was never a
    licence in force of its own; the licence it renews gets the new `valid_until` by a
    `license.renewed` event committed with this one."""

    routing_key = "license.renewal_granted"
    model_config = examples(
        licence_example(
            "inspection_scheduled",
            "renewal_granted",
            "renewal_granted",
            4,
            "renewal dossier approved",
            RENEWAL,
            actor=DRAP,
            licence={
                **INSPECTED,
                **RENEWAL,
                "id": RENEWAL_EXAMPLE_ID,
                "renews": LICENCE_EXAMPLE["id"],
            },
        )
    )


# Each licence event by routing key, as the domain picks the one a transition emits.
LICENCE_EVENTS: dict[str, type[LicenceEvent]] = {
    event.routing_key: event
    for event in (
        LicenceSubmitted,
        LicenceUnderReview,
        LicenceDeferred,
        LicenceInspectionScheduled,
        LicenceGranted,
        LicenceRejected,
        LicenceSuspended,
        LicenceReinstated,
        LicenceRevoked,
        LicenceExpired,
        LicenceExpiring,
        LicenceRenewed,
        LicenceRenewalGranted,
    )
}
EVENTS: dict[str, type[BaseModel]] = events_of(*LICENCE_EVENTS.values())

# --- what it consumes ---------------------------------------------------------------

# Who may apply for a plant's licence depends on the plant (its owner, whether it is
# decommissioned): licensing keeps a projection of every facility.
FOLLOWS_FACILITIES = Subscription(
    "licensing.follow_facility", "facilities", "facility.#", lambda: facilities.EVENTS
)
SUBSCRIPTIONS: list[Subscription] = [FOLLOWS_FACILITIES]
