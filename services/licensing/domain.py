"""DRAP licences for the plants of joint ventures: who may apply, and the lifecycle of a
licence as an explicit state machine (Drugs (Licensing, Registering and Advertising)
Rules 1976). Pure rules over pydantic models; no I/O."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.licensing.contract import (
    EXPIRY_WARNING_DAYS,
    LICENCE_EVENTS,
    ApplyForLicence,
    Licence,
    LicenceEvent,
    LicenceSubmitted,
    ProductDetails,
    RequestTransition,
)
from shared.codec import rfc3339
from shared.errors import Conflict, InvalidInput, NotFound, RuleViolated

VALIDITY_YEARS = 5
# A holder applies for the renewal of a licence in the last 180 days of its validity.
RENEWAL_WINDOW = timedelta(days=180)
LOCKOUT_AFTER_REJECTION = timedelta(days=90)
# Who changes a licence when nobody does: the expiry sweep, and the end of its plant.
SYSTEM_ACTOR = {"key_id": "system:expiry-sweep", "role": "system", "owner": "jvreg"}
PLANT_ENDED_ACTOR = {"key_id": "system:plant-decommissioned", "role": "system", "owner": "jvreg"}

# Which licence types each kind of plant may hold, with the basis of each row in
# docs/licensing.md ("Which licence fits which plant"): the DML kinds of the Drugs
# (Licensing, Registering and Advertising) Rules 1976, registrations and GMP
# certificates where DRAP issues them for that kind of plant, nothing where the plant is
# not licensed by DRAP under these rules.
LICENCE_TYPES_BY_PLANT: dict[str, tuple[str, ...]] = {
    "api_plant": ("dml_basic", "dml_semi_basic", "dml_experimental", "gmp_certificate"),
    "formulation_plant": (
        "dml_formulation",
        "dml_repacking",
        "dml_experimental",
        "product_registration",
        "gmp_certificate",
    ),
    "vaccine_plant": (
        "dml_basic",
        "dml_formulation",
        "dml_experimental",
        "product_registration",
        "gmp_certificate",
    ),
    "tcm_plant": ("dml_formulation", "product_registration", "gmp_certificate"),
    "device_plant": (),
    "qc_lab": (),
    "telemedicine_hub": (),
    "warehouse": (),
}
# An application still waiting for a decision, and a licence that still binds its plant.
OPEN_STATUSES = ("submitted", "under_review", "deferred", "inspection_scheduled")
IN_FORCE_STATUSES = ("granted", "suspended")

# What a decision leaves: the licence afterwards, and the event (and history entry) of it.
LicenceDecision = tuple[Licence, LicenceEvent]
# What one request changes: each licence as it was decided on, with its decision (two
# licences when a renewal application is granted with the licence it renews).
LicenceChanges = list[tuple[Licence, LicenceDecision]]


class FacilityView(BaseModel):
    """What licensing knows of a facility, from `facilities.events`."""

    model_config = ConfigDict(extra="ignore")

    id: str
    venture_id: str
    owner: str
    kind: str
    status: str
    sequence: int = Field(ge=1, description="the last facility event applied")


@dataclass(frozen=True)
class Transition:
    """One edge of the lifecycle: from `source`, a request for `to` leaves the licence
    `status` and emits `license.<event>`, taking the fields named here."""

    source: str
    to: str
    event: str
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    automatic: bool = False
    becomes: str | None = None  # the status, when it is not what was asked for

    @property
    def status(self) -> str:
        return self.becomes or ("granted" if self.to in STAYS_GRANTED else self.to)


DECISION = frozenset({"decision_ref"})
# What a granted licence may go through and stay granted.
STAYS_GRANTED = frozenset({"renewed", "expiring"})
TRANSITIONS: tuple[Transition, ...] = (
    Transition("submitted", "under_review", "under_review"),
    Transition("under_review", "deferred", "deferred"),
    Transition("deferred", "under_review", "under_review"),
    Transition(
        "under_review",
        "inspection_scheduled",
        "inspection_scheduled",
        required=frozenset({"inspection_date"}),
    ),
    Transition(
        "inspection_scheduled",
        "granted",
        "granted",
        required=DECISION,
        optional=frozenset({"valid_until"}),
    ),
    Transition("inspection_scheduled", "rejected", "rejected", required=DECISION),
    Transition("granted", "suspended", "suspended", required=DECISION),
    Transition("suspended", "granted", "reinstated", required=DECISION),
    Transition("granted", "revoked", "revoked", required=DECISION),
    Transition("suspended", "revoked", "revoked", required=DECISION),
    Transition("granted", "renewed", "renewed", required=DECISION | {"valid_until"}),
    Transition("granted", "expired", "expired", automatic=True),
    Transition("granted", "expiring", "expiring", automatic=True),
    # A decommissioned plant's licences end with it (docs/licensing.md).
    Transition("granted", "revoked", "revoked", automatic=True),
    Transition("suspended", "revoked", "revoked", automatic=True),
)
TRANSITION_FIELDS = ("inspection_date", "valid_until", "decision_ref", "registration_number")
# A renewal application asked `granted` becomes `renewal_granted`, not a second licence
# in force: the licence it renews is renewed instead (`grant_renewal`).
RENEWAL_GRANT = Transition(
    "inspection_scheduled",
    "granted",
    "renewal_granted",
    required=DECISION,
    optional=frozenset({"valid_until"}),
    becomes="renewal_granted",
)
RENEWAL = next(t for t in TRANSITIONS if t.to == "renewed")


def allowed_requests(status: str) -> list[str]:
    """What a person may ask for next from `status` (expiry is never asked for)."""
    return sorted(t.to for t in TRANSITIONS if t.source == status and not t.automatic)


def find_transition(status: str, to: str) -> Transition:
    """The transition a person asks for, or 409 naming the allowed next states."""
    for transition in TRANSITIONS:
        if transition.source == status and transition.to == to and not transition.automatic:
            return transition
    allowed = allowed_requests(status)
    if to == "expired":
        why = "a licence expires by itself at its valid_until; it cannot be expired by request"
    elif not allowed:
        why = f"a {status} licence is final"
    else:
        why = f"a {status} licence cannot become {to}"
    raise Conflict(
        why + (f"; allowed: {', '.join(allowed)}" if allowed else ""),
        extra={"current": status, "allowed": allowed},
    )


def default_valid_until(now: datetime) -> datetime:
    """Five years on (28 February when the grant is on 29 February)."""
    try:
        return now.replace(year=now.year + VALIDITY_YEARS)
    except ValueError:
        return now.replace(year=now.year + VALIDITY_YEARS, day=28)


def required_fields(licence_type: str, transition: Transition) -> frozenset[str]:
    """What the transition needs of a licence of the type: a product registration is
    granted with DRAP's registration number of the product."""
    if transition.event == "granted" and licence_type == "product_registration":
        return transition.required | {"registration_number"}
    return transition.required


def transition_fields(
    licence: Licence,
    transition: Transition,
    request: RequestTransition,
    now: datetime,
    extends: Licence | None = None,
) -> dict[str, Any]:
    """The fields the transition records, checked: each required one present, none
    that the transition does not take, and a valid_until that makes sense (later than
    that of the licence it `extends`, a renewal; by default five years past it)."""
    given = {
        name: getattr(request, name)
        for name in TRANSITION_FIELDS
        if getattr(request, name) is not None
    }
    required = required_fields(licence.type, transition)
    errors = [
        {"loc": [name], "msg": f"required to move to {request.to}", "type": "missing"}
        for name in sorted(required - given.keys())
    ] + [
        {
            "loc": [name],
            "msg": f"not used when moving to {request.to}",
            "type": "extra_forbidden",
        }
        for name in sorted(given.keys() - required - transition.optional)
    ]
    if transition.to == "renewed":
        extends = licence
    if not errors and "valid_until" in transition.required | transition.optional:
        current = extends.valid_until if extends is not None else None
        valid_until = given.get("valid_until") or default_valid_until(current or now)
        if valid_until <= now:
            errors.append(_valid_until_error("must be in the future"))
        elif current is not None and valid_until <= current:
            errors.append(
                _valid_until_error(f"a renewal must extend the licence beyond {rfc3339(current)}")
            )
        given["valid_until"] = valid_until
    if errors:
        fields = ", ".join(error["loc"][-1] for error in errors)
        raise InvalidInput(f"{len(errors)} invalid field(s): {fields}", errors)
    return given


def _valid_until_error(msg: str) -> dict:
    return {"loc": ["valid_until"], "msg": msg, "type": "value_error"}


def change_licence(
    licence: Licence,
    transition: Transition,
    fields: dict[str, Any],
    reason: str,
    actor: dict,
    now: datetime,
) -> LicenceDecision:
    """The licence after `transition`, and the event that records the change (its
    history entry too)."""
    update: dict[str, Any] = {
        **{name: value for name, value in fields.items() if name in Licence.model_fields},
        "status": transition.status,
        "version": licence.version + 1,
        "updated_at": now,
    }
    if "valid_until" in fields:
        update["expiry_warnings"] = []  # a new validity is warned of anew
    changed = licence.model_copy(update=update)
    routing_key = f"license.{transition.event}"
    change = {
        "from": licence.status,
        "to": transition.status,
        "event": routing_key,
        "reason": reason,
        "actor": actor,
        "role": actor.get("role"),
        "fields": fields,
        "time": now,
    }
    return changed, LICENCE_EVENTS[routing_key].model_validate(
        {"license": changed, "change": change}
    )


def decide(
    licence: Licence,
    request: RequestTransition,
    actor: dict,
    now: datetime,
    facility: FacilityView | None = None,
    renewal_applications: Sequence[Licence] = (),
) -> LicenceDecision:
    """Apply a regulator's (or ops') request to the licence (of `facility`, as projected
    now: a decommissioned plant's licence is put in force no more; with its
    `renewal_applications` open, it is renewed by granting the open one, not directly)."""
    transition = find_transition(licence.status, request.to)
    if transition is RENEWAL:
        check_no_open_renewal(
            licence.id,
            renewal_applications,
            "grant it (or reject it) rather than renewing the licence directly, so that "
            "one renewal extends the licence once",
        )
    if (
        facility is not None
        and facility.status == "decommissioned"
        and transition.status == ("granted")
    ):
        raise Conflict(
            f"facility {facility.id} is decommissioned; its licences are in force no more",
            errors=[{"loc": ["to"], "msg": "facility decommissioned", "type": "decommissioned"}],
        )
    fields = transition_fields(licence, transition, request, now)
    return change_licence(licence, transition, fields, request.reason, actor, now)


def decide_changes(
    licence: Licence,
    request: RequestTransition,
    actor: dict,
    now: datetime,
    facility: FacilityView | None = None,
    renewed: Licence | None = None,
    renewal_applications: Sequence[Licence] = (),
) -> LicenceChanges:
    """What the request changes: the licence (`decide`), or, when a renewal application
    (renewing `renewed`) is granted, the application and the licence it renews."""
    if licence.renews is not None and request.to == "granted":
        assert renewed is not None, "a renewal application's licence is read with it"
        return grant_renewal(licence, renewed, request, actor, now)
    return [(licence, decide(licence, request, actor, now, facility, renewal_applications))]


def grant_renewal(
    application: Licence,
    renewed: Licence,
    request: RequestTransition,
    actor: dict,
    now: datetime,
) -> LicenceChanges:
    """The renewal application becomes `renewal_granted` and the licence it renews is
    renewed (`license.renewed`, naming the application) with the same decision and the
    new valid_until (default: five years past the current one). The licence must still
    be in force: one suspended, revoked or expired meanwhile is not renewed."""
    find_transition(application.status, request.to)  # 409 unless inspection_scheduled
    if renewed.status != "granted" or (
        renewed.valid_until is not None and renewed.valid_until <= now
    ):
        state = renewed.status if renewed.status != "granted" else "past its valid_until"
        raise Conflict(
            f"licence {renewed.id} is {state}: it can be renewed no more; reject the "
            "renewal application instead",
            extra={"renews": renewed.id, "licence_status": renewed.status},
        )
    fields = transition_fields(application, RENEWAL_GRANT, request, now, extends=renewed)
    granted = change_licence(application, RENEWAL_GRANT, fields, request.reason, actor, now)
    renewal = change_licence(
        renewed,
        RENEWAL,
        {**fields, "renewal_application": application.id},
        request.reason,
        actor,
        now,
    )
    return [(application, granted), (renewed, renewal)]


EXPIRY = next(t for t in TRANSITIONS if t.automatic and t.to == "expired")
EXPIRY_WARNING = next(t for t in TRANSITIONS if t.automatic and t.to == "expiring")
# The automatic revocation of a plant's licences in force, by their status.
PLANT_ENDED = {t.source: t for t in TRANSITIONS if t.automatic and t.to == "revoked"}


def expire(licence: Licence, now: datetime) -> LicenceDecision:
    """A granted licence expires once its valid_until has passed, and only then."""
    if licence.status != EXPIRY.source or licence.valid_until is None or licence.valid_until >= now:
        raise ValueError(f"licence {licence.id} is not due to expire")
    reason = f"valid_until {rfc3339(licence.valid_until)} passed"
    return change_licence(licence, EXPIRY, {}, reason, SYSTEM_ACTOR, now)


def next_expiry_warning_at(licence: Licence) -> datetime | None:
    """When the next expiry warning of a granted licence falls due (None: none left)."""
    if licence.status != "granted" or licence.valid_until is None:
        return None
    for days in EXPIRY_WARNING_DAYS:
        if days not in licence.expiry_warnings:
            return licence.valid_until - timedelta(days=days)
    return None


def warn_of_expiry(licence: Licence, now: datetime) -> LicenceDecision:
    """The nearest expiry warning now due (a licence granted with 20 days left is warned
    once, of 30 days, not three times), recorded with the ones it makes moot."""
    due_at = next_expiry_warning_at(licence)
    if due_at is None or due_at > now or licence.valid_until is None or licence.valid_until <= now:
        raise ValueError(f"licence {licence.id} has no expiry warning due")
    left = licence.valid_until - now
    days = min(d for d in EXPIRY_WARNING_DAYS if left <= timedelta(days=d))
    sent = sorted({*licence.expiry_warnings, *(d for d in EXPIRY_WARNING_DAYS if d >= days)})
    reason = f"valid_until {rfc3339(licence.valid_until)} is {days} days away or less"
    # The warnings sent are part of the licence the event carries.
    warned = licence.model_copy(update={"expiry_warnings": sent[::-1]})
    return change_licence(warned, EXPIRY_WARNING, {"days_before": days}, reason, SYSTEM_ACTOR, now)


def end_with_plant(licence: Licence, facility_id: str, now: datetime) -> LicenceDecision:
    """A licence in force on a plant that was decommissioned is revoked with it."""
    transition = PLANT_ENDED.get(licence.status)
    if transition is None:
        raise ValueError(f"licence {licence.id} is not in force ({licence.status})")
    reason = f"facility {facility_id} was decommissioned"
    return change_licence(licence, transition, {}, reason, PLANT_ENDED_ACTOR, now)


def submit(
    application: ApplyForLicence,
    facility: FacilityView | None,
    last_rejected_at: datetime | None,
    same_type: list[Licence],
    licence_id: str,
    actor: dict,
    now: datetime,
) -> LicenceDecision:
    """A new application for the facility (as projected now), unless the facility may
    not be licensed, cannot hold this type, already has this licence open or in force
    (`same_type`: its licences of the type), or a rejection still locks it out."""
    facility = check_facility_accepts_applications(facility, application.facility_id)
    check_type_fits_plant(application.type, facility)
    check_no_duplicate(application, same_type)
    check_lockout(application.type, last_rejected_at, now)
    record = {
        **application.model_dump(exclude={"product"}),
        "product": application.display_name(),
        "venture_id": facility.venture_id,
        "owner": facility.owner,
    }
    return application_opened(record, "application submitted", licence_id, actor, now)


def application_opened(
    record: dict[str, Any], reason: str, licence_id: str, actor: dict, now: datetime
) -> LicenceDecision:
    """An application of `record` (what it is for, and for whom), as it is opened:
    `submitted` at version 1, with the `license.submitted` event (and history entry) of
    it, whether it applies for a new licence or for the renewal of one."""
    licence = Licence(
        **record,
        id=licence_id,
        status="submitted",
        version=1,
        created_at=now,
        updated_at=now,
    )
    change = {
        "from": None,
        "to": "submitted",
        "event": LicenceSubmitted.routing_key,
        "reason": reason,
        "actor": actor,
        "role": actor.get("role"),
        "fields": {},
        "time": now,
    }
    return licence, LicenceSubmitted.model_validate({"license": licence, "change": change})


def check_facility_accepts_applications(
    facility: FacilityView | None, facility_id: str
) -> FacilityView:
    if facility is None:
        raise NotFound(
            f"no facility {facility_id}",
            errors=[{"loc": ["facility_id"], "msg": "unknown facility", "type": "not_found"}],
        )
    if facility.status == "decommissioned":
        raise Conflict(
            f"facility {facility_id} is decommissioned; it can be licensed no more",
            errors=[
                {
                    "loc": ["facility_id"],
                    "msg": "facility decommissioned",
                    "type": "decommissioned",
                }
            ],
        )
    return facility


def check_type_fits_plant(licence_type: str, facility: FacilityView) -> None:
    """422 naming the types the plant's kind may hold, when `licence_type` is not one."""
    allowed = list(LICENCE_TYPES_BY_PLANT.get(facility.kind, ()))
    if licence_type in allowed:
        return
    fits = f"it may hold {', '.join(allowed)}" if allowed else "DRAP licenses none of its kind"
    raise RuleViolated(
        f"a {facility.kind} cannot hold a {licence_type} licence; {fits}",
        errors=[{"loc": ["type"], "msg": f"not for a {facility.kind}", "type": "plant_kind"}],
        extra={"facility_kind": facility.kind, "allowed": allowed},
    )


def product_identity(details: ProductDetails) -> tuple:
    """What makes two product registrations the same product: the active ingredients
    with their strengths, the strength and the dosage form (500 and 500.0 mg alike)."""
    ingredients = sorted(
        (ingredient.inn.casefold(), str(ingredient.strength or details.strength))
        for ingredient in details.active_ingredients
    )
    return (tuple(ingredients), str(details.strength), details.dosage_form)


def same_product(licence: Licence, application: ApplyForLicence) -> bool:
    """A registration made before products were described (no details) is known by its
    name, ignoring case."""
    if licence.product_details is None or application.product_details is None:
        return (licence.product or "").casefold() == (application.display_name() or "").casefold()
    return product_identity(licence.product_details) == product_identity(
        application.product_details
    )


def check_not_open(found: Licence, described: str, instead: str) -> None:
    """One application at a time: 409 naming `found` (`described` so) while it is still
    open, saying what to do `instead`."""
    if found.status in OPEN_STATUSES:
        raise Conflict(
            f"{described} is still open ({found.status}); {instead}",
            extra={"open_application": found.id, "application_status": found.status},
        )


def check_no_duplicate(application: ApplyForLicence, same_type: list[Licence]) -> None:
    """One application at a time per plant and type (per product for a registration:
    its ingredients, strength and form), and none while a licence of it is in force:
    that one is renewed instead."""
    for licence in same_type:
        if application.type == "product_registration" and not same_product(licence, application):
            continue
        what = f"{application.type} of {licence.product}" if licence.product else application.type
        check_not_open(
            licence,
            f"application {licence.id} for the {what} licence of this facility",
            "it is decided before another is made",
        )
        if licence.status in IN_FORCE_STATUSES:
            raise Conflict(
                f"licence {licence.id} ({what}) of this facility is {licence.status} until "
                f"{rfc3339(licence.valid_until) if licence.valid_until else 'further notice'}; "
                "apply for its renewal instead of applying again",
                extra={"licence_in_force": licence.id, "licence_status": licence.status},
            )


def apply_for_renewal(
    licence: Licence,
    facility: FacilityView | None,
    same_type: list[Licence],
    application_id: str,
    actor: dict,
    now: datetime,
) -> LicenceDecision:
    """A renewal application for `licence` (as read; `same_type`: its plant's licences
    of the type open or in force, as they are now): only for a granted licence in the
    last 180 days of its validity, and only one open at a time."""
    check_facility_accepts_applications(facility, licence.facility_id)
    current = next((found for found in same_type if found.id == licence.id), licence)
    check_renewable(current, now)
    check_no_open_renewal(licence.id, same_type, "it is decided before another is made")
    record = {
        **current.model_dump(include={"facility_id", "venture_id", "owner", "type", "product"}),
        "product_details": current.product_details,
        "renews": current.id,
    }
    return application_opened(
        record, f"renewal of licence {current.id} applied for", application_id, actor, now
    )


def check_no_open_renewal(licence_id: str, licences: Sequence[Licence], instead: str) -> None:
    """One renewal at a time: while a renewal application of the licence (among
    `licences`) is open, a 409 naming it, saying what to do `instead`."""
    for found in licences:
        if found.renews == licence_id:
            check_not_open(
                found, f"renewal application {found.id} of licence {licence_id}", instead
            )


def renewal_window_opens(licence: Licence) -> datetime | None:
    return licence.valid_until - RENEWAL_WINDOW if licence.valid_until else None


def check_renewable(licence: Licence, now: datetime) -> None:
    """409 unless the licence is granted, not past its valid_until, and in the last
    180 days of it (the problem says when the window opens)."""
    if licence.renews is not None:
        raise Conflict(
            f"{licence.id} is a renewal application, not a licence; renew {licence.renews}",
            extra={"renews": licence.renews},
        )
    if licence.status != "granted" or licence.valid_until is None or licence.valid_until <= now:
        state = licence.status if licence.status != "granted" else "past its valid_until"
        raise Conflict(
            f"licence {licence.id} is {state}; only a licence in force (granted) is renewed",
            extra={"licence_status": licence.status},
        )
    opens = renewal_window_opens(licence)
    if opens is not None and now < opens:
        raise Conflict(
            f"the renewal of licence {licence.id} may be applied for from {rfc3339(opens)} "
            f"({opens.date().isoformat()}), 180 days before its valid_until "
            f"{rfc3339(licence.valid_until)}",
            extra={"window_opens": rfc3339(opens)},
        )


def check_registration_number_free(licence: Licence, holder: str | None) -> None:
    """DRAP issues each registration number once: 409 naming the licence holding it."""
    if holder is not None and holder != licence.id:
        raise Conflict(
            f"registration number {licence.registration_number} is held by licence {holder}",
            errors=[
                {
                    "loc": ["registration_number"],
                    "msg": f"held by licence {holder}",
                    "type": "duplicate",
                }
            ],
            extra={"licence_holding": holder},
        )


def lockout_ends(rejected_at: datetime) -> datetime:
    return rejected_at + LOCKOUT_AFTER_REJECTION


def check_lockout(licence_type: str, last_rejected_at: datetime | None, now: datetime) -> None:
    """A rejected applicant waits 90 days before applying again for the same facility
    and licence type."""
    if last_rejected_at is None:
        return
    ends = lockout_ends(last_rejected_at)
    if now < ends:
        raise Conflict(
            f"a {licence_type} application for this facility was rejected on "
            f"{last_rejected_at.date().isoformat()}; a new one may be made from "
            f"{rfc3339(ends)} ({ends.date().isoformat()})",
            extra={"locked_until": rfc3339(ends)},
        )
