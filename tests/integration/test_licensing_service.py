"""The licensing service in real nameko containers, fed real facilities' events through
the broker: its projection of facilities, the lockout after a rejection, one application
at a time per plant and type, a decommissioned plant's licences revoked exactly once,
and the expiry sweep expiring each licence exactly once while two instances sweep the
same database."""

import json
from datetime import datetime, timedelta

import eventlet
import pytest
from kombu import Connection, Queue
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_waiter

from ops.processes import wait_until
from services.facilities import contract as facilities_contract
from services.licensing import contract, domain
from services.licensing.service import LicensingService
from shared import messaging
from shared.clock import utcnow
from shared.codec import rfc3339
from shared.errors import Conflict, NotFound, RuleViolated
from shared.outbox import event_publisher

from support import contract_event, handled

INVESTOR = {"key_id": "key_1", "role": "investor", "owner": "Lahore Pharma Holdings"}
REGULATOR = {"key_id": "key_2", "role": "regulator", "owner": "DRAP Licensing Division"}
SWEEP_SECONDS = 0.2
AMOXICILLIN = {
    "dosage_form": "capsule",
    "strength": {"value": "500", "unit": "mg"},
    "active_ingredients": [{"inn": "Amoxicillin"}],
}


@pytest.fixture
def config(service_config):
    return {**service_config, "JVREG_EXPIRY_SWEEP_SECONDS": SWEEP_SECONDS}


@pytest.fixture
def licensing(config, container_factory):
    container = container_factory(LicensingService, config)
    container.start()
    store = next(d for d in container.dependencies if d.attr_name == "store")
    with ServiceRpcProxy("licensing", config) as proxy:
        yield container, proxy, store.db


def facility_event(
    routing_key, facility_id, sequence, status, venture_id="jv_1", kind="formulation_plant"
):
    return contract_event(
        facilities_contract.EVENTS[routing_key],
        facility={
            "id": facility_id,
            "venture_id": venture_id,
            "owner": INVESTOR["owner"],
            "kind": kind,
            "status": status,
            "name": "Rashakai Formulation Plant 1",
            "version": sequence,
        },
        change={"to": status, "reason": "in a test", "actor": INVESTOR},
    )


@pytest.fixture
def facilities(amqp_uri):
    """The facilities service's side: publish its events, and wait for licensing to know."""
    publish = event_publisher(amqp_uri, "facilities")

    def registered(
        db, facility_id: str, venture_id: str = "jv_1", kind: str = "formulation_plant"
    ) -> str:
        publish(facility_event("facility.registered", facility_id, 1, "planned", venture_id, kind))
        wait_until(lambda: db.facilities.find_one({"_id": facility_id}), 20, "projected")
        return facility_id

    registered.publish = publish
    return registered


def apply(proxy, facility_id: str, licence_type: str = "dml_formulation", **fields) -> dict:
    body = {"facility_id": facility_id, "type": licence_type, **fields}
    return proxy.apply_for_license(json.dumps(body), INVESTOR)


def move(proxy, licence: dict, to: str, **fields) -> dict:
    body = {"to": to, "reason": f"moving to {to} in a test", **fields}
    return proxy.transition_license(licence["id"], json.dumps(body), REGULATOR)


def grant(proxy, licence: dict, valid_until: str | None = None, **grant_fields) -> dict:
    licence = move(proxy, licence, "under_review")
    licence = move(proxy, licence, "inspection_scheduled", inspection_date="2026-04-02")
    fields = {"decision_ref": "DRAP/LIC/2026/0412", **grant_fields}
    if valid_until:
        fields["valid_until"] = valid_until
    return move(proxy, licence, "granted", **fields)


def registered(proxy, facility_id: str, strength: int) -> dict:
    """A product registration granted: its product and number its own by `strength`."""
    product = {**AMOXICILLIN, "strength": {"value": str(strength), "unit": "mg"}}
    applied = apply(proxy, facility_id, "product_registration", product_details=product)
    return grant(proxy, applied, registration_number=f"X{strength:05d}")


def test_the_facility_projection_follows_facilities_events(licensing, facilities):
    container, proxy, db = licensing
    with pytest.raises(NotFound) as unknown:
        apply(proxy, "fac_unknown")
    assert unknown.value.errors[0]["loc"] == ["facility_id"]

    facilities(db, "fac_a", venture_id="jv_a")
    licence = apply(proxy, "fac_a")
    assert (licence["status"], licence["version"]) == ("submitted", 1)
    assert (licence["venture_id"], licence["owner"]) == ("jv_a", INVESTOR["owner"])

    # Sequence 3 before 2, and 2 twice: applied once each, in order.
    operational = facility_event("facility.status_changed", "fac_a", 2, "operational")
    decommissioned = facility_event("facility.status_changed", "fac_a", 3, "decommissioned")
    with handled(container, "follow_facility", operational, times=2):
        facilities.publish(decommissioned)
        facilities.publish(operational)
        facilities.publish(operational)
    wait_until(
        lambda: db.facilities.find_one({"_id": "fac_a"})["sequence"] == 3, 30, "both applied"
    )
    assert db.facilities.find_one({"_id": "fac_a"})["status"] == "decommissioned"
    with pytest.raises(Conflict):
        apply(proxy, "fac_a")
    assert db.licences.count_documents({"facility_id": "fac_a"}) == 1


def test_the_lifecycle_is_recorded_in_history_and_events(licensing, facilities, amqp_uri):
    _, proxy, db = licensing
    queue = Queue(
        "test-regulator",
        exchange=messaging.events_exchange("licensing"),
        routing_key="license.#",
        durable=True,
    )
    with Connection(amqp_uri) as connection:
        queue(connection.channel()).declare()
    facilities(db, "fac_b")
    licence = grant(proxy, apply(proxy, "fac_b"))
    licence = move(proxy, licence, "suspended", decision_ref="DRAP/LIC/2026/0500")
    licence = move(proxy, licence, "granted", decision_ref="DRAP/LIC/2026/0501")
    with pytest.raises(Conflict) as illegal:
        move(proxy, licence, "under_review")
    assert illegal.value.extra == {
        "current": "granted",
        "allowed": ["renewed", "revoked", "suspended"],
    }
    assert (licence["status"], licence["version"]) == ("granted", 6)

    history = proxy.license_history(licence["id"], None, 50)
    assert [(h["sequence"], h["from"], h["to"], h["event"]) for h in history] == [
        (1, None, "submitted", "license.submitted"),
        (2, "submitted", "under_review", "license.under_review"),
        (3, "under_review", "inspection_scheduled", "license.inspection_scheduled"),
        (4, "inspection_scheduled", "granted", "license.granted"),
        (5, "granted", "suspended", "license.suspended"),
        (6, "suspended", "granted", "license.reinstated"),
    ]
    assert history[2]["fields"] == {"inspection_date": "2026-04-02"}
    assert history[0]["role"] == "investor" and history[5]["role"] == "regulator"
    assert proxy.license_history(licence["id"], history[3]["id"], 1) == [history[4]]

    events: list[dict] = []

    def all_published():
        with Connection(amqp_uri) as connection:
            bound = queue(connection.channel())
            while (
                message := bound.get(no_ack=True, accept=messaging.EVENT_CONTENT_TYPES)
            ) is not None:
                events.append(message.payload)
        return len(events) >= 6

    wait_until(all_published, 20, "six licence events")
    assert [(e["sequence"], e["type"]) for e in events] == [
        (h["sequence"], "jvreg." + h["event"]) for h in history
    ]
    assert events[3]["data"]["license"]["valid_until"] == licence["valid_until"]
    assert events[4]["data"]["change"]["fields"] == {"decision_ref": "DRAP/LIC/2026/0500"}


def test_a_rejected_applicant_waits_ninety_days(licensing, facilities):
    _, proxy, db = licensing
    facilities(db, "fac_c")
    licence = apply(proxy, "fac_c", "dml_repacking")
    licence = move(proxy, licence, "under_review")
    licence = move(proxy, licence, "inspection_scheduled", inspection_date="2026-04-02")
    rejected = move(proxy, licence, "rejected", decision_ref="DRAP/LIC/2026/0013")

    with pytest.raises(Conflict) as locked:
        apply(proxy, "fac_c", "dml_repacking")
    rejected_at = datetime.fromisoformat(rejected["updated_at"])
    ends = rfc3339(rejected_at + timedelta(days=90))
    assert locked.value.extra == {"locked_until": ends}
    assert f"from {ends} ({ends[:10]})" in locked.value.detail
    # Another type, or the same after the 90 days: no lockout.
    assert apply(proxy, "fac_c", "gmp_certificate")["status"] == "submitted"
    db.licences.update_one(
        {"_id": rejected["id"]}, {"$set": {"updated_at": utcnow() - timedelta(days=90)}}
    )
    assert apply(proxy, "fac_c", "dml_repacking")["status"] == "submitted"


def test_the_list_filters_licences(licensing, facilities):
    _, proxy, db = licensing
    facilities(db, "fac_d", venture_id="jv_d")
    facilities(db, "fac_e", venture_id="jv_e")
    soon = grant(proxy, apply(proxy, "fac_d"), valid_until="2027-01-31")
    later = grant(proxy, apply(proxy, "fac_e"), valid_until="2030-01-31")
    product = apply(proxy, "fac_d", "product_registration", product_details=AMOXICILLIN)

    def ids(filters):
        return [licence["id"] for licence in proxy.list_licenses(filters, None, 50)]

    assert ids({"venture_id": "jv_d"}) == [soon["id"], product["id"]]
    assert ids({"facility_id": "fac_e"}) == [later["id"]]
    assert ids({"type": "product_registration"}) == [product["id"]]
    assert ids({"status": "granted"}) == [soon["id"], later["id"]]
    assert ids({"expiring_before": "2027-02-01"}) == [soon["id"]]
    assert ids({"expiring_before": "2027-01-31"}) == []


def test_two_instances_expire_each_licence_exactly_once(
    licensing, config, container_factory, facilities
):
    first, proxy, db = licensing
    second = container_factory(LicensingService, config)
    second.start()
    facilities(db, "fac_f")
    licences = [registered(proxy, "fac_f", strength=n + 1) for n in range(40)]
    # Time passes: every licence falls due at the same moment, under both sweeps.
    db.licences.update_many(
        {"facility_id": "fac_f"}, {"$set": {"valid_until": utcnow() - timedelta(seconds=1)}}
    )

    def all_expired():
        return db.licences.count_documents({"facility_id": "fac_f", "status": "expired"}) == 40

    wait_until(all_expired, 30, "every licence expired")
    # Let each instance finish the sweep it may be in, and one more.
    for container in (first, second, first, second):
        with entrypoint_waiter(container, "expire_due_licences", timeout=10):
            pass

    for licence in licences:
        assert db.licences.find_one({"_id": licence["id"]})["version"] == 5
        expiries = db.history.count_documents({"license_id": licence["id"], "to": "expired"})
        assert expiries == 1
        records = db.outbox.count_documents(
            {"subject": licence["id"], "routing_key": "license.expired"}
        )
        assert records == 1
        assert proxy.license_history(licence["id"], None, 50)[-1]["actor"]["role"] == "system"


def test_a_change_decided_on_a_stale_read_does_not_happen(licensing, facilities):
    container, proxy, db = licensing
    facilities(db, "fac_g")
    licence_id = grant(proxy, apply(proxy, "fac_g"), "2030-12-31")["id"]
    store = next(d for d in container.dependencies if d.attr_name == "store").repository()
    stale = store.get(licence_id)
    moment = stale.valid_until + timedelta(milliseconds=1)
    # Two sweeps, at a moment past valid_until, read the same granted licence and both
    # decide to expire it.
    decided = [domain.expire(stale, moment) for _ in range(2)]
    pool = eventlet.GreenPool()
    outcomes = list(pool.imap(lambda change: store.commit(stale, change), decided))
    assert sorted(outcomes) == [False, True]
    assert db.history.count_documents({"license_id": licence_id, "to": "expired"}) == 1
    assert db.outbox.count_documents({"subject": licence_id, "routing_key": "license.expired"}) == 1


def test_a_plant_holds_only_the_licence_types_of_its_kind(licensing, facilities):
    _, proxy, db = licensing
    facilities(db, "fac_w", kind="warehouse")
    facilities(db, "fac_api", kind="api_plant")
    with pytest.raises(RuleViolated) as refused:
        apply(proxy, "fac_w")
    assert refused.value.errors[0]["loc"] == ["type"]
    assert refused.value.extra == {"facility_kind": "warehouse", "allowed": []}
    with pytest.raises(RuleViolated) as refused:
        apply(proxy, "fac_api", "dml_formulation")
    assert "dml_basic" in refused.value.extra["allowed"]
    assert apply(proxy, "fac_api", "dml_basic")["status"] == "submitted"
    assert db.licences.count_documents({"facility_id": {"$in": ["fac_w", "fac_api"]}}) == 1


def test_one_application_at_a_time_even_when_sent_at_once(licensing, facilities, config):
    _, proxy, db = licensing
    facilities(db, "fac_h")

    def attempt(_):
        with ServiceRpcProxy("licensing", config) as own_proxy:  # a reply queue each
            try:
                return apply(own_proxy, "fac_h")["id"]
            except Conflict as conflict:
                return conflict.extra

    outcomes = list(eventlet.GreenPool(6).imap(attempt, range(6)))
    accepted = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert len(accepted) == 1
    assert all(
        o == {"open_application": accepted[0], "application_status": "submitted"}
        for o in outcomes
        if not isinstance(o, str)
    )
    # Decided, the type may be applied for again only once no licence of it is in force.
    granted = grant(proxy, {"id": accepted[0]})
    with pytest.raises(Conflict) as in_force:
        apply(proxy, "fac_h")
    assert in_force.value.extra == {"licence_in_force": granted["id"], "licence_status": "granted"}


def test_a_decommissioned_plant_ends_its_licences_in_force_exactly_once(licensing, facilities):
    container, proxy, db = licensing
    facilities(db, "fac_k")
    granted = grant(proxy, apply(proxy, "fac_k"))
    suspended = move(
        proxy,
        grant(proxy, apply(proxy, "fac_k", "dml_repacking")),
        "suspended",
        decision_ref="DRAP/LIC/2026/0601",
    )
    open_application = apply(proxy, "fac_k", "gmp_certificate")

    decommissioned = facility_event("facility.status_changed", "fac_k", 2, "decommissioned")
    with handled(container, "follow_facility", decommissioned, times=2):
        facilities.publish(decommissioned)
        facilities.publish(decommissioned)  # delivered twice: applied once
    for before in (granted, suspended):
        after = proxy.get_license(before["id"])
        assert (after["status"], after["version"]) == ("revoked", before["version"] + 1)
        history = proxy.license_history(before["id"], None, 50)
        assert history[-1]["reason"] == "facility fac_k was decommissioned"
        assert history[-1]["actor"]["key_id"] == "system:plant-decommissioned"
        revocations = db.outbox.count_documents(
            {"subject": before["id"], "routing_key": "license.revoked"}
        )
        assert revocations == 1
    # An application still open is not a licence in force; it is granted no more.
    assert proxy.get_license(open_application["id"])["status"] == "submitted"
    reviewed = move(proxy, open_application, "under_review")
    scheduled = move(proxy, reviewed, "inspection_scheduled", inspection_date="2026-04-02")
    with pytest.raises(Conflict) as refused:
        move(proxy, scheduled, "granted", decision_ref="DRAP/LIC/2026/0602")
    assert refused.value.errors[0]["loc"] == ["to"]


def test_a_grant_decided_before_the_plant_ended_is_not_committed_after(licensing, facilities):
    """A grant (or reinstatement) is decided on the plant as read before its transaction:
    if the plant's decommissioning commits in between, it found this licence not in
    force and left it, so the grant must not put it in force on the ended plant (chaos
    scenario 8 checks the same: no licence of a decommissioned plant in force)."""
    container, proxy, db = licensing
    facilities(db, "fac_r")
    scheduled = move(
        proxy,
        move(proxy, apply(proxy, "fac_r"), "under_review"),
        "inspection_scheduled",
        inspection_date="2026-04-02",
    )
    store = next(d for d in container.dependencies if d.attr_name == "store").repository()
    request = domain.RequestTransition(
        to="granted", reason="inspection passed", decision_ref="DRAP/LIC/2026/0701"
    )
    decommissioned = facility_event("facility.status_changed", "fac_r", 2, "decommissioned")
    decided_on = []

    def decide(licence, facility, renewed, renewal_applications):
        if not decided_on:  # the plant ends after the read, before the commit
            with handled(container, "follow_facility", decommissioned):
                facilities.publish(decommissioned)
        decided_on.append(facility.status)
        return domain.decide_changes(
            licence, request, REGULATOR, utcnow(), facility, renewed, renewal_applications
        )

    with pytest.raises(Conflict) as refused:
        store.transition(scheduled["id"], decide)
    assert decided_on == ["planned", "decommissioned"]
    assert refused.value.errors[0]["loc"] == ["to"]
    assert proxy.get_license(scheduled["id"])["status"] == "inspection_scheduled"
    assert db.outbox.count_documents({"subject": scheduled["id"]}) == 3


def test_two_instances_send_each_expiry_warning_exactly_once(
    licensing, config, container_factory, facilities
):
    first, proxy, db = licensing
    second = container_factory(LicensingService, config)
    second.start()
    facilities(db, "fac_x")
    soon = rfc3339(utcnow() + timedelta(days=20))
    later = rfc3339(utcnow() + timedelta(days=100))
    near = grant(proxy, apply(proxy, "fac_x"), valid_until=soon)
    far = grant(proxy, apply(proxy, "fac_x", "dml_repacking"), valid_until=later)

    def warned(licence: dict) -> bool:
        return bool(db.licences.find_one({"_id": licence["id"]})["expiry_warnings"])

    wait_until(lambda: warned(near) and warned(far), 30, "both licences warned of")
    for container in (first, second, first, second):
        with entrypoint_waiter(container, "expire_due_licences", timeout=10):
            pass

    for licence, days_before, sent in ((near, 30, [180, 90, 30]), (far, 180, [180])):
        now = proxy.get_license(licence["id"])
        assert (now["status"], now["version"]) == ("granted", licence["version"] + 1)
        assert now["expiry_warnings"] == sent
        warnings = list(
            db.outbox.find({"subject": licence["id"], "routing_key": "license.expiring"})
        )
        assert len(warnings) == 1
        history = proxy.license_history(licence["id"], None, 50)
        assert history[-1]["event"] == "license.expiring"
        assert history[-1]["fields"] == {"days_before": days_before}


def test_a_registration_number_is_issued_once_even_when_granted_at_once(
    licensing, facilities, config
):
    _, proxy, db = licensing
    facilities(db, "fac_r")
    scheduled = []
    for strength in ("250", "500", "750", "1000"):
        details = {**AMOXICILLIN, "strength": {"value": strength, "unit": "mg"}}
        licence = apply(proxy, "fac_r", "product_registration", product_details=details)
        licence = move(proxy, licence, "under_review")
        scheduled.append(move(proxy, licence, "inspection_scheduled", inspection_date="2026-04-02"))

    def attempt(licence):
        with ServiceRpcProxy("licensing", config) as own_proxy:  # a reply queue each
            fields = {"decision_ref": "DRAP/REG/2026/0091", "registration_number": "082341"}
            try:
                return move(own_proxy, licence, "granted", **fields)["id"]
            except Conflict as conflict:
                return conflict.extra

    outcomes = list(eventlet.GreenPool(4).imap(attempt, scheduled))
    granted = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert len(granted) == 1
    assert [o for o in outcomes if not isinstance(o, str)] == [{"licence_holding": granted[0]}] * 3
    assert db.licences.count_documents({"registration_number": "082341"}) == 1
    assert db.registration_numbers.find_one({"_id": "082341"})["license_id"] == granted[0]
    refused = [licence["id"] for licence in scheduled if licence["id"] != granted[0]]
    assert db.licences.count_documents({"_id": {"$in": refused}, "status": "granted"}) == 0


def renewable(proxy, db, facility_id: str) -> dict:
    """A licence granted until 100 days from now: inside the renewal window."""
    until = (utcnow() + timedelta(days=100)).date().isoformat()
    return grant(proxy, apply(proxy, facility_id), until)


def test_one_renewal_application_at_a_time_even_when_sent_at_once(licensing, facilities, config):
    _, proxy, db = licensing
    facilities(db, "fac_n")
    licence = renewable(proxy, db, "fac_n")

    def attempt(_):
        with ServiceRpcProxy("licensing", config) as own_proxy:
            try:
                return own_proxy.apply_for_renewal(licence["id"], INVESTOR)["id"]
            except Conflict as conflict:
                return conflict.extra

    outcomes = list(eventlet.GreenPool(5).imap(attempt, range(5)))
    accepted = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert len(accepted) == 1
    assert all(
        o == {"open_application": accepted[0], "application_status": "submitted"}
        for o in outcomes
        if not isinstance(o, str)
    )
    assert db.licences.count_documents({"renews": licence["id"]}) == 1


def test_a_granted_renewal_renews_the_licence_in_the_same_transaction(
    licensing, facilities, amqp_uri
):
    _, proxy, db = licensing
    facilities(db, "fac_x")
    licence = renewable(proxy, db, "fac_x")
    application = proxy.apply_for_renewal(licence["id"], INVESTOR)
    application = move(proxy, application, "under_review")
    application = move(proxy, application, "inspection_scheduled", inspection_date="2026-04-02")
    ended = move(proxy, application, "granted", decision_ref="DRAP/LIC/2027/0001")

    assert ended["status"] == "renewal_granted" and ended["renews"] == licence["id"]
    renewed = proxy.get_license(licence["id"])
    assert renewed["status"] == "granted"
    assert renewed["valid_until"] > licence["valid_until"]
    assert renewed["decision_ref"] == "DRAP/LIC/2027/0001"
    [renewal] = db.outbox.find({"subject": licence["id"], "routing_key": "license.renewed"})
    fields = json.loads(renewal["envelope"])["data"]["change"]["fields"]
    assert fields["renewal_application"] == application["id"]
    assert (
        db.outbox.count_documents(
            {"subject": application["id"], "routing_key": "license.renewal_granted"}
        )
        == 1
    )
    last = proxy.license_history(licence["id"], None, 50)[-1]
    assert (last["event"], last["sequence"]) == ("license.renewed", renewed["version"])
    # Only one licence of the type is in force: the renewal application is not another.
    assert db.licences.count_documents({"facility_id": "fac_x", "status": "granted"}) == 1


def test_a_renewal_application_made_while_a_direct_renewal_commits_stops_it(
    licensing, facilities, config
):
    container, proxy, db = licensing
    facilities(db, "fac_r")
    licence = renewable(proxy, db, "fac_r")
    store = next(d for d in container.dependencies if d.attr_name == "store").repository()
    direct = contract.RequestTransition(
        to="renewed",
        reason="renewed by the Central Licensing Board",
        decision_ref="DRAP/LIC/2027/0003",
        valid_until=utcnow() + timedelta(days=1000),
    )
    # Once the sweep has warned of the expiry (180 days), only this test changes it.
    wait_until(lambda: store.get(licence["id"]).expiry_warnings, 20, "the expiry warning")
    # Decided when no renewal application was open; one is made before it commits.
    stale = store.get(licence["id"])
    decided = domain.decide(stale, direct, REGULATOR, utcnow())
    application = proxy.apply_for_renewal(licence["id"], INVESTOR)
    assert store.commit(stale, decided) is False
    assert store.get(licence["id"]).valid_until == stale.valid_until
    with pytest.raises(Conflict) as refused:
        move(proxy, licence, "renewed", decision_ref="DRAP/LIC/2027/0004", valid_until="2031-12-31")
    assert refused.value.extra["open_application"] == application["id"]

    # Sent at once, the application and the direct renewal never both happen.
    def attempt(kind: str):
        with ServiceRpcProxy("licensing", config) as own_proxy:
            try:
                if kind == "apply":
                    return own_proxy.apply_for_renewal(contested["id"], INVESTOR)["status"]
                body = direct.model_dump_json(exclude_none=True)
                return own_proxy.transition_license(contested["id"], body, REGULATOR)["status"]
            except Conflict as conflict:
                return conflict.extra

    for facility_id in ("fac_r1", "fac_r2", "fac_r3"):
        facilities(db, facility_id)
        contested = renewable(proxy, db, facility_id)
        outcomes = list(eventlet.GreenPool(2).imap(attempt, ["apply", "renew"]))
        renewals = db.history.count_documents(
            {"license_id": contested["id"], "event": "license.renewed"}
        )
        applications = db.licences.count_documents({"renews": contested["id"]})
        assert (renewals, applications) in ((1, 0), (0, 1)), outcomes
