"""Ventures through the gateway, against the real services, broker and wire server."""

import json
import time
import uuid

import pytest
from kombu import Connection, Consumer, Queue

from shared.messaging import EVENT_CONTENT_TYPES, events_exchange

from support import Api, venture_body


def test_registry_health_is_ok(ops):
    response = ops.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) >= {
        "mongo",
        "rabbitmq",
        "ventures",
        "facilities",
        "licensing",
        "investments",
    }


def test_registration_publishes_a_cloud_event(registry, investor):
    received = []
    with Connection(registry["amqp_uri"]) as connection:
        queue = Queue(
            "e2e-regulator-ventures",
            exchange=events_exchange("ventures"),
            routing_key="venture.#",
            durable=True,
        )
        queue(connection.channel()).declare()
        response = investor.post("/v1/ventures", json=venture_body())
        assert response.status_code == 201, response.text
        venture = response.json()

        def on_message(body, message):
            received.append((body, message.properties))
            message.ack()

        with Consumer(connection, [queue], callbacks=[on_message], accept=EVENT_CONTENT_TYPES):
            deadline = time.monotonic() + 15
            while not any(b["subject"] == venture["id"] for b, _ in received):
                assert time.monotonic() < deadline, "no venture.registered event arrived"
                connection.drain_events(timeout=deadline - time.monotonic())

    event, properties = next((b, p) for b, p in received if b["subject"] == venture["id"])
    assert event["specversion"] == "1.0"
    assert event["type"] == "jvreg.venture.registered"
    assert event["source"] == "/jvreg/ventures"
    assert event["datacontenttype"] == "application/json"
    assert event["sequence"] == 1
    assert event["id"] and event["time"].endswith("Z")
    assert event["data"]["venture"]["name"] == venture["name"]
    assert event["data"]["change"]["to"] == "registered"
    assert properties["delivery_mode"] == 2
    json.dumps(event)  # the whole envelope is plain JSON


def problem_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    return problem


def locs(problem: dict) -> set[tuple]:
    return {tuple(error["loc"]) for error in problem["errors"]}


def partner(country: str, share, name: str | None = None) -> dict:
    return {
        "name": name or f"{country} Partner {share}",
        "country": country,
        "kind": "private_company",
        "equity_pct": share,
    }


BAD_REGISTRATIONS = {
    "missing fields": (
        {"name": "Thatta TCM Gardens"},
        {("body", "sector"), ("body", "partners"), ("body", "province")},
    ),
    "mistyped field": ({"partners": "Indus Pharma and Sinopharm"}, {("body", "partners")}),
    "unknown sector": ({"sector": "cosmetics"}, {("body", "sector")}),
    "equity not 100": (
        {"partners": [partner("PK", "60"), partner("CN", "30")]},
        {("body", "partners")},
    ),
    "single partner": ({"partners": [partner("PK", "100")]}, {("body", "partners")}),
    "no Chinese partner": (
        {"partners": [partner("PK", "50"), partner("GB", "50")]},
        {("body", "partners")},
    ),
    "no Pakistani partner": (
        {"partners": [partner("CN", "50"), partner("SG", "50")]},
        {("body", "partners")},
    ),
    "negative equity": (
        {"partners": [partner("PK", "-10"), partner("CN", "110")]},
        {("body", "partners", 0, "equity_pct"), ("body", "partners", 1, "equity_pct")},
    ),
    "zero equity": (
        {"partners": [partner("PK", 0), partner("CN", 100)]},
        {("body", "partners", 0, "equity_pct")},
    ),
    "thirds that do not sum to 100": (
        {
            "partners": [
                partner("PK", 33.3, "Alpha"),
                partner("CN", 33.3, "Beta"),
                partner("PK", 33.3, "Gamma"),
            ]
        },
        {("body", "partners")},
    ),
    "unknown field": ({"chairman": "Mustafa Kamal"}, {("body", "chairman")}),
}


@pytest.mark.parametrize("case", BAD_REGISTRATIONS)
def test_bad_registrations_name_the_field_and_change_nothing(investor, case):
    overrides, expected = BAD_REGISTRATIONS[case]
    body = venture_body(**overrides)
    if case == "missing fields":
        body = overrides
    response = investor.post("/v1/ventures", json=body)
    problem = problem_of(response, 422)
    assert locs(problem) == expected
    assert investor.get("/v1/ventures").json()["items"] == []


def test_thirds_that_sum_exactly_to_100_in_decimal_are_accepted(investor):
    partners = [
        partner("PK", 33.33, "Alpha"),
        partner("PK", 33.33, "Beta"),
        partner("CN", 33.34, "Gamma"),
    ]
    response = investor.post("/v1/ventures", json=venture_body(partners=partners))
    assert response.status_code == 201, response.text
    assert [p["equity_pct"] for p in response.json()["partners"]] == ["33.33", "33.33", "33.34"]


def test_a_duplicate_name_differing_only_in_case_is_a_conflict(investor, new_key):
    name = f"Faisalabad Biologics {uuid.uuid4().hex[:6]}"
    assert investor.post("/v1/ventures", json=venture_body(name)).status_code == 201
    other = new_key("investor", "Another Investor Group")
    problem = problem_of(other.post("/v1/ventures", json=venture_body(name.upper())), 409)
    assert locs(problem) == {("body", "name")}
    assert other.get("/v1/ventures").json()["items"] == []


def test_a_body_that_is_not_json_is_a_400(investor):
    response = investor.post(
        "/v1/ventures", data="{name: 'Hub TCM'", headers={"Content-Type": "application/json"}
    )
    assert locs(problem_of(response, 400)) == {("body",)}


def test_a_body_over_one_mebibyte_is_a_413(investor):
    response = investor.post("/v1/ventures", json=venture_body(description="x" * (1024 * 1024 + 1)))
    problem_of(response, 413)
    assert investor.get("/v1/ventures").json()["items"] == []


@pytest.mark.parametrize(
    "query, loc",
    [
        ("limit=201", ("query", "limit")),
        ("limit=0", ("query", "limit")),
        ("cursor=not-a-cursor", ("query", "cursor")),
        ("sector=cosmetics", ("query", "sector")),
        ("colour=blue", ("query", "colour")),
    ],
)
def test_bad_list_parameters_are_named(investor, query, loc):
    assert locs(problem_of(investor.get(f"/v1/ventures?{query}"), 422)) == {loc}


def test_requests_without_a_valid_key_are_401(registry):
    anonymous = Api(registry["url"], None)
    problem_of(anonymous.get("/v1/ventures"), 401)
    problem_of(Api(registry["url"], "jvk_made_up").get("/v1/ventures"), 401)
    problem_of(anonymous.post("/v1/ventures", json=venture_body()), 401)


def test_unknown_routes_and_methods_are_problems(ops):
    problem_of(ops.get("/v1/nothing-here"), 404)
    problem_of(ops.request("DELETE", "/v1/ventures"), 405)


def test_only_ops_create_api_keys(investor, ops):
    problem_of(investor.post("/v1/api-keys", json={"role": "ops", "owner": "Me"}), 403)
    problem = problem_of(ops.post("/v1/api-keys", json={"role": "admin", "owner": "DRAP"}), 422)
    assert locs(problem) == {("body", "role")}


def test_updates_need_the_current_etag(investor):
    created = investor.post("/v1/ventures", json=venture_body())
    venture_id, etag = created.json()["id"], created.headers["ETag"]
    path = f"/v1/ventures/{venture_id}"
    problem_of(investor.patch(path, json={"sez": "Allama Iqbal Industrial City"}), 428)
    updated = investor.patch(
        path, json={"sez": "Allama Iqbal Industrial City"}, headers={"If-Match": etag}
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["ETag"] == '"2"' and updated.json()["sez"] == (
        "Allama Iqbal Industrial City"
    )
    stale = investor.patch(path, json={"sez": "Rashakai SEZ"}, headers={"If-Match": etag})
    problem_of(stale, 412)
    assert investor.get(path).json()["sez"] == "Allama Iqbal Industrial City"


def test_an_update_that_breaks_the_rules_changes_nothing(investor):
    created = investor.post("/v1/ventures", json=venture_body()).json()
    path = f"/v1/ventures/{created['id']}"
    response = investor.patch(
        path, json={"partners": [partner("PK", "100")]}, headers={"If-Match": '"1"'}
    )
    assert locs(problem_of(response, 422)) == {("body", "partners")}
    stored = investor.get(path).json()
    assert {field: stored[field] for field in created} == created


def test_ownership_and_roles(investor, new_key, regulator, ops):
    venture = investor.post("/v1/ventures", json=venture_body()).json()
    path = f"/v1/ventures/{venture['id']}"
    stranger = new_key("investor", "Unrelated Holdings")
    problem_of(stranger.get(path), 404)
    problem_of(stranger.patch(path, json={"sez": None}, headers={"If-Match": '"1"'}), 404)
    assert venture["id"] not in [v["id"] for v in stranger.get("/v1/ventures").json()["items"]]
    assert regulator.get(path).status_code == 200
    problem_of(regulator.patch(path, json={"sez": None}, headers={"If-Match": '"1"'}), 403)
    problem_of(investor.post(f"{path}/status", json={"to": "active", "reason": "ready"}), 403)
    assert (
        ops.patch(
            path, json={"description": "Amended by ops"}, headers={"If-Match": '"1"'}
        ).status_code
        == 200
    )


def test_status_lifecycle(investor, regulator):
    venture = investor.post("/v1/ventures", json=venture_body()).json()
    path = f"/v1/ventures/{venture['id']}/status"
    problem = problem_of(regulator.post(path, json={"to": "suspended", "reason": "audit"}), 409)
    assert problem["allowed"] == ["active", "dissolved"]
    for target in ("active", "suspended", "active", "dissolved"):
        response = regulator.post(path, json={"to": target, "reason": "DRAP decision"})
        assert response.status_code == 200 and response.json()["status"] == target
    problem = problem_of(regulator.post(path, json={"to": "active", "reason": "undo"}), 409)
    assert problem["allowed"] == []
    problem_of(
        investor.patch(
            f"/v1/ventures/{venture['id']}", json={"sez": None}, headers={"If-Match": '"5"'}
        ),
        409,
    )


def test_filters_and_stable_pagination(new_key, ops):
    owner = new_key("investor", f"Paginated Investor {uuid.uuid4().hex[:6]}")
    # The distinguishing words are not hex, so the random suffix never matches a query.
    cities = ["Karachi", "Lahore", "Gwadar", "Multan", "Quetta"]
    names = [f"Page Test {city} {uuid.uuid4().hex[:4]}" for city in cities]
    for n, name in enumerate(names):
        sector = "telemedicine" if n % 2 else "api_manufacturing"
        province = "sindh" if n < 2 else "punjab"
        assert (
            owner.post(
                "/v1/ventures", json=venture_body(name, sector=sector, province=province)
            ).status_code
            == 201
        )
    seen, cursor = [], None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = owner.get(f"/v1/ventures?{query}").json()
        seen += [v["name"] for v in body["items"]]
        if not (cursor := body["next_cursor"]):
            break
    assert seen == names  # every venture once, in registration order
    assert [v["name"] for v in owner.get("/v1/ventures?sector=telemedicine").json()["items"]] == [
        names[1],
        names[3],
    ]
    assert len(owner.get("/v1/ventures?province=sindh").json()["items"]) == 2
    assert len(owner.get("/v1/ventures?partner_country=CN").json()["items"]) == 5
    assert len(owner.get("/v1/ventures?partner_country=US").json()["items"]) == 0
    assert [v["name"] for v in owner.get("/v1/ventures?q=page test gwad").json()["items"]] == [
        names[2]
    ]
    assert len(owner.get("/v1/ventures?status=registered").json()["items"]) == 5


def test_a_stopped_service_makes_health_degraded_and_requests_503_not_hang(registry, investor):
    ventures = registry["stack"].processes["ventures"]
    ventures.stop()
    try:
        health = Api(registry["url"], None).get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["ventures"].startswith("down")
        assert health.json()["checks"]["mongo"] == "ok"

        started = time.monotonic()
        response = investor.post("/v1/ventures", json=venture_body("Never Registered JV"))
        problem_of(response, 503)
        assert time.monotonic() - started < 15  # bounded by JVREG_RPC_TIMEOUT_SECONDS
    finally:
        ventures.start()
    registry["stack"].wait_healthy(90)
    # The request expired in the queue: the registration the caller was told failed
    # did not happen later behind its back.
    names = [v["name"] for v in investor.get("/v1/ventures").json()["items"]]
    assert "Never Registered JV" not in names
