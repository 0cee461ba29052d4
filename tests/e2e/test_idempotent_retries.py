"""End-to-end: commands retried with an Idempotency-Key, through the gateway to the real
services. A retry gets the first answer replayed and nothing is carried out twice."""

import uuid

import eventlet
import pytest
from pymongo import MongoClient

from support import Api, venture_body

REPLAYED = "Idempotent-Replayed"


def idempotency_key() -> dict:
    return {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}


def locs(problem: dict) -> set[tuple]:
    return {tuple(error["loc"]) for error in problem["errors"]}


@pytest.fixture(scope="module")
def gateway_db(registry):
    client = MongoClient(registry["env"]["JVREG_MONGO_URI"])
    yield client[f"{registry['env']['JVREG_DB_PREFIX']}_gateway"]
    client.close()


def kept_records(gateway_db) -> str:
    """Everything the gateway keeps for replays, as text to search for secrets."""
    return repr(list(gateway_db.idempotency_records.find({})))


def test_a_replayed_venture_registration_answers_as_the_first_time(investor):
    key = idempotency_key()
    first = investor.post("/v1/ventures", json=venture_body(), headers=key)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers

    again = investor.post("/v1/ventures", json=venture_body(first.json()["name"]), headers=key)
    assert again.status_code == 201, again.text
    assert again.content == first.content
    for header in ("Location", "ETag", "Content-Type"):
        assert again.headers[header] == first.headers[header]
    assert again.headers[REPLAYED] == "true"
    assert [v["id"] for v in investor.get("/v1/ventures").json()["items"]] == [first.json()["id"]]


def test_a_replayed_api_key_creation_creates_one_key_and_keeps_no_secret(ops, registry, gateway_db):
    owner = f"Idempotent Holdings {uuid.uuid4().hex[:6]}"
    key = idempotency_key()
    first = ops.post("/v1/api-keys", json={"role": "investor", "owner": owner}, headers=key)
    assert first.status_code == 201, first.text
    raw_key = first.json()["key"]

    again = ops.post("/v1/api-keys", json={"role": "investor", "owner": owner}, headers=key)
    assert again.status_code == 201, again.text
    assert again.headers[REPLAYED] == "true"
    replay = again.json()
    assert replay["id"] == first.json()["id"] and replay["owner"] == owner
    assert replay["key"] is None
    assert replay["replay_notice"]["fields"] == ["key"]
    assert gateway_db.api_keys.count_documents({"owner": owner}) == 1
    assert raw_key not in kept_records(gateway_db)
    assert Api(registry["url"], raw_key).get("/v1/ventures").status_code == 200


def test_a_replayed_subscription_creates_one_and_keeps_no_secret(regulator, gateway_db):
    url = f"http://127.0.0.1:9/hooks/{uuid.uuid4().hex}"
    body = {"url": url, "event_types": ["license.granted"]}
    key = idempotency_key()
    first = regulator.post("/v1/subscriptions", json=body, headers=key)
    assert first.status_code == 201, first.text
    secret = first.json()["secret"]

    again = regulator.post("/v1/subscriptions", json=body, headers=key)
    assert again.status_code == 201, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    replay = again.json()
    assert replay["id"] == first.json()["id"]
    assert replay["secret"] is None
    assert replay["replay_notice"]["fields"] == ["secret"]
    listed = regulator.get("/v1/subscriptions?limit=200").json()["items"]
    assert [s["id"] for s in listed if s["url"] == url] == [first.json()["id"]]
    assert secret not in kept_records(gateway_db)


def test_the_same_key_for_another_request_is_a_422_naming_the_header(investor):
    key = idempotency_key()
    first = investor.post("/v1/ventures", json=venture_body(), headers=key)
    assert first.status_code == 201, first.text

    other = investor.post("/v1/ventures", json=venture_body("Another Venture"), headers=key)
    assert other.status_code == 422, other.text
    assert other.headers["Content-Type"] == "application/problem+json"
    assert locs(other.json()) == {("header", "Idempotency-Key")}
    assert [v["id"] for v in investor.get("/v1/ventures").json()["items"]] == [first.json()["id"]]


def test_two_concurrent_requests_with_one_key_create_once(investor):
    key = idempotency_key()
    body = venture_body()
    pool = eventlet.GreenPool(2)
    answers = list(
        pool.imap(lambda _: investor.post("/v1/ventures", json=body, headers=key), [1, 2])
    )

    fresh = [a for a in answers if a.status_code == 201 and REPLAYED not in a.headers]
    assert len(fresh) == 1, [(a.status_code, a.text) for a in answers]
    (second,) = [a for a in answers if a is not fresh[0]]
    if second.status_code == 409:  # it came while the first was still running
        assert second.json()["type"] == "/problems/idempotency-key-in-use"
        assert int(second.headers["Retry-After"]) >= 1
    else:  # it came after: the first answer, replayed
        assert second.status_code == 201 and second.headers[REPLAYED] == "true"
        assert second.content == fresh[0].content
    assert [v["id"] for v in investor.get("/v1/ventures").json()["items"]] == [
        fresh[0].json()["id"]
    ]


def test_a_client_error_is_replayed_too(investor):
    key = idempotency_key()
    bad = venture_body(partners=[])
    first = investor.post("/v1/ventures", json=bad, headers=key)
    assert first.status_code == 422, first.text

    again = investor.post("/v1/ventures", json=bad, headers=key)
    assert again.status_code == 422
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.headers["Content-Type"] == "application/problem+json"


def test_keys_belong_to_the_callers_api_key_and_must_be_well_formed(investor, new_key):
    key = idempotency_key()
    mine = investor.post("/v1/ventures", json=venture_body(), headers=key)
    assert mine.status_code == 201, mine.text
    # The same API key, however the header spells it, is the same caller.
    raw_key = investor.session.headers["Authorization"].partition(" ")[2]
    respelled = {**key, "Authorization": f"bearer  {raw_key}"}
    again = investor.post("/v1/ventures", json=venture_body(mine.json()["name"]), headers=respelled)
    assert again.status_code == 201 and again.headers[REPLAYED] == "true"
    assert again.json()["id"] == mine.json()["id"]
    # Another caller's identical key names another request: carried out, not replayed.
    other = new_key("investor", "Another Investor With The Same Key")
    theirs = other.post("/v1/ventures", json=venture_body(), headers=key)
    assert theirs.status_code == 201 and REPLAYED not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]

    too_long = investor.post(
        "/v1/ventures", json=venture_body(), headers={"Idempotency-Key": "k" * 256}
    )
    assert too_long.status_code == 400
    assert locs(too_long.json()) == {("header", "Idempotency-Key")}
