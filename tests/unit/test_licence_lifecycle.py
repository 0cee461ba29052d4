"""The licence lifecycle as a state machine (docs/architecture.md §7.3), its transition fields, the
expiry rule and the 90-day lockout: pure domain rules, no broker, no database."""

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.licensing import contract, domain
from shared.errors import Conflict, InvalidInput, NotFound

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
REGULATOR = {"key_id": "key_drap", "role": "regulator", "owner": "DRAP Licensing Division"}
STATUSES = list(contract.LicenceStatus.__args__)
TARGETS = [*STATUSES, "renewed"]

# The contract, written out independently of the domain's table so that a wrong edge
# there fails here: what a person may ask for from each status.
ALLOWED = {
    "submitted": ["under_review"],
    "under_review": ["deferred", "inspection_scheduled"],
    "deferred": ["under_review"],
    "inspection_scheduled": ["granted", "rejected"],
    "granted": ["renewed", "revoked", "suspended"],
    "suspended": ["granted", "revoked"],
    "rejected": [],
    "revoked": [],
    "expired": [],
    "renewal_granted": [],
}
# (from, requested) -> (status afterwards, event routing key)
OUTCOMES = {
    ("submitted", "under_review"): ("under_review", "license.under_review"),
    ("under_review", "deferred"): ("deferred", "license.deferred"),
    ("deferred", "under_review"): ("under_review", "license.under_review"),
    ("under_review", "inspection_scheduled"): (
        "inspection_scheduled",
        "license.inspection_scheduled",
    ),
    ("inspection_scheduled", "granted"): ("granted", "license.granted"),
    ("inspection_scheduled", "rejected"): ("rejected", "license.rejected"),
    ("granted", "suspended"): ("suspended", "license.suspended"),
    ("suspended", "granted"): ("granted", "license.reinstated"),
    ("granted", "revoked"): ("revoked", "license.revoked"),
    ("suspended", "revoked"): ("revoked", "license.revoked"),
    ("granted", "renewed"): ("granted", "license.renewed"),
}
DECISIONS = {"granted", "rejected", "suspended", "revoked", "renewed"}


def licence(status: str = "submitted", **overrides) -> contract.Licence:
    fields = {
        "id": "lic_1",
        "facility_id": "fac_1",
        "venture_id": "jv_1",
        "owner": "Lahore Pharma Holdings",
        "type": "dml_formulation",
        "status": status,
        "valid_until": NOW + timedelta(days=365) if status in ("granted", "suspended") else None,
        "version": 4,
        "created_at": NOW - timedelta(days=30),
        "updated_at": NOW - timedelta(days=1),
    }
    return contract.Licence(**{**fields, **overrides})


def request(to: str, **fields) -> contract.RequestTransition:
    return contract.RequestTransition.model_validate({"to": to, "reason": "as decided", **fields})


def complete_request(source: str, to: str) -> contract.RequestTransition:
    """A request for `to` with every field the transition needs."""
    fields = {}
    if to == "inspection_scheduled":
        fields["inspection_date"] = "2026-04-02"
    if to in DECISIONS:
        fields["decision_ref"] = "DRAP/LIC/2026/0412"
    if to == "renewed":
        fields["valid_until"] = "2036-03-31"
    return request(to, **fields)


def decided(decision: domain.LicenceDecision) -> tuple[contract.Licence, dict]:
    """The licence after a decision, and the change its event (and history) records."""
    after, event = decision
    assert event.license == after and event.routing_key == event.change.event
    return after, event.change.model_dump(by_alias=True)


@pytest.mark.parametrize("source, to", sorted(OUTCOMES))
def test_every_legal_transition(source, to):
    before = licence(source)
    after, change = decided(domain.decide(before, complete_request(source, to), REGULATOR, NOW))

    status, event = OUTCOMES[(source, to)]
    assert after.status == status
    assert after.version == before.version + 1
    assert after.updated_at == NOW
    assert change["event"] == event
    assert change["from"] == source and change["to"] == status
    assert change["actor"] == REGULATOR and change["role"] == "regulator"
    assert change["reason"] == "as decided" and change["time"] == NOW
    if to in DECISIONS:
        assert change["fields"]["decision_ref"] == "DRAP/LIC/2026/0412"
        assert after.decision_ref == "DRAP/LIC/2026/0412"


@pytest.mark.parametrize(
    "source, to",
    [(s, t) for s in STATUSES for t in TARGETS if t not in ALLOWED[s]],
)
def test_every_illegal_transition_names_the_allowed_next_states(source, to):
    with pytest.raises(Conflict) as refused:
        domain.decide(licence(source), complete_request(source, to), REGULATOR, NOW)
    assert refused.value.extra == {"current": source, "allowed": ALLOWED[source]}


def test_the_allowed_requests_are_the_contract():
    assert {status: domain.allowed_requests(status) for status in STATUSES} == ALLOWED


def test_nobody_may_expire_a_licence_by_request():
    with pytest.raises(Conflict) as refused:
        domain.decide(licence("granted"), request("expired"), REGULATOR, NOW)
    assert "expires by itself" in refused.value.detail
    assert "expired" not in refused.value.extra["allowed"]


def test_an_unknown_target_state_is_invalid_input():
    with pytest.raises(ValidationError) as refused:
        request("approved")
    assert refused.value.errors()[0]["loc"] == ("to",)


def invalid_fields(error: InvalidInput) -> dict:
    return {tuple(item["loc"]): item["msg"] for item in error.errors}


@pytest.mark.parametrize(
    "source, to, missing",
    [
        ("under_review", "inspection_scheduled", "inspection_date"),
        ("inspection_scheduled", "granted", "decision_ref"),
        ("inspection_scheduled", "rejected", "decision_ref"),
        ("granted", "suspended", "decision_ref"),
        ("suspended", "granted", "decision_ref"),
        ("granted", "revoked", "decision_ref"),
        ("suspended", "revoked", "decision_ref"),
        ("granted", "renewed", "decision_ref"),
        ("granted", "renewed", "valid_until"),
    ],
)
def test_a_transition_without_its_required_field_is_refused(source, to, missing):
    complete = complete_request(source, to).model_dump(exclude_none=True, mode="json")
    del complete[missing]
    with pytest.raises(InvalidInput) as refused:
        domain.decide(licence(source), request(**complete), REGULATOR, NOW)
    assert invalid_fields(refused.value) == {(missing,): f"required to move to {to}"}


def test_a_field_the_transition_does_not_take_is_refused():
    with pytest.raises(InvalidInput) as refused:
        domain.decide(
            licence("submitted"), request("under_review", decision_ref="X/1/2"), REGULATOR, NOW
        )
    assert invalid_fields(refused.value) == {
        ("decision_ref",): "not used when moving to under_review"
    }


def test_scheduling_records_the_inspection_date():
    after, change = decided(
        domain.decide(
            licence("under_review"),
            request("inspection_scheduled", inspection_date="2026-04-02"),
            REGULATOR,
            NOW,
        )
    )
    assert after.inspection_date == date(2026, 4, 2)
    assert change["fields"] == {"inspection_date": date(2026, 4, 2)}
    assert after.model_dump(mode="json")["inspection_date"] == "2026-04-02"


def test_a_grant_is_valid_for_five_years_by_default():
    grant = request("granted", decision_ref="DRAP/LIC/2026/0412")
    after, change = decided(domain.decide(licence("inspection_scheduled"), grant, REGULATOR, NOW))
    assert after.valid_until == datetime(2031, 3, 10, 9, 30, tzinfo=UTC)
    assert change["fields"]["valid_until"] == after.valid_until


def test_a_grant_on_29_february_lasts_until_28_february():
    leap_day = datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert domain.default_valid_until(leap_day) == datetime(2033, 2, 28, 12, tzinfo=UTC)


def test_a_grant_may_name_a_date_meaning_through_that_day():
    grant = request("granted", decision_ref="DRAP/LIC/2026/0412", valid_until="2029-06-30")
    after, _ = domain.decide(licence("inspection_scheduled"), grant, REGULATOR, NOW)
    assert after.valid_until == datetime(2029, 6, 30, 23, 59, 59, 999000, tzinfo=UTC)


def test_a_grant_may_name_a_moment_seconds_ahead():
    soon = NOW + timedelta(seconds=5)
    grant = request("granted", decision_ref="D/1/2", valid_until=soon.isoformat())
    after, _ = domain.decide(licence("inspection_scheduled"), grant, REGULATOR, NOW)
    assert after.valid_until == soon


@pytest.mark.parametrize("valid_until", ["2026-03-09", "2026-03-10T09:30:00Z"])
def test_a_grant_valid_until_now_or_the_past_is_refused(valid_until):
    grant = request("granted", decision_ref="D/1/2", valid_until=valid_until)
    with pytest.raises(InvalidInput) as refused:
        domain.decide(licence("inspection_scheduled"), grant, REGULATOR, NOW)
    assert invalid_fields(refused.value) == {("valid_until",): "must be in the future"}


def test_valid_until_without_a_time_zone_is_invalid_input():
    with pytest.raises(ValidationError) as refused:
        request("granted", decision_ref="D/1/2", valid_until="2030-01-01T00:00:00")
    assert refused.value.errors()[0]["loc"] == ("valid_until",)


def test_a_renewal_sets_a_later_valid_until():
    granted = licence("granted", valid_until=datetime(2027, 1, 1, tzinfo=UTC))
    renewal = request("renewed", decision_ref="DRAP/LIC/2026/0999", valid_until="2032-01-01")
    after, change = decided(domain.decide(granted, renewal, REGULATOR, NOW))
    assert after.status == "granted" and change["event"] == "license.renewed"
    assert after.valid_until == datetime(2032, 1, 1, 23, 59, 59, 999000, tzinfo=UTC)


def test_a_renewal_that_does_not_extend_the_licence_is_refused():
    granted = licence("granted", valid_until=datetime(2027, 1, 1, tzinfo=UTC))
    renewal = request("renewed", decision_ref="D/1/2", valid_until="2026-12-31")
    with pytest.raises(InvalidInput) as refused:
        domain.decide(granted, renewal, REGULATOR, NOW)
    assert invalid_fields(refused.value) == {
        ("valid_until",): "a renewal must extend the licence beyond 2027-01-01T00:00:00.000Z"
    }


def test_reinstatement_keeps_the_validity_period():
    suspended = licence("suspended")
    after, _ = domain.decide(suspended, request("granted", decision_ref="D/1/2"), REGULATOR, NOW)
    assert after.valid_until == suspended.valid_until


def test_a_granted_licence_past_valid_until_expires_by_the_system():
    granted = licence("granted", valid_until=NOW - timedelta(milliseconds=1))
    after, change = decided(domain.expire(granted, NOW))
    assert after.status == "expired" and after.version == granted.version + 1
    assert change["event"] == "license.expired"
    assert change["actor"] == domain.SYSTEM_ACTOR and change["role"] == "system"


@pytest.mark.parametrize(
    "status, valid_until",
    [
        ("granted", NOW),  # valid through that very moment
        ("granted", NOW + timedelta(days=1)),
        ("suspended", NOW - timedelta(days=1)),
    ],
)
def test_only_a_granted_licence_past_valid_until_expires(status, valid_until):
    with pytest.raises(ValueError):
        domain.expire(licence(status, valid_until=valid_until), NOW)


def test_the_lockout_ends_ninety_days_after_the_rejection():
    rejected_at = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    assert domain.lockout_ends(rejected_at) == datetime(2026, 4, 15, 10, 0, tzinfo=UTC)
    with pytest.raises(Conflict) as refused:
        domain.check_lockout("dml_basic", rejected_at, datetime(2026, 4, 15, 9, 59, tzinfo=UTC))
    assert "2026-04-15" in refused.value.detail
    assert refused.value.extra == {"locked_until": "2026-04-15T10:00:00.000Z"}
    domain.check_lockout("dml_basic", rejected_at, datetime(2026, 4, 15, 10, 0, tzinfo=UTC))
    domain.check_lockout("dml_basic", None, NOW)


def test_a_product_registration_identifies_its_product():
    with pytest.raises(ValidationError) as refused:
        contract.ApplyForLicence(
            facility_id="fac_1", type="product_registration", product="Amoxicillin 500 mg"
        )
    assert refused.value.errors()[0]["loc"] == ("product_details",)
    application = contract.ApplyForLicence(
        facility_id="fac_1",
        type="product_registration",
        product="Amoxil 500 mg capsules",
        product_details=contract.AMOXICILLIN,
    )
    assert application.display_name() == "Amoxil 500 mg capsules"


def test_a_plant_licence_names_no_product():
    with pytest.raises(ValidationError) as refused:
        contract.ApplyForLicence(facility_id="fac_1", type="dml_basic", product="Paracetamol")
    assert refused.value.errors()[0]["loc"] == ("product",)


def test_an_unknown_licence_type_is_refused():
    with pytest.raises(ValidationError) as refused:
        contract.ApplyForLicence(facility_id="fac_1", type="dml_cosmetics")
    assert refused.value.errors()[0]["loc"] == ("type",)


def facility_view(status: str, kind: str = "formulation_plant") -> domain.FacilityView:
    return domain.FacilityView(
        id="fac_1", venture_id="jv_1", owner="o", kind=kind, status=status, sequence=2
    )


def test_applications_need_a_known_facility_still_in_service():
    with pytest.raises(NotFound) as unknown:
        domain.check_facility_accepts_applications(None, "fac_9")
    assert unknown.value.errors[0]["loc"] == ["facility_id"]
    with pytest.raises(Conflict):
        domain.check_facility_accepts_applications(facility_view("decommissioned"), "fac_1")
    for status in ("planned", "operational", "halted"):
        domain.check_facility_accepts_applications(facility_view(status), "fac_1")


def test_an_application_is_submitted_with_its_first_history_entry():
    investor = {"key_id": "key_i", "role": "investor", "owner": "Lahore Pharma Holdings"}
    application = contract.ApplyForLicence(facility_id="fac_1", type="dml_formulation")
    facility = facility_view("operational")
    submitted, entry = decided(
        domain.submit(application, facility, None, [], "lic_1", investor, NOW)
    )
    assert submitted.status == "submitted" and submitted.version == 1
    assert (submitted.owner, submitted.venture_id) == (facility.owner, facility.venture_id)
    assert entry["from"] is None and entry["to"] == "submitted"
    assert entry["event"] == "license.submitted" and entry["role"] == "investor"
    assert entry["time"] == submitted.created_at == NOW
