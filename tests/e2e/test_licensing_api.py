"""Facilities and DRAP licences through the gateway, against the registry's real
processes: a licence's whole lifecycle as a regulator's AMQP queue and the plant's
status see it, automatic expiry with two licensing instances, and bad input."""

import uuid
from datetime import datetime, timedelta

import pytest
from kombu import Connection, Queue

from ops.processes import Stack, wait_until
from services.gateway.problems import PROBLEM_CONTENT_TYPE
from shared.clock import utcnow
from shared.codec import rfc3339
from shared.messaging import EVENT_CONTENT_TYPES, events_exchange

from support import PLANT, created, venture_body

DML = {"type": "dml_formulation"}


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

    for licence in (first, later):

        def expired(licence_id=licence["id"]) -> bool:
            licences.drain()
            return "jvreg.license.expired" in [e["type"] for e in licences.about(licence_id)]

        wait_until(expired, 30, f"{licence['id']} expired")
        events = licences.about(licence["id"])
        # A sweep between the grant and valid_until (6 s on) warns of the expiry first
        # (license.expiring, 30 days or fewer left); one that comes later does not.
        after_grant = [e["type"].removeprefix("jvreg.license.") for e in events[3:]]
        assert after_grant in (["granted", "expired"], ["granted", "expiring", "expired"])
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["data"]["change"]["actor"]["role"] == "system"
        history = investor.get(f"/v1/licenses/{licence['id']}/history").json()["items"]
        assert [h["to"] for h in history].count("expired") == 1
        assert investor.get(f"/v1/licenses/{licence['id']}").json()["version"] == len(events)
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
    registration = {"facility_id": plant["id"], "type": "product_registration"}
    created(investor, "/v1/licenses", {**registration, "product": "Amoxicillin 500 mg capsules"})
    created(investor, "/v1/licenses", {**registration, "product": "Paracetamol 500 mg tablets"})
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
