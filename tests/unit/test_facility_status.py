"""How a facility's status follows its venture and its manufacturing licences
(docs/architecture.md §7.2): pure domain rules, no broker, no database."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.facilities import contract, domain
from shared.errors import Conflict, NotFound

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
REGULATOR = {"key_id": "key_drap", "role": "regulator", "owner": "DRAP Licensing Division"}


def facility(status: str = "planned", in_force: list[str] | None = None) -> contract.Facility:
    return contract.Facility(
        id="fac_1",
        venture_id="jv_1",
        owner="Lahore Pharma Holdings",
        name="Rashakai Formulation Plant 1",
        kind="formulation_plant",
        address="Plot 14, Rashakai Special Economic Zone",
        city="Nowshera",
        province="khyber_pakhtunkhwa",
        status=status,
        licenses_in_force=in_force or [],
        version=3,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize(
    "current, in_force, expected",
    [
        ("planned", [], "planned"),
        ("planned", ["lic_1"], "operational"),
        ("operational", ["lic_1"], "operational"),
        ("operational", [], "halted"),
        ("halted", [], "halted"),
        ("halted", ["lic_2"], "operational"),
        ("decommissioned", ["lic_1"], "decommissioned"),
        ("decommissioned", [], "decommissioned"),
    ],
)
def test_status_from_the_manufacturing_licences_in_force(current, in_force, expected):
    assert domain.status_from_licences(current, in_force) == expected


def test_licences_in_force_after_each_licence_status():
    assert domain.licences_in_force_after([], "lic_1", "granted") == ["lic_1"]
    # A renewal (granted again) keeps one entry.
    assert domain.licences_in_force_after(["lic_1"], "lic_1", "granted") == ["lic_1"]
    for status in ("suspended", "revoked", "expired"):
        assert domain.licences_in_force_after(["lic_1", "lic_2"], "lic_1", status) == ["lic_2"]
    assert domain.licences_in_force_after(["lic_2"], "lic_1", "under_review") == ["lic_2"]


@pytest.mark.parametrize(
    "licence_type, manufacturing",
    [
        ("dml_formulation", True),
        ("dml_basic", True),
        ("dml_semi_basic", True),
        ("dml_repacking", True),
        ("dml_experimental", True),
        ("product_registration", False),
        ("gmp_certificate", False),
    ],
)
def test_which_licences_permit_manufacturing(licence_type, manufacturing):
    assert domain.is_manufacturing_licence(licence_type) is manufacturing


def test_a_plant_follows_its_licence_through_grant_suspension_and_revocation():
    plant = facility()
    statuses = [plant.status]
    for licence_status in ("submitted", "granted", "suspended", "granted", "revoked"):
        plant, event = domain.follow_licence(
            plant, "lic_1", licence_status, f"license.{licence_status}", REGULATOR, NOW
        )
        if event:
            assert event.routing_key == "facility.status_changed" and event.facility == plant
            change = event.change.model_dump(by_alias=True)
            assert change["from"] == statuses[-1] and change["to"] == plant.status
            assert change["actor"] == REGULATOR
            statuses.append(plant.status)
    assert statuses == ["planned", "operational", "halted", "operational", "halted"]
    assert plant.version == 3 + 4  # one version per status change
    assert plant.licenses_in_force == []


def test_a_second_licence_in_force_keeps_the_plant_operating():
    plant = facility("operational", ["lic_1", "lic_2"])
    after, change = domain.follow_licence(plant, "lic_1", "suspended", "suspended", REGULATOR, NOW)
    assert change is None
    assert after.status == "operational" and after.licenses_in_force == ["lic_2"]
    assert after.version == plant.version


def test_a_rejected_application_leaves_a_planned_plant_planned():
    after, change = domain.follow_licence(facility(), "lic_1", "rejected", "r", REGULATOR, NOW)
    assert change is None and after.status == "planned"


def test_a_dissolved_venture_decommissions_its_plants_for_good():
    plant = facility("operational", ["lic_1"])
    after, event = domain.follow_venture(plant, "dissolved", "dissolved", REGULATOR, NOW)
    assert after.status == "decommissioned" and after.version == plant.version + 1
    assert event is not None and event.facility == after
    assert event.change.model_dump(by_alias=True) == {
        "from": "operational",
        "to": "decommissioned",
        "reason": "dissolved",
        "actor": REGULATOR,
    }
    again, change = domain.follow_venture(after, "dissolved", "dissolved", REGULATOR, NOW)
    assert change is None and again == after
    granted, change = domain.follow_licence(after, "lic_2", "granted", "g", REGULATOR, NOW)
    assert change is None and granted.status == "decommissioned"


@pytest.mark.parametrize("venture_status", ["registered", "active", "suspended"])
def test_other_venture_changes_leave_the_plant_as_it_is(venture_status):
    plant = facility("operational", ["lic_1"])
    assert domain.follow_venture(plant, venture_status, "r", REGULATOR, NOW) == (plant, None)


def venture(status: str) -> domain.VentureView:
    return domain.VentureView(
        id="jv_1",
        owner="o",
        status=status,
        name="Indus-Yangtze API Works",
        sector="api_manufacturing",
        province="punjab",
        sequence=1,
    )


def test_facilities_are_registered_only_under_a_known_venture_not_dissolved():
    with pytest.raises(NotFound):
        domain.check_venture_accepts_facilities(None, "jv_9")
    with pytest.raises(Conflict):
        domain.check_venture_accepts_facilities(venture("dissolved"), "jv_1")
    for status in ("registered", "active", "suspended"):
        domain.check_venture_accepts_facilities(venture(status), "jv_1")


def test_a_facility_registration_keeps_capacity_exact():
    registration = contract.RegisterFacility.model_validate_json(
        '{"name": "Rashakai API Plant", "kind": "api_plant", "address": "Plot 7, Rashakai SEZ",'
        ' "city": "Nowshera", "province": "khyber_pakhtunkhwa",'
        ' "capacity": {"value": "1200.5", "unit": "t API/year"}}'
    )
    assert registration.capacity.value == Decimal("1200.5")


@pytest.mark.parametrize(
    "field, value",
    [
        ("kind", "brewery"),
        ("province", "xinjiang"),
        ("capacity", {"value": "0", "unit": "t/year"}),
        ("capacity", {"value": "-5", "unit": "t/year"}),
    ],
)
def test_a_facility_registration_with_a_bad_field_is_refused(field, value):
    body = {
        "name": "Rashakai API Plant",
        "kind": "api_plant",
        "address": "Plot 7, Rashakai SEZ",
        "city": "Nowshera",
        "province": "khyber_pakhtunkhwa",
        field: value,
    }
    with pytest.raises(ValidationError) as refused:
        contract.RegisterFacility.model_validate(body)
    assert refused.value.errors()[0]["loc"][0] == field
