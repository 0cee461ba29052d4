"""Which licence fits which plant, one application at a time per plant and type, and
licences that end with their plant (docs/licensing.md): pure domain rules."""

from datetime import UTC, datetime, timedelta

import pytest

from services.facilities.contract import FacilityKind
from services.licensing import contract, domain
from shared.errors import Conflict, RuleViolated

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
INVESTOR = {"key_id": "key_i", "role": "investor", "owner": "Lahore Pharma Holdings"}
LICENCE_TYPES = list(contract.LicenceType.__args__)

# The table of docs/licensing.md, written out independently of the domain's, so that a
# wrong cell there fails here.
ALLOWED = {
    "api_plant": {"dml_basic", "dml_semi_basic", "dml_experimental", "gmp_certificate"},
    "formulation_plant": {
        "dml_formulation",
        "dml_repacking",
        "dml_experimental",
        "product_registration",
        "gmp_certificate",
    },
    "vaccine_plant": {
        "dml_basic",
        "dml_formulation",
        "dml_experimental",
        "product_registration",
        "gmp_certificate",
    },
    "tcm_plant": {"dml_formulation", "product_registration", "gmp_certificate"},
    "device_plant": set(),
    "qc_lab": set(),
    "telemedicine_hub": set(),
    "warehouse": set(),
}


def plant(kind: str = "formulation_plant", status: str = "operational") -> domain.FacilityView:
    return domain.FacilityView(
        id="fac_1", venture_id="jv_1", owner="o", kind=kind, status=status, sequence=3
    )


def application(licence_type: str = "dml_formulation", product: str | None = None, **details):
    product_details = (
        {**contract.AMOXICILLIN, **details} if licence_type == "product_registration" else None
    )
    return contract.ApplyForLicence(
        facility_id="fac_1", type=licence_type, product=product, product_details=product_details
    )


def licence(status: str, licence_type: str = "dml_formulation", **fields) -> contract.Licence:
    return contract.Licence(
        id=f"lic_{status}",
        facility_id="fac_1",
        venture_id="jv_1",
        owner="o",
        type=licence_type,
        status=status,
        valid_until=NOW + timedelta(days=900) if status in ("granted", "suspended") else None,
        version=5,
        created_at=NOW - timedelta(days=60),
        updated_at=NOW - timedelta(days=1),
        **fields,
    )


def submit(app, facility=None, same_type=()):
    return domain.submit(app, facility or plant(), None, list(same_type), "lic_new", INVESTOR, NOW)


def test_the_table_covers_every_plant_kind_and_names_only_known_types():
    assert set(domain.LICENCE_TYPES_BY_PLANT) == set(FacilityKind.__args__)
    for allowed in domain.LICENCE_TYPES_BY_PLANT.values():
        assert set(allowed) <= set(LICENCE_TYPES)


@pytest.mark.parametrize("kind", sorted(ALLOWED))
@pytest.mark.parametrize("licence_type", LICENCE_TYPES)
def test_each_cell_of_the_table(kind, licence_type):
    product = "Amoxicillin 500 mg capsules" if licence_type == "product_registration" else None
    if licence_type in ALLOWED[kind]:
        licence_, _ = submit(application(licence_type, product), plant(kind))
        assert licence_.status == "submitted"
        return
    with pytest.raises(RuleViolated) as refused:
        submit(application(licence_type, product), plant(kind))
    assert refused.value.errors[0]["loc"] == ["type"]
    assert refused.value.extra["facility_kind"] == kind
    assert set(refused.value.extra["allowed"]) == ALLOWED[kind]
    named = ", ".join(domain.LICENCE_TYPES_BY_PLANT[kind]) or "DRAP licenses none of its kind"
    assert named in refused.value.detail


@pytest.mark.parametrize("status", domain.OPEN_STATUSES)
def test_one_open_application_per_plant_and_type(status):
    with pytest.raises(Conflict) as refused:
        submit(application(), same_type=[licence(status)])
    assert refused.value.extra == {
        "open_application": f"lic_{status}",
        "application_status": status,
    }
    assert f"lic_{status}" in refused.value.detail


@pytest.mark.parametrize("status", domain.IN_FORCE_STATUSES)
def test_no_new_application_while_a_licence_of_the_type_is_in_force(status):
    with pytest.raises(Conflict) as refused:
        submit(application(), same_type=[licence(status)])
    assert refused.value.extra == {"licence_in_force": f"lic_{status}", "licence_status": status}
    assert "renew" in refused.value.detail


def test_registrations_made_before_product_details_are_known_by_their_name():
    open_one = licence(
        "under_review", "product_registration", product="Amoxicillin 500 mg capsules"
    )
    other = application("product_registration", "Paracetamol 500 mg tablets")
    assert submit(other, same_type=[open_one])[0].status == "submitted"
    same = application("product_registration", "AMOXICILLIN 500 mg capsules")
    with pytest.raises(Conflict):
        submit(same, same_type=[open_one])


@pytest.mark.parametrize("status", ["granted", "suspended"])
def test_a_licence_in_force_ends_with_its_plant(status):
    before = licence(status)
    after, event = domain.end_with_plant(before, "fac_1", NOW)
    assert after.status == "revoked" and after.version == before.version + 1
    assert event.routing_key == "license.revoked"
    assert event.change.actor.model_dump() == domain.PLANT_ENDED_ACTOR
    assert event.change.reason == "facility fac_1 was decommissioned"


@pytest.mark.parametrize("status", ["submitted", "rejected", "revoked", "expired"])
def test_only_licences_in_force_end_with_their_plant(status):
    with pytest.raises(ValueError):
        domain.end_with_plant(licence(status), "fac_1", NOW)


def test_the_automatic_revocation_cannot_be_asked_for_without_a_decision():
    # A person's revocation still needs its decision reference.
    request = contract.RequestTransition(to="revoked", reason="licence conditions breached")
    with pytest.raises(Exception) as refused:
        domain.decide(licence("granted"), request, INVESTOR, NOW)
    assert "decision_ref" in str(refused.value.errors)


@pytest.mark.parametrize(
    ("status", "to", "fields"),
    [
        ("inspection_scheduled", "granted", {"decision_ref": "DRAP/LIC/2026/7"}),
        ("suspended", "granted", {"decision_ref": "DRAP/LIC/2026/8"}),
        ("granted", "renewed", {"decision_ref": "DRAP/LIC/2026/9"}),
    ],
)
def test_a_decommissioned_plant_is_licensed_no_more(status, to, fields):
    if to == "renewed":
        fields = {**fields, "valid_until": NOW + timedelta(days=2000)}
    request = contract.RequestTransition(to=to, reason="decided on the file", **fields)
    with pytest.raises(Conflict) as refused:
        domain.decide(licence(status), request, INVESTOR, NOW, plant(status="decommissioned"))
    assert refused.value.errors[0]["loc"] == ["to"]
    # The same decision on a plant still in service is made.
    assert domain.decide(licence(status), request, INVESTOR, NOW, plant())[0].status == "granted"


def granted_until(days_left: float, warned=()) -> contract.Licence:
    return licence("granted").model_copy(
        update={"valid_until": NOW + timedelta(days=days_left), "expiry_warnings": list(warned)}
    )


@pytest.mark.parametrize(
    ("days_left", "warned", "days_before", "sent"),
    [
        (180, (), 180, [180]),
        (120, (), 180, [180]),
        (90, (180,), 90, [180, 90]),
        (29.5, (180, 90), 30, [180, 90, 30]),
        # Granted with little time left: only the nearest warning, the others moot.
        (20, (), 30, [180, 90, 30]),
        (60, (), 90, [180, 90]),
    ],
)
def test_an_expiry_warning_is_the_nearest_one_due(days_left, warned, days_before, sent):
    before = granted_until(days_left, warned)
    after, event = domain.warn_of_expiry(before, NOW)
    assert event.routing_key == "license.expiring"
    assert event.change.fields == {"days_before": days_before}
    assert (after.status, after.version) == ("granted", before.version + 1)
    assert after.expiry_warnings == sorted(sent, reverse=True)
    assert event.license == after  # the event carries the licence as it is stored
    assert after.valid_until == before.valid_until
    assert domain.next_expiry_warning_at(after) != domain.next_expiry_warning_at(before)


@pytest.mark.parametrize(
    ("days_left", "warned"),
    [(181, ()), (100, (180,)), (31, (180, 90)), (10, (180, 90, 30)), (-1, ())],
)
def test_no_expiry_warning_before_it_is_due_or_twice(days_left, warned):
    with pytest.raises(ValueError):
        domain.warn_of_expiry(granted_until(days_left, warned), NOW)


def test_only_granted_licences_are_warned_of_and_a_renewal_starts_the_warnings_again():
    assert domain.next_expiry_warning_at(licence("suspended")) is None
    warned = granted_until(25, (180, 90, 30))
    assert domain.next_expiry_warning_at(warned) is None
    renewal = contract.RequestTransition(
        to="renewed",
        reason="renewal dossier approved",
        decision_ref="DRAP/LIC/2026/0999",
        valid_until=NOW + timedelta(days=5 * 365),
    )
    renewed, _ = domain.decide(warned, renewal, INVESTOR, NOW)
    assert renewed.expiry_warnings == []
    assert domain.next_expiry_warning_at(renewed) == renewed.valid_until - timedelta(days=180)
