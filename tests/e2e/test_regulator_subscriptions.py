"""Regulators subscribed to licensing decisions, through the gateway and the real
processes: webhooks (signed, once each, in order) and `jvreg watch` (a durable
queue of the regulator's own that loses nothing while the watcher is stopped)."""

import uuid

import pytest

from ops.processes import wait_until

from support import created, inspection_date, venture_body
from watch_process import WatchProcess

PROBLEM = "application/problem+json"


@pytest.fixture
def watches(tmp_path, registry):
    started = []

    def watch(queue: str) -> WatchProcess:
        process = WatchProcess(tmp_path, registry["amqp_uri"], queue)
        started.append(process)
        return process

    yield watch
    for process in started:
        process.kill()


def subscribe(api, url: str, *patterns: str) -> dict:
    response = api.post("/v1/subscriptions", json={"url": url, "event_types": list(patterns)})
    assert response.status_code == 201, response.text
    return response.json()


def new_licence(investor) -> str:
    """A venture, its formulation plant, and a manufacturing licence applied for."""
    venture = created(investor, "/v1/ventures", venture_body())
    facility = created(
        investor,
        f"/v1/ventures/{venture['id']}/facilities",
        {
            "name": "Rashakai Formulation Plant 1",
            "kind": "formulation_plant",
            "address": "Plot 14, Rashakai Special Economic Zone, M-1 Motorway",
            "city": "Nowshera",
            "province": "khyber_pakhtunkhwa",
            "sez": "Rashakai SEZ",
            "capacity": {"value": "120000000", "unit": "tablets/year"},
        },
    )
    licence = created(
        investor, "/v1/licenses", {"facility_id": facility["id"], "type": "dml_formulation"}
    )
    return licence["id"]


def decide(regulator, licence_id: str, to: str, **fields) -> dict:
    body = {"to": to, "reason": f"DRAP decision: {to}", **fields}
    if to not in ("under_review", "deferred", "inspection_scheduled"):
        body.setdefault("decision_ref", f"DRAP/LIC/{uuid.uuid4().hex[:8]}")
    response = regulator.post(f"/v1/licenses/{licence_id}/transitions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


WALK = [
    ("under_review", {}),
    ("inspection_scheduled", {"inspection_date": inspection_date()}),
    ("granted", {}),
    ("suspended", {}),
    ("granted", {}),
    ("revoked", {}),
]
WALK_EVENTS = [
    "license.submitted",
    "license.under_review",
    "license.inspection_scheduled",
    "license.granted",
    "license.suspended",
    "license.reinstated",
    "license.revoked",
]


def test_a_licence_walk_reaches_the_webhook_and_the_watch_once_each_in_order(
    regulator, investor, receiver, watches
):
    subscription = subscribe(regulator, receiver.answer("/drap/licensing", 204), "license.#")
    grants = subscribe(regulator, receiver.answer("/drap/grants", 200), "license.granted")
    watch = watches(f"drap-{uuid.uuid4().hex[:8]}").start()

    licence_id = new_licence(investor)
    for to, fields in WALK:
        decide(regulator, licence_id, to, **fields)

    def mine(events: list[dict]) -> list[dict]:
        return [event for event in events if event["subject"] == licence_id]

    wait_until(
        lambda: (
            len(mine([r.event for r in receiver.received("/drap/licensing")])) == len(WALK_EVENTS)
        ),
        60,
        "every licensing event at the webhook",
    )
    delivered = [
        r.verified(subscription["secret"])
        for r in receiver.received("/drap/licensing")
        if r.event["subject"] == licence_id
    ]
    assert [event["type"] for event in delivered] == [f"jvreg.{t}" for t in WALK_EVENTS]
    assert [event["sequence"] for event in delivered] == list(range(1, len(WALK_EVENTS) + 1))
    assert len({event["id"] for event in delivered}) == len(WALK_EVENTS)

    wait_until(lambda: len(mine(watch.events())) == len(WALK_EVENTS), 60, "every event watched")
    assert [event["id"] for event in mine(watch.events())] == [e["id"] for e in delivered]
    assert watch.stop() == 0

    wait_until(lambda: receiver.received("/drap/grants"), 30, "the grant at the grants hook")
    granted = [r.verified(grants["secret"]) for r in receiver.received("/drap/grants")]
    assert [event["type"] for event in granted if event["subject"] == licence_id] == [
        "jvreg.license.granted"
    ]

    def deliveries_logged() -> list[dict] | None:
        response = regulator.get(f"/v1/subscriptions/{subscription['id']}/deliveries?limit=200")
        items = [d for d in response.json()["items"] if d["subject"] == licence_id]
        done = len(items) == len(WALK_EVENTS) and all(d["status"] == "delivered" for d in items)
        return items if done else None

    wait_until(deliveries_logged, 30, "deliveries logged")
    for delivery in deliveries_logged():
        (attempt,) = delivery["attempts"]
        assert attempt["status_code"] == 204 and attempt["outcome"] == "delivered"

    pages, cursor = [], ""
    while cursor is not None:
        path = f"/v1/subscriptions/{subscription['id']}/deliveries?limit=2&cursor={cursor}"
        body = regulator.get(path).json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
    paged = [d["event_id"] for page in pages for d in page if d["subject"] == licence_id]
    assert paged == [event["id"] for event in delivered]
    assert all(len(page) <= 2 for page in pages)


def test_a_stopped_watch_sees_the_three_decisions_made_meanwhile(regulator, investor, watches):
    watch = watches(f"drap-resume-{uuid.uuid4().hex[:8]}").start()
    licence_id = new_licence(investor)
    decide(regulator, licence_id, "under_review")
    wait_until(
        lambda: (
            [e["type"] for e in watch.events() if e["subject"] == licence_id]
            == ["jvreg.license.submitted", "jvreg.license.under_review"]
        ),
        30,
        "the application and its review watched",
    )
    assert watch.stop() == 0

    for to, fields in WALK[1:4]:  # inspection scheduled, granted, suspended
        decide(regulator, licence_id, to, **fields)

    watch.start()
    wait_until(
        lambda: len([e for e in watch.events() if e["subject"] == licence_id]) == 3,
        60,
        "the three decisions",
    )
    assert [e["type"] for e in watch.events() if e["subject"] == licence_id] == [
        "jvreg.license.inspection_scheduled",
        "jvreg.license.granted",
        "jvreg.license.suspended",
    ]
    assert watch.stop() == 0


def test_subscriptions_belong_to_the_regulators_organisation(
    regulator, new_key, ops, investor, receiver
):
    subscription = subscribe(regulator, receiver.answer("/own", 204), "license.*")
    assert subscription["secret"].startswith("whsec_")
    assert subscription["owner"] == "DRAP Licensing Division"
    assert subscription["status"] == "active"

    path = f"/v1/subscriptions/{subscription['id']}"
    shown = regulator.get(path)
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert shown.json() == {k: v for k, v in subscription.items() if k != "secret"}

    provincial = new_key("regulator", f"Sindh Drug Testing Lab {uuid.uuid4().hex[:4]}")
    assert provincial.get(path).status_code == 404
    assert provincial.get("/v1/subscriptions").json()["items"] == []
    assert ops.get(path).status_code == 200
    denied = investor.post("/v1/subscriptions", json={"url": receiver.url, "event_types": ["#"]})
    assert denied.status_code == 403
    assert investor.get("/v1/subscriptions").status_code == 403
    assert provincial.request("DELETE", path).status_code == 404

    ids = [subscription["id"], subscribe(regulator, receiver.answer("/own2", 204), "#")["id"]]
    first = regulator.get("/v1/subscriptions?limit=1").json()
    assert first["next_cursor"]
    rest = regulator.get(f"/v1/subscriptions?limit=200&cursor={first['next_cursor']}").json()
    listed = [s["id"] for s in first["items"] + rest["items"]]
    assert set(ids) <= set(listed) and len(listed) == len(set(listed))

    disabled = regulator.request("DELETE", path)
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "disabled"
    active = regulator.get("/v1/subscriptions?status=active&limit=200").json()["items"]
    assert subscription["id"] not in [s["id"] for s in active]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "ftp://drap.example/hooks", "event_types": ["license.#"]}, ["body", "url"]),
        (
            {"url": "https://drap.example/hooks", "event_types": ["license.#", "license.*.x!"]},
            ["body", "event_types", 1],
        ),
        ({"url": "https://drap.example/hooks", "event_types": []}, ["body", "event_types"]),
        ({"event_types": ["license.#"]}, ["body", "url"]),
    ],
)
def test_bad_subscriptions_are_problems_naming_the_field_and_change_nothing(new_key, body, loc):
    regulator = new_key("regulator", f"DRAP QA {uuid.uuid4().hex[:6]}")
    response = regulator.post("/v1/subscriptions", json=body)
    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith(PROBLEM)
    assert [error["loc"] for error in response.json()["errors"]] == [loc]
    assert regulator.get("/v1/subscriptions").json()["items"] == []


def test_an_unknown_subscription_and_a_bad_cursor_are_problems(regulator):
    missing = regulator.get("/v1/subscriptions/sub_000000000000000000000000/deliveries")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith(PROBLEM)
    bad = regulator.get("/v1/subscriptions?cursor=not-ours")
    assert bad.status_code == 400 or bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["query", "cursor"]


def test_the_subscription_endpoints_are_in_the_openapi_document(ops):
    paths = ops.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/subscriptions"]) == {"post", "get"}
    assert set(paths["/v1/subscriptions/{subscription_id}"]) == {"get", "delete"}
    assert "get" in paths["/v1/subscriptions/{subscription_id}/deliveries"]
