"""Facilities and DRAP licences through the gateway, against the registry's real
processes: a licence's whole lifecycle as a regulator's AMQP queue and the plant's
status see it, automatic expiry with two licensing instances, and bad input."""

import csv
import io
import uuid
from datetime import datetime, timedelta
from functools import partial

import pytest
from kombu import Connection, Queue

from ops.processes import Stack, wait_until
from services.gateway.problems import PROBLEM_CONTENT_TYPE
from services.licensing.domain import default_valid_until
from shared.clock import utcnow
from shared.codec import rfc3339
from shared.messaging import EVENT_CONTENT_TYPES, events_exchange

from support import PLANT, Api, created, venture_body

DML = {"type": "dml_formulation"}
AMOXICILLIN = {
    "dosage_form": "capsule",
    "strength": {"value": "500", "unit": "mg"},
    "active_ingredients": [{"inn": "Amoxicillin"}],
}
PARACETAMOL = {
    "dosage_form": "tablet",
    "strength": {"value": "500", "unit": "mg"},
    "active_ingredients": [{"inn": "Paracetamol"}],
}


def registration(plant: dict, details: dict, **fields) -> dict:
    return {
        "facility_id": plant["id"],
        "type": "product_registration",
        "product_details": details,
        **fields,
    }


class Subscriber:
    """A durable queue of one's own bound to a service's exchange, as a regulator binds
    one (`jvreg watch` does the same); it keeps what arrives, per subject."""

    def __init__(self, amqp_uri: str, service: str, pattern: str):
        self.amqp_uri = amqp_uri
        self.queue = Queue(
            f"e2e-{service}-{uuid.uuid4().hex[:8]}",
            exchange=events_exchange(service),
            routing_key=pattern,
            durable=True,
        )
        with Connection(amqp_uri) as connection:
            self.queue(connection.channel()).declare()
        self.received: list[dict] = []

    def drain(self) -> None:
        with Connection(self.amqp_uri) as connection:
            bound = self.queue(connection.channel())
            while (message := bound.get(accept=EVENT_CONTENT_TYPES)) is not None:
                self.received.append(message.payload)
                message.ack()

    def about(self, subject: str) -> list[dict]:
        return [event for event in self.received if event["subject"] == subject]

    def wait_for(self, subject: str, count: int) -> list[dict]:
        def enough():
            self.drain()
            return len(self.about(subject)) >= count

        wait_until(enough, 30, f"{count} events about {subject}")
        return self.about(subject)


def plant_of(investor) -> dict:
    venture = created(investor, "/v1/ventures", venture_body())
    return created(investor, f"/v1/ventures/{venture['id']}/facilities", PLANT)


def move(regulator, licence: dict, to: str, **fields) -> dict:
    response = regulator.post(
        f"/v1/licenses/{licence['id']}/transitions",
        json={"to": to, "reason": f"DRAP decided: {to}", **fields},
    )
    assert response.status_code == 200, response.text
    return response.json()


def grant(regulator, licence: dict, **fields) -> dict:
    licence = move(regulator, licence, "under_review")
    licence = move(regulator, licence, "inspection_scheduled", inspection_date="2026-05-04")
    return move(regulator, licence, "granted", decision_ref="DRAP/LIC/2026/0412", **fields)


def facility_status(api, facility_id: str, status: str) -> None:
    wait_until(
        lambda: api.get(f"/v1/facilities/{facility_id}").json()["status"] == status,
        30,
        f"facility {status}",
    )


def test_a_licence_lifecycle_reaches_regulators_and_moves_the_plant(
    registry, investor, regulator, receiver
):
    licences = Subscriber(registry["amqp_uri"], "licensing", "license.#")
    facilities = Subscriber(registry["amqp_uri"], "facilities", "facility.#")
    hook = regulator.post(
        "/v1/subscriptions",
        json={"url": receiver.answer("/drap/licensing", 204), "event_types": ["license.#"]},
    )
    assert hook.status_code == 201, hook.text
    plant = plant_of(investor)
    assert plant["status"] == "planned"
    licence = created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    assert (licence["status"], licence["owner"]) == ("submitted", plant["owner"])

    licence = grant(regulator, licence)
    facility_status(investor, plant["id"], "operational")
    licence = move(regulator, licence, "suspended", decision_ref="DRAP/LIC/2026/0480")
    facility_status(investor, plant["id"], "halted")
    licence = move(regulator, licence, "granted", decision_ref="DRAP/LIC/2026/0481")
    facility_status(investor, plant["id"], "operational")
    licence = move(regulator, licence, "revoked", decision_ref="DRAP/LIC/2026/0502")
    facility_status(investor, plant["id"], "halted")
    assert (licence["status"], licence["version"]) == ("revoked", 7)

    steps = [
        ("license.submitted", None, "submitted"),
        ("license.under_review", "submitted", "under_review"),
        ("license.inspection_scheduled", "under_review", "inspection_scheduled"),
        ("license.granted", "inspection_scheduled", "granted"),
        ("license.suspended", "granted", "suspended"),
        ("license.reinstated", "suspended", "granted"),
        ("license.revoked", "granted", "revoked"),
    ]
    events = licences.wait_for(licence["id"], len(steps))
    assert [(e["sequence"], e["type"]) for e in events] == [
        (n, f"jvreg.{step[0]}") for n, step in enumerate(steps, 1)
    ]
    assert len({e["id"] for e in events}) == len(steps)
    for event, (_, source, target) in zip(events, steps, strict=True):
        assert event["source"] == "/jvreg/licensing" and event["specversion"] == "1.0"
        assert event["data"]["license"]["status"] == target
        assert event["data"]["change"]["from"] == source
    assert events[3]["data"]["change"]["fields"]["decision_ref"] == "DRAP/LIC/2026/0412"
    assert events[3]["data"]["change"]["role"] == "regulator"

    # The webhook receiver gets the same events: once each, in order, validly signed.
    def delivered() -> list[dict]:
        return [
            r for r in receiver.received("/drap/licensing") if r.event["subject"] == licence["id"]
        ]

    wait_until(lambda: len(delivered()) >= len(steps), 60, "every event at the webhook")
    signed = [r.verified(hook.json()["secret"]) for r in delivered()]
    assert [e["id"] for e in signed] == [e["id"] for e in events]

    plant_events = facilities.wait_for(plant["id"], 5)
    assert [(e["sequence"], e["type"]) for e in plant_events] == [
        (1, "jvreg.facility.registered"),
        *((n, "jvreg.facility.status_changed") for n in range(2, 6)),
    ]
    walk = [plant_events[0]["data"]["facility"]["status"]] + [
        e["data"]["change"]["to"] for e in plant_events[1:]
    ]
    assert walk == ["planned", "operational", "halted", "operational", "halted"]

    history = investor.get(f"/v1/licenses/{licence['id']}/history")
    assert history.status_code == 200, history.text
    entries = history.json()["items"]
    assert [(h["sequence"], h["event"], h["from"], h["to"]) for h in entries] == [
        (n, *step) for n, step in enumerate(steps, 1)
    ]
    assert entries[0]["role"] == "investor" and entries[0]["actor"]["owner"] == plant["owner"]
    assert {h["role"] for h in entries[1:]} == {"regulator"}
    assert entries[2]["fields"] == {"inspection_date": "2026-05-04"}
    assert all(h["reason"] and h["time"].endswith("Z") for h in entries)

    venture = investor.get(f"/v1/ventures/{plant['venture_id']}").json()
    assert [f["id"] for f in venture["facilities"]] == [plant["id"]]
    assert [(lic["id"], lic["status"]) for lic in venture["licenses"]] == [
        (licence["id"], "revoked")
    ]


def test_a_licence_expires_once_with_two_licensing_instances(
    registry, rabbit_management, investor, regulator, tmp_path
):
    second = Stack(
        registry["env"], log_dir=tmp_path, services=("licensing",), amqp_uris=registry["amqp_uris"]
    )
    second.start()
    try:
        wait_until(
            lambda: rabbit_management.queue(registry["vhost"], "rpc-licensing")["consumers"] == 2,
            60,
            "the second licensing instance",
        )
        licences = Subscriber(registry["amqp_uri"], "licensing", "license.#")
        plant = plant_of(investor)
        soon = utcnow() + timedelta(seconds=6)
        # A second licence due 2 s later: once it has expired, every sweep that could
        # have expired the first one again has run.
        first, later = (
            grant(
                regulator,
                created(investor, "/v1/licenses", {"type": kind, "facility_id": plant["id"]}),
                valid_until=rfc3339(valid_until),
            )
            for kind, valid_until in (
                ("dml_formulation", soon),
                ("dml_repacking", soon + timedelta(seconds=2)),
            )
        )
        assert datetime.fromisoformat(first["valid_until"]) == soon
        facility_status(investor, plant["id"], "operational")
        wait_until(
            lambda: investor.get(f"/v1/licenses/{later['id']}").json()["status"] == "expired",
            60,
            "both licences expired",
        )
        assert second.exited() == []
    finally:
        second.stop()

    def expired(licence_id: str) -> bool:
        licences.drain()
        return any(e["type"] == "jvreg.license.expired" for e in licences.about(licence_id))

    for licence in (first, later):
        wait_until(partial(expired, licence["id"]), 30, f"the expiry of {licence['id']}")
        events = licences.about(licence["id"])
        # A sweep that ran between the grant and valid_until warned of the expiry first
        # (30 days or less were left); whether one did depends on when the sweeps ran.
        # Either way the licence expired once, as its last change.
        assert [(e["sequence"], e["type"]) for e in events][3:] in (
            [(4, "jvreg.license.granted"), (5, "jvreg.license.expired")],
            [
                (4, "jvreg.license.granted"),
                (5, "jvreg.license.expiring"),
                (6, "jvreg.license.expired"),
            ],
        )
        assert events[-1]["data"]["change"]["actor"]["role"] == "system"
        history = investor.get(f"/v1/licenses/{licence['id']}/history").json()["items"]
        assert [h["to"] for h in history].count("expired") == 1
        now = investor.get(f"/v1/licenses/{licence['id']}").json()
        assert now["version"] == events[-1]["sequence"] == len(history)
    facility_status(investor, plant["id"], "halted")


def assert_problem(response, status: int, loc: list | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    if loc:
        assert loc in [error["loc"] for error in problem["errors"]], problem
    return problem


@pytest.fixture
def submitted(investor):
    plant = plant_of(investor)
    return plant, created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})


def unchanged(api, licence: dict) -> None:
    now = api.get(f"/v1/licenses/{licence['id']}").json()
    assert (now["status"], now["version"]) == (licence["status"], licence["version"])
    history = api.get(f"/v1/licenses/{licence['id']}/history").json()["items"]
    assert len(history) == licence["version"]


def test_an_unknown_licence_type_is_refused(investor, ops, submitted):
    plant, _ = submitted
    response = investor.post(
        "/v1/licenses", json={"facility_id": plant["id"], "type": "dml_cosmetics"}
    )
    assert_problem(response, 422, ["body", "type"])
    response = investor.post(
        "/v1/licenses", json={"facility_id": plant["id"], "type": "dml_basic", "product": "X-1"}
    )
    assert_problem(response, 422, ["body", "product"])
    listed = ops.get("/v1/licenses", params={"facility_id": plant["id"]}).json()["items"]
    assert len(listed) == 1


def test_an_unknown_target_state_is_refused(regulator, submitted):
    _, licence = submitted
    response = regulator.post(
        f"/v1/licenses/{licence['id']}/transitions", json={"to": "approved", "reason": "ok"}
    )
    assert_problem(response, 422, ["body", "to"])
    unchanged(regulator, licence)


def test_an_illegal_transition_names_the_allowed_next_states(regulator, submitted):
    _, licence = submitted
    response = regulator.post(
        f"/v1/licenses/{licence['id']}/transitions",
        json={"to": "granted", "reason": "straight to grant", "decision_ref": "DRAP/LIC/1"},
    )
    problem = assert_problem(response, 409)
    assert (problem["current"], problem["allowed"]) == ("submitted", ["under_review"])
    unchanged(regulator, licence)


def test_a_transition_missing_its_required_field_is_refused(regulator, submitted):
    _, licence = submitted
    licence = move(regulator, licence, "under_review")
    response = regulator.post(
        f"/v1/licenses/{licence['id']}/transitions",
        json={"to": "inspection_scheduled", "reason": "site visit"},
    )
    assert_problem(response, 422, ["body", "inspection_date"])
    unchanged(regulator, licence)
    licence = move(regulator, licence, "inspection_scheduled", inspection_date="2026-05-04")
    response = regulator.post(
        f"/v1/licenses/{licence['id']}/transitions", json={"to": "granted", "reason": "passed"}
    )
    assert_problem(response, 422, ["body", "decision_ref"])
    unchanged(regulator, licence)


def test_a_grant_valid_until_in_the_past_is_refused(regulator, submitted):
    _, licence = submitted
    licence = move(regulator, licence, "under_review")
    licence = move(regulator, licence, "inspection_scheduled", inspection_date="2026-05-04")
    response = regulator.post(
        f"/v1/licenses/{licence['id']}/transitions",
        json={
            "to": "granted",
            "reason": "passed",
            "decision_ref": "DRAP/LIC/2026/0412",
            "valid_until": rfc3339(utcnow() - timedelta(days=1)),
        },
    )
    assert_problem(response, 422, ["body", "valid_until"])
    unchanged(regulator, licence)


def test_nobody_reaches_into_another_investors_venture(new_key, ops, investor, submitted):
    plant, licence = submitted
    rival = new_key("investor", f"Rival Holdings {uuid.uuid4().hex[:6]}")

    response = rival.post("/v1/licenses", json={**DML, "facility_id": plant["id"]})
    assert_problem(response, 404, ["body", "facility_id"])
    response = rival.post(f"/v1/ventures/{plant['venture_id']}/facilities", json=PLANT)
    assert_problem(response, 404)
    assert_problem(rival.get(f"/v1/facilities/{plant['id']}"), 404)
    assert_problem(rival.get(f"/v1/licenses/{licence['id']}"), 404)
    assert_problem(rival.get(f"/v1/licenses/{licence['id']}/history"), 404)
    assert rival.get("/v1/facilities", params={"venture_id": plant["venture_id"]}).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert rival.get("/v1/licenses").json()["items"] == []
    # Investors apply; only regulators and ops decide.
    response = investor.post(
        f"/v1/licenses/{licence['id']}/transitions", json={"to": "under_review", "reason": "x"}
    )
    assert_problem(response, 403)

    unchanged(ops, licence)
    facilities = ops.get("/v1/facilities", params={"venture_id": plant["venture_id"]}).json()
    assert [f["id"] for f in facilities["items"]] == [plant["id"]]
    listed = ops.get("/v1/licenses", params={"facility_id": plant["id"]}).json()["items"]
    assert [lic["id"] for lic in listed] == [licence["id"]]


def test_facilities_of_a_dissolved_venture_are_decommissioned(ops, investor, regulator):
    plant = plant_of(investor)
    response = regulator.post(
        f"/v1/ventures/{plant['venture_id']}/status",
        json={"to": "dissolved", "reason": "partners wound the venture up"},
    )
    assert response.status_code == 200, response.text
    facility_status(investor, plant["id"], "decommissioned")
    response = investor.post(f"/v1/ventures/{plant['venture_id']}/facilities", json=PLANT)
    assert_problem(response, 409)
    listed = ops.get("/v1/facilities", params={"venture_id": plant["venture_id"]}).json()
    assert len(listed["items"]) == 1


def test_a_dissolved_ventures_licences_in_force_end_with_its_plants(registry, investor, regulator):
    licences = Subscriber(registry["amqp_uri"], "licensing", "license.#")
    plant = plant_of(investor)
    granted = grant(
        regulator, created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    )
    facility_status(investor, plant["id"], "operational")
    response = regulator.post(
        f"/v1/ventures/{plant['venture_id']}/status",
        json={"to": "dissolved", "reason": "partners wound the venture up"},
    )
    assert response.status_code == 200, response.text
    events = licences.wait_for(granted["id"], 5)
    revoked = events[4]
    assert (revoked["type"], revoked["sequence"]) == ("jvreg.license.revoked", 5)
    assert revoked["data"]["change"]["reason"] == f"facility {plant['id']} was decommissioned"
    assert investor.get(f"/v1/licenses/{granted['id']}").json()["status"] == "revoked"
    facility_status(investor, plant["id"], "decommissioned")


@pytest.mark.parametrize(
    ("kind", "allowed"),
    [
        ("warehouse", []),
        ("api_plant", ["dml_basic", "dml_semi_basic", "dml_experimental", "gmp_certificate"]),
    ],
)
def test_a_licence_type_the_plant_cannot_hold_is_refused(investor, kind, allowed):
    venture = created(investor, "/v1/ventures", venture_body())
    plant = created(investor, f"/v1/ventures/{venture['id']}/facilities", {**PLANT, "kind": kind})
    response = investor.post("/v1/licenses", json={**DML, "facility_id": plant["id"]})
    problem = assert_problem(response, 422, ["body", "type"])
    assert problem["allowed"] == allowed and problem["facility_kind"] == kind


def test_one_open_application_per_plant_and_type(investor, regulator):
    plant = plant_of(investor)
    first = created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    again = investor.post("/v1/licenses", json={**DML, "facility_id": plant["id"]})
    problem = assert_problem(again, 409)
    assert problem["open_application"] == first["id"] and first["id"] in problem["detail"]
    # Another type, or another product's registration, is its own application.
    created(investor, "/v1/licenses", registration(plant, AMOXICILLIN))
    created(investor, "/v1/licenses", registration(plant, PARACETAMOL))
    granted = grant(regulator, first)
    problem = assert_problem(
        investor.post("/v1/licenses", json={**DML, "facility_id": plant["id"]}), 409
    )
    assert problem["licence_in_force"] == granted["id"] and "renew" in problem["detail"]


def test_lists_page_with_a_cursor(ops, investor):
    plant = plant_of(investor)
    venture_id = plant["venture_id"]
    second = created(investor, f"/v1/ventures/{venture_id}/facilities", PLANT)
    first_page = investor.get("/v1/facilities", params={"venture_id": venture_id, "limit": 1})
    assert [f["id"] for f in first_page.json()["items"]] == [plant["id"]]
    cursor = first_page.json()["next_cursor"]
    rest = investor.get(
        "/v1/facilities", params={"venture_id": venture_id, "limit": 1, "cursor": cursor}
    )
    assert [f["id"] for f in rest.json()["items"]] == [second["id"]]
    assert_problem(ops.get("/v1/facilities", params={"kind": "brewery"}), 422, ["query", "kind"])
    assert_problem(
        ops.get("/v1/licenses", params={"expiring_before": "soon"}),
        422,
        ["query", "expiring_before"],
    )


def test_regulators_are_warned_of_an_expiry_ahead(registry, investor, regulator):
    licences = Subscriber(registry["amqp_uri"], "licensing", "license.#")
    plant = plant_of(investor)
    applied = created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    granted = grant(regulator, applied, valid_until=rfc3339(utcnow() + timedelta(days=100)))
    warning = licences.wait_for(granted["id"], 5)[4]
    assert (warning["type"], warning["sequence"]) == ("jvreg.license.expiring", 5)
    assert warning["data"]["change"]["fields"] == {"days_before": 180}
    now = investor.get(f"/v1/licenses/{granted['id']}").json()
    assert (now["status"], now["expiry_warnings"]) == ("granted", [180])


def test_a_product_registration_identifies_the_product_in_the_public_register(
    registry, investor, regulator
):
    plant = plant_of(investor)
    marker = uuid.uuid4().hex[:8]
    number = f"E2E{marker}"
    inn = f"Zolmitriptan{marker}"
    details = {**AMOXICILLIN, "active_ingredients": [{"inn": inn}]}
    applied = created(investor, "/v1/licenses", registration(plant, details))
    assert applied["product"] == f"{inn} 500 mg capsule"
    assert applied["product_details"]["strength"] == {"value": "500", "unit": "mg"}
    # The same product (500.0 mg is 500 mg) under another name is the same application.
    same = {**details, "strength": {"value": "500.0", "unit": "mg"}}
    problem = assert_problem(
        investor.post("/v1/licenses", json=registration(plant, same, product="Zolmi 500")), 409
    )
    assert problem["open_application"] == applied["id"]
    # A registration without its product's details is refused, naming them.
    assert_problem(
        investor.post(
            "/v1/licenses", json={**registration(plant, details), "product_details": None}
        ),
        422,
        ["body", "product_details"],
    )

    licence = move(regulator, applied, "under_review")
    licence = move(regulator, licence, "inspection_scheduled", inspection_date="2026-05-04")
    grant = {"to": "granted", "reason": "approved", "decision_ref": "DRAP/REG/2026/0091"}
    transitions = f"/v1/licenses/{licence['id']}/transitions"
    assert_problem(regulator.post(transitions, json=grant), 422, ["body", "registration_number"])
    granted = move(
        regulator, licence, "granted", decision_ref="DRAP/REG/2026/0091", registration_number=number
    )
    assert granted["registration_number"] == number

    # DRAP issues a number once: another registration granted with it is a 409 naming
    # the licence holding it.
    other = created(investor, "/v1/licenses", registration(plant, PARACETAMOL))
    other = move(regulator, other, "under_review")
    other = move(regulator, other, "inspection_scheduled", inspection_date="2026-05-04")
    taken = regulator.post(
        f"/v1/licenses/{other['id']}/transitions", json={**grant, "registration_number": number}
    )
    problem = assert_problem(taken, 409, ["body", "registration_number"])
    assert problem["licence_holding"] == granted["id"] and granted["id"] in problem["detail"]
    unchanged(regulator, other)

    # The public register finds it by its INN name and by its number, and shows both.
    anyone = Api(registry["url"], None)

    def found(params: dict) -> list[dict]:
        return anyone.get("/v1/public/licenses", params=params).json()["items"]

    wait_until(lambda: found({"q": inn.lower()}), 30, "the registration in the register")
    [by_number] = found({"registration_number": number})
    assert by_number["id"] == granted["id"]
    assert (by_number["dosage_form"], by_number["strength"]) == ("capsule", "500 mg")
    assert by_number["active_ingredients"] == f"{inn} 500 mg"
    assert found({"q": number.lower()})[0]["registration_number"] == number
    exported = anyone.get("/v1/public/licenses", params={"format": "csv", "q": inn.lower()})
    [row] = list(csv.DictReader(io.StringIO(exported.text)))
    assert (row["registration_number"], row["dosage_form"]) == (number, "capsule")


def test_a_licence_is_renewed_by_its_own_application(registry, investor, regulator):
    licences = Subscriber(registry["amqp_uri"], "licensing", "license.#")
    plant = plant_of(investor)
    applied = created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    granted = grant(regulator, applied, valid_until=rfc3339(utcnow() + timedelta(days=100)))
    facility_status(investor, plant["id"], "operational")

    renewal = investor.post(f"/v1/licenses/{granted['id']}/renewal")
    assert renewal.status_code == 201, renewal.text
    application = renewal.json()
    assert renewal.headers["Location"] == f"/v1/licenses/{application['id']}"
    assert (application["renews"], application["status"]) == (granted["id"], "submitted")
    assert application["type"] == "dml_formulation" and application["id"] != granted["id"]
    again = assert_problem(investor.post(f"/v1/licenses/{granted['id']}/renewal"), 409)
    assert again["open_application"] == application["id"]

    application = move(regulator, application, "under_review")
    application = move(regulator, application, "inspection_scheduled", inspection_date="2026-05-04")
    ended = move(regulator, application, "granted", decision_ref="DRAP/LIC/2026/0900")
    assert ended["status"] == "renewal_granted"

    renewed = investor.get(f"/v1/licenses/{granted['id']}").json()
    assert renewed["status"] == "granted" and renewed["decision_ref"] == "DRAP/LIC/2026/0900"
    assert renewed["valid_until"] > granted["valid_until"]

    # The regulator's queue hears the licence renewed, naming the application granted
    # (after an expiry warning or not, as the sweep happened to run before the renewal).
    def event_of(subject: str, event_type: str) -> dict | None:
        licences.drain()
        return next((e for e in licences.about(subject) if e["type"] == event_type), None)

    wait_until(lambda: event_of(granted["id"], "jvreg.license.renewed"), 30, "the renewal")
    event = event_of(granted["id"], "jvreg.license.renewed")
    assert event is not None
    assert event["data"]["change"]["fields"]["renewal_application"] == application["id"]
    assert event["data"]["license"]["valid_until"] == renewed["valid_until"]
    assert event["sequence"] == renewed["version"]
    wait_until(
        lambda: event_of(application["id"], "jvreg.license.renewal_granted"), 30, "its grant"
    )
    # The plant has one DML in force, not two.
    facility = investor.get(f"/v1/facilities/{plant['id']}").json()
    assert facility["status"] == "operational"
    assert facility["licenses_in_force"] == [granted["id"]]
    assert_problem(
        regulator.post(
            f"/v1/licenses/{ended['id']}/transitions",
            json={"to": "suspended", "reason": "x" * 5, "decision_ref": "DRAP/1"},
        ),
        409,
    )


def test_a_renewal_is_applied_for_in_its_window_and_only_for_a_licence_in_force(
    investor, regulator
):
    plant = plant_of(investor)
    applied = created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    granted = grant(regulator, applied, valid_until="2031-12-14")
    early = assert_problem(investor.post(f"/v1/licenses/{granted['id']}/renewal"), 409)
    assert early["window_opens"] == "2031-06-17T23:59:59.999Z"
    assert "2031-06-17" in early["detail"]
    suspended = move(regulator, granted, "suspended", decision_ref="DRAP/LIC/2026/0480")
    problem = assert_problem(investor.post(f"/v1/licenses/{suspended['id']}/renewal"), 409)
    assert problem["licence_status"] == "suspended"
    unchanged(investor, suspended)
    assert_problem(regulator.post(f"/v1/licenses/{granted['id']}/renewal"), 403)
    assert_problem(investor.post("/v1/licenses/lic_000000000000000000000000/renewal"), 404)


def test_a_licence_with_an_open_renewal_application_is_renewed_by_granting_it(investor, regulator):
    plant = plant_of(investor)
    applied = created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    granted = grant(regulator, applied, valid_until=rfc3339(utcnow() + timedelta(days=100)))
    applied_for = investor.post(f"/v1/licenses/{granted['id']}/renewal")
    assert applied_for.status_code == 201, applied_for.text
    application = applied_for.json()

    # DRAP renews on the holder's application: renewing the licence directly while it
    # is open would leave the application to extend the licence a second time.
    direct = regulator.post(
        f"/v1/licenses/{granted['id']}/transitions",
        json={
            "to": "renewed",
            "reason": "renewed by the Central Licensing Board",
            "decision_ref": "DRAP/LIC/2026/0901",
            "valid_until": rfc3339(utcnow() + timedelta(days=1000)),
        },
    )
    problem = assert_problem(direct, 409)
    assert (problem["open_application"], problem["application_status"]) == (
        application["id"],
        "submitted",
    )
    assert application["id"] in problem["detail"]
    licence = investor.get(f"/v1/licenses/{granted['id']}").json()
    assert (licence["valid_until"], licence["decision_ref"]) == (
        granted["valid_until"],
        granted["decision_ref"],
    )

    # Granting the application renews the licence, once: five years past its validity.
    application = move(regulator, application, "under_review")
    application = move(regulator, application, "inspection_scheduled", inspection_date="2026-05-04")
    move(regulator, application, "granted", decision_ref="DRAP/LIC/2026/0902")
    renewed = investor.get(f"/v1/licenses/{granted['id']}").json()
    assert datetime.fromisoformat(renewed["valid_until"]) == default_valid_until(
        datetime.fromisoformat(granted["valid_until"])
    )
    history = investor.get(f"/v1/licenses/{granted['id']}/history").json()["items"]
    assert [
        entry["fields"].get("renewal_application")
        for entry in history
        if entry["event"] == "license.renewed"
    ] == [application["id"]]
