"""Product registrations that identify the product, and renewal as its own application
(docs/licensing.md "Product registrations", "Renewal"): pure domain rules."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.licensing import contract, domain
from shared.errors import Conflict, InvalidInput

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
INVESTOR = {"key_id": "key_i", "role": "investor", "owner": "Lahore Pharma Holdings"}
DRAP = {"key_id": "key_r", "role": "regulator", "owner": "DRAP Licensing Division"}
CO_AMOXICLAV = {
    "dosage_form": "film_coated_tablet",
    "strength": {"value": "625", "unit": "mg"},
    "active_ingredients": [
        {"inn": "Amoxicillin", "strength": {"value": "500", "unit": "mg"}},
        {"inn": "Clavulanic acid", "strength": {"value": "125", "unit": "mg"}},
    ],
}


def plant() -> domain.FacilityView:
    return domain.FacilityView(
        id="fac_1",
        venture_id="jv_1",
        owner="o",
        kind="formulation_plant",
        status="planned",
        sequence=3,
    )


def registration(details: dict, product: str | None = None) -> contract.ApplyForLicence:
    return contract.ApplyForLicence(
        facility_id="fac_1", type="product_registration", product=product, product_details=details
    )


def licence(status: str, licence_type: str = "dml_formulation", **fields) -> contract.Licence:
    return contract.Licence(
        **{
            "id": f"lic_{status}",
            "facility_id": "fac_1",
            "venture_id": "jv_1",
            "owner": "o",
            "type": licence_type,
            "status": status,
            "valid_until": NOW + timedelta(days=100)
            if status in ("granted", "suspended")
            else None,
            "version": 5,
            "created_at": NOW - timedelta(days=60),
            "updated_at": NOW - timedelta(days=1),
            **fields,
        }
    )


def request(to: str, **fields) -> contract.RequestTransition:
    return contract.RequestTransition.model_validate({"to": to, "reason": "as decided", **fields})


def submit(application, same_type=()):
    return domain.submit(application, plant(), None, list(same_type), "lic_new", INVESTOR, NOW)


# --- product registrations -----------------------------------------------------------


def test_the_display_name_is_derived_from_the_product_unless_given():
    assert submit(registration(contract.AMOXICILLIN))[0].product == "Amoxicillin 500 mg capsule"
    assert (
        submit(registration(CO_AMOXICLAV))[0].product
        == "Amoxicillin 500 mg + Clavulanic acid 125 mg film coated tablet"
    )
    given = submit(registration(contract.AMOXICILLIN, "Amoxil 500"))[0]
    assert given.product == "Amoxil 500"
    assert given.product_details == contract.ProductDetails.model_validate(contract.AMOXICILLIN)


@pytest.mark.parametrize(
    "details, loc",
    [
        ({**contract.AMOXICILLIN, "dosage_form": "lozenge"}, "dosage_form"),
        ({**contract.AMOXICILLIN, "strength": {"value": "0", "unit": "mg"}}, "strength"),
        ({**contract.AMOXICILLIN, "strength": {"value": "5e2", "unit": "mg"}}, "strength"),
        ({**contract.AMOXICILLIN, "strength": {"value": "500", "unit": "grains"}}, "strength"),
        ({**contract.AMOXICILLIN, "active_ingredients": []}, "active_ingredients"),
        (
            {
                **CO_AMOXICLAV,
                "active_ingredients": [{"inn": "Amoxicillin"}, {"inn": "Clavulanic acid"}],
            },
            "active_ingredients",
        ),
        (
            {
                **contract.AMOXICILLIN,
                "active_ingredients": [{"inn": "Amoxicillin"}, {"inn": "amoxicillin"}],
            },
            "active_ingredients",
        ),
        (
            {**contract.AMOXICILLIN, "active_ingredients": [{"inn": "<b>x</b>"}]},
            "active_ingredients",
        ),
    ],
)
def test_a_product_that_does_not_identify_itself_is_refused(details, loc):
    with pytest.raises(ValidationError) as refused:
        registration(details)
    assert refused.value.errors()[0]["loc"][:2] == ("product_details", loc)


def test_product_details_are_for_product_registrations_only():
    with pytest.raises(ValidationError) as refused:
        contract.ApplyForLicence(
            facility_id="fac_1", type="dml_formulation", product_details=contract.AMOXICILLIN
        )
    assert refused.value.errors()[0]["loc"] == ("product_details",)


def test_one_open_registration_per_product_identity_not_per_name():
    open_one = submit(registration(contract.AMOXICILLIN, "Amoxil 500"))[0]
    # the same ingredients, strength (500.0 is 500) and form under another name
    same = {**contract.AMOXICILLIN, "strength": {"value": "500.0", "unit": "mg"}}
    same["active_ingredients"] = [{"inn": "AMOXICILLIN"}]
    with pytest.raises(Conflict) as refused:
        submit(registration(same, "Zeemox 500"), [open_one])
    assert refused.value.extra["open_application"] == open_one.id
    for other in (
        {**contract.AMOXICILLIN, "strength": {"value": "250", "unit": "mg"}},
        {**contract.AMOXICILLIN, "dosage_form": "oral_suspension"},
        CO_AMOXICLAV,
    ):
        assert submit(registration(other, "Amoxil 500"), [open_one])[0].status == "submitted"


def test_a_registration_in_force_of_the_same_product_is_renewed_not_registered_again():
    in_force = licence("granted", "product_registration", product_details=contract.AMOXICILLIN)
    with pytest.raises(Conflict) as refused:
        submit(registration(contract.AMOXICILLIN), [in_force])
    assert refused.value.extra["licence_in_force"] == in_force.id


def scheduled_registration() -> contract.Licence:
    return licence(
        "inspection_scheduled", "product_registration", product_details=contract.AMOXICILLIN
    )


def test_a_product_registration_is_granted_with_its_registration_number():
    grant = request("granted", decision_ref="DRAP/REG/2026/0091")
    with pytest.raises(InvalidInput) as refused:
        domain.decide(scheduled_registration(), grant, DRAP, NOW)
    assert refused.value.errors[0]["loc"] == ["registration_number"]
    numbered = request("granted", decision_ref="DRAP/REG/2026/0091", registration_number="082341")
    granted, event = domain.decide(scheduled_registration(), numbered, DRAP, NOW)
    assert granted.registration_number == "082341"
    assert event.change.fields["registration_number"] == "082341"


@pytest.mark.parametrize(
    "before, to, fields",
    [
        (licence("inspection_scheduled"), "granted", {"decision_ref": "DRAP/LIC/1"}),
        (licence("granted", "product_registration"), "suspended", {"decision_ref": "DRAP/LIC/2"}),
        (licence("submitted", "product_registration"), "under_review", {}),
    ],
)
def test_a_registration_number_is_refused_anywhere_else(before, to, fields):
    with pytest.raises(InvalidInput) as refused:
        domain.decide(before, request(to, registration_number="082341", **fields), DRAP, NOW)
    assert refused.value.errors[0]["loc"] == ["registration_number"]


def test_a_registration_number_is_held_by_one_licence():
    granted = licence("granted", "product_registration", registration_number="082341")
    domain.check_registration_number_free(granted, None)
    domain.check_registration_number_free(granted, granted.id)
    with pytest.raises(Conflict) as refused:
        domain.check_registration_number_free(granted, "lic_other")
    assert refused.value.extra["licence_holding"] == "lic_other"
    assert refused.value.errors[0]["loc"] == ["registration_number"]


# --- renewal as its own application ----------------------------------------------------


def apply_for_renewal(renewed: contract.Licence, same_type=None, now=NOW):
    same_type = [renewed] if same_type is None else same_type
    return domain.apply_for_renewal(renewed, plant(), same_type, "lic_renewal", INVESTOR, now)


def test_a_renewal_application_copies_the_licence_and_names_it():
    renewed = licence("granted", "product_registration", product="Amoxil", registration_number="1")
    application, event = apply_for_renewal(renewed)
    assert application.renews == renewed.id and application.status == "submitted"
    assert (application.type, application.product) == ("product_registration", "Amoxil")
    assert application.registration_number is None  # the licence keeps holding it
    assert event.routing_key == "license.submitted" and application.version == 1


def test_the_renewal_window_is_the_last_180_days_of_validity():
    renewed = licence("granted", valid_until=NOW + timedelta(days=181))
    with pytest.raises(Conflict) as early:
        apply_for_renewal(renewed)
    assert early.value.extra["window_opens"] == "2026-12-01T09:00:00.000Z"
    assert apply_for_renewal(renewed, now=NOW + timedelta(days=1))[0].status == "submitted"


@pytest.mark.parametrize("status", ["suspended", "revoked", "expired", "submitted"])
def test_only_a_licence_in_force_is_renewed(status):
    with pytest.raises(Conflict) as refused:
        apply_for_renewal(licence(status), same_type=[])
    assert refused.value.extra["licence_status"] == status


def test_a_licence_past_its_valid_until_is_not_renewed_even_before_the_sweep():
    with pytest.raises(Conflict):
        apply_for_renewal(licence("granted", valid_until=NOW - timedelta(seconds=1)))


def test_the_licence_as_it_is_now_decides_not_as_it_was_read():
    read = licence("granted")
    suspended_since = read.model_copy(update={"status": "suspended", "version": 6})
    with pytest.raises(Conflict):
        apply_for_renewal(read, same_type=[suspended_since])


def test_one_open_renewal_application_per_licence():
    renewed = licence("granted")
    open_renewal = licence("under_review", id="lic_open", renews=renewed.id)
    with pytest.raises(Conflict) as refused:
        apply_for_renewal(renewed, same_type=[renewed, open_renewal])
    assert refused.value.extra["open_application"] == "lic_open"


def test_a_renewal_application_is_not_itself_renewed():
    application = licence("granted", renews="lic_x")
    with pytest.raises(Conflict):
        apply_for_renewal(application)


def scheduled_renewal(renewed: contract.Licence) -> contract.Licence:
    return licence("inspection_scheduled", id="lic_renewal", renews=renewed.id)


def test_granting_a_renewal_extends_the_licence_and_ends_the_application():
    renewed = licence("granted")
    application = scheduled_renewal(renewed)
    grant = request("granted", decision_ref="DRAP/LIC/2027/0001")
    changes = domain.decide_changes(application, grant, DRAP, NOW, plant(), renewed)

    [(before_application, (ended, ended_event)), (before_licence, (extended, renewed_event))] = (
        changes
    )
    assert (before_application, before_licence) == (application, renewed)
    assert (
        ended.status == "renewal_granted" and ended_event.routing_key == "license.renewal_granted"
    )
    assert extended.status == "granted" and extended.version == renewed.version + 1
    assert renewed_event.routing_key == "license.renewed"
    assert extended.valid_until == renewed.valid_until.replace(year=renewed.valid_until.year + 5)
    assert extended.decision_ref == "DRAP/LIC/2027/0001" and extended.expiry_warnings == []
    assert renewed_event.change.fields["renewal_application"] == application.id
    assert renewed_event.change.fields["valid_until"] == extended.valid_until
    assert "renewal_application" not in extended.model_dump()


def test_a_renewal_is_granted_to_a_later_valid_until_only():
    renewed = licence("granted")
    grant = request(
        "granted", decision_ref="DRAP/LIC/2027/0001", valid_until=renewed.valid_until.isoformat()
    )
    with pytest.raises(InvalidInput) as refused:
        domain.decide_changes(scheduled_renewal(renewed), grant, DRAP, NOW, plant(), renewed)
    assert refused.value.errors[0]["loc"] == ["valid_until"]


@pytest.mark.parametrize("status", ["suspended", "revoked", "expired"])
def test_a_renewal_of_a_licence_no_longer_in_force_is_not_granted(status):
    renewed = licence(status)
    grant = request("granted", decision_ref="DRAP/LIC/2027/0001")
    with pytest.raises(Conflict):
        domain.decide_changes(scheduled_renewal(renewed), grant, DRAP, NOW, plant(), renewed)
    rejection = request("rejected", decision_ref="DRAP/LIC/2027/0002")
    [(_, (rejected, _))] = domain.decide_changes(
        scheduled_renewal(renewed), rejection, DRAP, NOW, plant(), renewed
    )
    assert rejected.status == "rejected"


def test_a_granted_renewal_application_is_final():
    ended = licence("renewal_granted", renews="lic_x")
    assert domain.allowed_requests("renewal_granted") == []
    with pytest.raises(Conflict):
        domain.decide(ended, request("suspended", decision_ref="DRAP/1"), DRAP, NOW)


def test_regulators_may_still_renew_directly():
    renewed = licence("granted")
    direct = request("renewed", decision_ref="DRAP/LIC/2027/0003", valid_until="2031-12-31")
    [(_, (after, event))] = domain.decide_changes(renewed, direct, DRAP, NOW)
    assert after.status == "granted" and event.routing_key == "license.renewed"
    assert "renewal_application" not in event.change.fields


@pytest.mark.parametrize("status", domain.OPEN_STATUSES)
def test_a_licence_with_an_open_renewal_application_is_not_renewed_directly(status):
    renewed = licence("granted")
    open_renewal = licence(status, id="lic_open", renews=renewed.id)
    direct = request("renewed", decision_ref="DRAP/LIC/2027/0003", valid_until="2031-12-31")
    with pytest.raises(Conflict) as refused:
        domain.decide_changes(
            renewed, direct, DRAP, NOW, plant(), renewal_applications=[open_renewal]
        )
    assert refused.value.extra == {"open_application": "lic_open", "application_status": status}
    assert "lic_open" in refused.value.detail and "grant it" in refused.value.detail


def test_only_an_open_renewal_application_of_the_licence_stops_a_direct_renewal():
    renewed = licence("granted")
    decided = [
        licence(status, id=f"lic_{status}_renewal", renews=renewed.id)
        for status in ("rejected", "renewal_granted")
    ]
    of_another = licence("under_review", id="lic_other_renewal", renews="lic_other")
    direct = request("renewed", decision_ref="DRAP/LIC/2027/0003", valid_until="2031-12-31")
    [(_, (after, event))] = domain.decide_changes(
        renewed, direct, DRAP, NOW, plant(), renewal_applications=[*decided, of_another]
    )
    assert event.routing_key == "license.renewed" and after.valid_until > renewed.valid_until


def test_an_open_renewal_application_leaves_every_other_decision_alone():
    renewed = licence("granted")
    open_renewal = licence("submitted", id="lic_open", renews=renewed.id)
    suspension = request("suspended", decision_ref="DRAP/LIC/2027/0004")
    [(_, (after, _))] = domain.decide_changes(
        renewed, suspension, DRAP, NOW, plant(), renewal_applications=[open_renewal]
    )
    assert after.status == "suspended"


def test_a_renewal_is_one_extension_whichever_way_the_regulator_takes():
    renewed = licence("granted")
    application = scheduled_renewal(renewed)
    direct = request("renewed", decision_ref="DRAP/LIC/2027/0003", valid_until="2031-12-31")
    with pytest.raises(Conflict):
        domain.decide(renewed, direct, DRAP, NOW, plant(), [application])
    grant = request("granted", decision_ref="DRAP/LIC/2027/0001")
    [_, (_, (extended, _))] = domain.decide_changes(application, grant, DRAP, NOW, plant(), renewed)
    assert extended.valid_until == domain.default_valid_until(renewed.valid_until)
