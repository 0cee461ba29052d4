"""`?as_of=` through the gateway, against the registry's real processes: a venture, its
plant and a licence read, listed and composed as they stood at instants of their past
(each the `updated_at` an earlier answer showed), the owner scoping of an investor, and
the refusals naming the parameter."""

from datetime import timedelta

from test_licensing_api import facility_status, grant

from services.gateway.problems import PROBLEM_CONTENT_TYPE
from shared.clock import utcnow
from shared.codec import rfc3339

from support import PLANT, created, venture_body

DML = {"type": "dml_formulation"}


def at(resource: dict) -> dict:
    """The query of a read as of the instant `resource` was answered in."""
    return {"as_of": resource["updated_at"]}


def read(api, path: str) -> dict:
    """A resource as a read answers it (times at the millisecond the store keeps)."""
    response = api.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def items(api, path: str, **query) -> list[dict]:
    response = api.get(path, params=query)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_licence_its_plant_and_venture_as_they_stood_at_past_instants(
    investor, regulator, new_key
):
    path = f"/v1/ventures/{created(investor, '/v1/ventures', venture_body())['id']}"
    venture = read(investor, path)
    venture.pop("facilities"), venture.pop("licenses"), venture.pop("investment_summary")
    plant = created(investor, f"{path}/facilities", PLANT)
    plant = read(investor, f"/v1/facilities/{plant['id']}")
    applied = created(investor, "/v1/licenses", {**DML, "facility_id": plant["id"]})
    applied = read(investor, f"/v1/licenses/{applied['id']}")
    grant(regulator, applied)
    granted = read(investor, f"/v1/licenses/{applied['id']}")
    facility_status(investor, plant["id"], "operational")
    moved = investor.patch(
        path, json={"sector": "biologics_vaccines"}, headers={"If-Match": f'"{venture["version"]}"'}
    )
    assert moved.status_code == 200, moved.text

    # One aggregate: as it was answered at each instant, whoever asks.
    for api in (investor, regulator):
        then = api.get(f"/v1/licenses/{applied['id']}", params=at(applied))
        assert then.status_code == 200, then.text
        assert then.json() == applied
        assert api.get(f"/v1/licenses/{applied['id']}", params=at(granted)).json() == granted
    planned = investor.get(f"/v1/facilities/{plant['id']}", params=at(applied)).json()
    assert planned == plant  # the plant did not change with the application
    operational = investor.get(f"/v1/facilities/{plant['id']}", params=at(moved.json())).json()
    assert operational["status"] == "operational"
    history = items(investor, f"/v1/licenses/{applied['id']}/history", **at(applied))
    assert [entry["to"] for entry in history] == ["submitted"]

    # A venture as it was registered: no plant nor licence yet, no summary then.
    detail = investor.get(path, params=at(venture))
    assert detail.status_code == 200, detail.text
    assert {k: v for k, v in detail.json().items() if k in venture} == venture
    assert venture["sector"] != "biologics_vaccines"
    assert detail.json()["facilities"] == [] and detail.json()["licenses"] == []
    assert "problem" in detail.json()["investment_summary"]
    with_licence = investor.get(path, params=at(applied)).json()
    assert with_licence["licenses"] == [applied] and with_licence["facilities"] == [plant]

    # Lists match their filters on the state then, not now.
    mine = {"venture_id": venture["id"]}
    assert items(regulator, "/v1/licenses", status="submitted", **mine, **at(applied)) == [applied]
    assert items(regulator, "/v1/licenses", status="granted", **mine, **at(applied)) == []
    assert items(regulator, "/v1/licenses", status="granted", **mine, **at(granted)) == [granted]
    assert items(regulator, "/v1/licenses", status="submitted", **mine) == []  # now: granted
    planned_then = items(investor, "/v1/facilities", status="planned", **mine, **at(applied))
    assert planned_then == [plant]
    sector = {"sector": venture["sector"]}
    assert venture["id"] in [
        v["id"] for v in items(investor, "/v1/ventures", **sector, **at(venture))
    ]
    assert venture["id"] not in [v["id"] for v in items(investor, "/v1/ventures", **sector)]

    # An investor lists only its own, then as now; a licence not yet applied for is 404.
    other = new_key("investor", "Another Investor as of")
    assert items(other, "/v1/ventures", **at(moved.json())) == []
    assert other.get(f"/v1/licenses/{applied['id']}", params=at(granted)).status_code == 404
    before = {"as_of": rfc3339(utcnow() - timedelta(days=400))}
    assert investor.get(f"/v1/licenses/{applied['id']}", params=before).status_code == 404


def test_an_as_of_list_pages_in_registration_order(investor):
    ventures = [created(investor, "/v1/ventures", venture_body())["id"] for _ in range(3)]
    instant = {"as_of": rfc3339(utcnow())}
    first = investor.get("/v1/ventures", params={**instant, "limit": 2}).json()
    assert [item["id"] for item in first["items"]] == ventures[:2] and first["next_cursor"]
    second = investor.get(
        "/v1/ventures", params={**instant, "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [item["id"] for item in second["items"]] == ventures[2:]
    assert second["next_cursor"] is None


def test_as_of_must_be_a_past_rfc3339_instant_with_an_offset(investor, regulator):
    venture = created(investor, "/v1/ventures", venture_body())
    future = rfc3339(utcnow() + timedelta(hours=1))
    cases = [
        (f"/v1/ventures/{venture['id']}", {"as_of": "2026-03-01T00:00:00"}, "as_of"),
        (f"/v1/ventures/{venture['id']}", {"as_of": "1 March 2026"}, "as_of"),
        ("/v1/licenses", {"as_of": future}, "as_of"),
        ("/v1/facilities", {"as_of": "1700000000"}, "as_of"),
        ("/v1/ventures", {"as_of": venture["updated_at"], "q": "indus"}, "q"),
        ("/v1/licenses", {"as_of": venture["updated_at"], "count": "status"}, "count"),
        ("/v1/facilities", {"as_of": venture["updated_at"], "sort": "-name"}, "sort"),
    ]
    for path, query, field in cases:
        response = regulator.get(path, params=query)
        assert response.status_code == 422, (path, query, response.text)
        assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
        assert ["query", field] in [error["loc"] for error in response.json()["errors"]], query
