"""The public register (/v1/public/…) end to end: anyone reads ventures, plants and
licences without a key, finds them by the names of what they belong to, filters,
sorts, pages and exports them as CSV and JSON Lines, sees a renamed venture in its
licences' entries, and never sees a private value: the privacy test seeds investment
figures, focal points, notes, owners and key ids as unique markers through the
authenticated API and looks for each in every public answer."""

import csv
import io
import json
import uuid

import pytest

from ops.processes import Stack, free_port

from support import PLANT, Api, created, inspection_date, venture_body

PUBLIC_LISTS = ("/v1/public/ventures", "/v1/public/facilities", "/v1/public/licenses")


def decide(regulator, licence_id: str, to: str, reason: str, **fields) -> dict:
    response = regulator.post(
        f"/v1/licenses/{licence_id}/transitions", json={"to": to, "reason": reason, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def seeded(registry, ops, new_key, regulator):
    """A venture, its plant and a granted licence, with a flow, every private value a
    marker of its own."""
    marker = uuid.uuid4().hex[:10]
    owner = f"Owner Org {marker}"
    investor = new_key("investor", owner)
    name = f"Registro {marker} Pharma"
    partners = [
        {
            "name": f"Indus {marker} Ltd",
            "country": "PK",
            "kind": "private_company",
            "equity_pct": "50.1234",
        },
        {
            "name": f"Yangtze {marker} Co",
            "country": "CN",
            "kind": "state_owned_enterprise",
            "equity_pct": "49.8766",
        },
    ]
    private = {
        "focal point name": f"Focal Person {marker}",
        "focal point email": f"focal.{marker}@private.example",
        "description": f"confidential plans {marker}",
        "owner": owner,
        "equity": "50.1234",
        "amount": "987654321.17",
        "flow reference": f"WIRE-{marker}",
        "flow note": f"tranche note {marker}",
        "decision note": f"inspectors noted {marker}",
        "review note": f"dossier note {marker}",
    }
    venture = created(
        investor,
        "/v1/ventures",
        venture_body(
            name,
            partners=partners,
            sector="traditional_chinese_medicine",
            province="sindh",
            description=private["description"],
            focal_points=[
                {
                    "name": private["focal point name"],
                    "email": private["focal point email"],
                    "country": "PK",
                }
            ],
        ),
    )
    plant = created(
        investor,
        f"/v1/ventures/{venture['id']}/facilities",
        {
            **PLANT,
            "kind": "api_plant",
            "name": f"Plant {marker}",
            "city": f"Dhabeji{marker}",
            "province": "sindh",
        },
    )
    created(
        investor,
        f"/v1/ventures/{venture['id']}/investments",
        {
            "type": "commitment",
            "partner": partners[0]["name"],
            "amount": private["amount"],
            "currency": "PKR",
            "value_date": "2025-01-15",
            "reference": private["flow reference"],
            "note": private["flow note"],
        },
    )
    licence = created(investor, "/v1/licenses", {"facility_id": plant["id"], "type": "dml_basic"})
    decide(regulator, licence["id"], "under_review", private["review note"])
    decide(
        regulator,
        licence["id"],
        "inspection_scheduled",
        "inspection booked",
        inspection_date=inspection_date(),
    )
    decision_ref = f"DRAP/LIC/{marker}"
    granted = decide(
        regulator,
        licence["id"],
        "granted",
        private["decision note"],
        decision_ref=decision_ref,
        valid_until="2030-06-30",
    )
    keys = [key["id"] for key in ops.get("/v1/api-keys", params={"limit": 200}).json()["items"]]
    return {
        "marker": marker,
        "name": name,
        "venture": venture,
        "plant": plant,
        "licence": granted,
        "decision_ref": decision_ref,
        "private": private,
        "key_ids": keys,
    }


def public_answers(anyone: Api, seeded: dict) -> dict[str, str]:
    """Every public answer about the seeded venture: lists (found by words, filters,
    each export format, by parameter and by Accept), items, the licence's certificate
    and the register's web pages."""
    found = {"q": seeded["marker"]}
    answers = {}
    for path in PUBLIC_LISTS:
        for label, params, headers in [
            ("page", found, {}),
            ("page, all", {"limit": 200}, {}),
            ("csv", {**found, "format": "csv"}, {}),
            ("jsonl", {**found, "format": "jsonl"}, {}),
            ("csv by Accept", {}, {"Accept": "text/csv"}),
            ("jsonl by Accept", {}, {"Accept": "application/x-ndjson"}),
        ]:
            response = anyone.get(path, params=params, headers=headers)
            assert response.status_code == 200, response.text
            answers[f"{path} {label}"] = response.text
    licence_id = seeded["licence"]["id"]
    for path in (
        f"/v1/public/ventures/{seeded['venture']['id']}",
        f"/v1/public/facilities/{seeded['plant']['id']}",
        f"/v1/public/licenses/{licence_id}",
        # its certificate, QR code and status, and the register's web pages
        f"/v1/public/licenses/{licence_id}/certificate",
        f"/v1/public/licenses/{licence_id}/certificate.svg",
        f"/v1/public/licenses/{licence_id}/certificate/status",
        f"/register?list=licences&q={seeded['marker']}",
        f"/register?list=plants&q={seeded['marker']}",
        f"/register?list=ventures&q={seeded['marker']}",
        f"/register/licences/{licence_id}",
        f"/register/ventures/{seeded['venture']['id']}",
    ):
        response = anyone.get(path)
        assert response.status_code == 200, response.text
        answers[path] = response.text
    return answers


def test_no_private_value_appears_in_any_public_answer(registry, seeded):
    anyone = Api(registry["url"], None)
    answers = public_answers(anyone, seeded)
    # The public register does show the seeded venture, its plant and its licence.
    for path in PUBLIC_LISTS:
        assert seeded["name"] in answers[f"{path} page"], path
        assert seeded["name"] in answers[f"{path} csv"], path
    licence_page = answers[f"/register/licences/{seeded['licence']['id']}"]
    assert seeded["name"] in licence_page and seeded["decision_ref"] in licence_page
    leaks = [
        f"{what} in {where}"
        for where, text in answers.items()
        for what, value in [*seeded["private"].items(), *(("key id", k) for k in seeded["key_ids"])]
        if value in text
    ]
    assert leaks == []


def test_a_licence_shows_its_plant_venture_partners_and_decision(registry, seeded):
    anyone = Api(registry["url"], None)
    licence_id = seeded["licence"]["id"]
    shown = anyone.get(f"/v1/public/licenses/{licence_id}").json()
    marker = seeded["marker"]
    assert shown == {
        "id": licence_id,
        "type": "dml_basic",
        "product": None,
        "registration_number": None,
        "dosage_form": None,
        "strength": None,
        "active_ingredients": None,
        "status": "granted",
        "valid_until": shown["valid_until"],
        "decision_ref": seeded["decision_ref"],
        "facility_id": seeded["plant"]["id"],
        "plant_name": f"Plant {marker}",
        "city": f"Dhabeji{marker}",
        "province": "sindh",
        "venture_id": seeded["venture"]["id"],
        "venture_name": seeded["name"],
        "sector": "traditional_chinese_medicine",
        "partners": [
            {"name": f"Indus {marker} Ltd", "country": "PK"},
            {"name": f"Yangtze {marker} Co", "country": "CN"},
        ],
    }
    assert shown["valid_until"].startswith("2030-06-30T23:59:59")

    def licences(**params) -> list[str]:
        response = anyone.get("/v1/public/licenses", params={"q": marker, **params})
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    # Found by the plant's, the venture's and a partner's names and the city.
    for words in (f"plant {marker}", f"registro {marker}", f"yangtze {marker}", f"dhabeji{marker}"):
        assert licences(q=words) == [licence_id], words
    assert licences(province="sindh", sector="traditional_chinese_medicine") == [licence_id]
    assert licences(partner_country="CN", type="dml_basic", status="granted") == [licence_id]
    assert licences(province="punjab") == []
    assert licences(valid_on="2030-06-30") == [licence_id]
    assert licences(valid_on="2030-07-01") == []
    facility = anyone.get(f"/v1/public/facilities/{seeded['plant']['id']}").json()
    assert facility["venture_name"] == seeded["name"] and facility["sector"] == (
        "traditional_chinese_medicine"
    )


def test_a_renamed_venture_is_renamed_in_its_plants_and_licences_entries(registry, seeded, ops):
    anyone = Api(registry["url"], None)
    renamed = f"Renamed {seeded['marker']} Herbals"
    response = ops.patch(
        f"/v1/ventures/{seeded['venture']['id']}",
        json={"name": renamed, "sector": "finished_formulations"},
        headers={"If-Match": "*"},
    )
    assert response.status_code == 200, response.text
    licence = anyone.get(f"/v1/public/licenses/{seeded['licence']['id']}").json()
    assert (licence["venture_name"], licence["sector"]) == (renamed, "finished_formulations")
    plant = anyone.get(f"/v1/public/facilities/{seeded['plant']['id']}").json()
    assert plant["venture_name"] == renamed
    found = anyone.get("/v1/public/licenses", params={"q": f"renamed {seeded['marker']}"})
    assert [item["id"] for item in found.json()["items"]] == [seeded["licence"]["id"]]


def test_exports_stream_every_matching_row_with_the_documented_header(registry, seeded):
    anyone = Api(registry["url"], None)
    total = len(anyone.get("/v1/public/ventures", params={"limit": 200}).json()["items"])
    assert total >= 2
    # `limit` does not apply: an export walks every page.
    response = anyone.get("/v1/public/ventures", params={"format": "csv", "limit": 1})
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "ventures.csv" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == total
    mine = next(row for row in rows if row["id"] == seeded["venture"]["id"])
    marker = seeded["marker"]
    assert mine == {
        "id": seeded["venture"]["id"],
        "name": seeded["name"],
        "sector": "traditional_chinese_medicine",
        "province": "sindh",
        "sez": seeded["venture"]["sez"] or "",
        "status": "registered",
        "partners": f"Indus {marker} Ltd (PK); Yangtze {marker} Co (CN)",
    }
    lines = anyone.get(
        "/v1/public/licenses", params={"q": marker}, headers={"Accept": "application/jsonl"}
    )
    assert lines.headers["Content-Type"] == "application/x-ndjson"
    (item,) = [json.loads(line) for line in lines.text.splitlines()]
    assert item["id"] == seeded["licence"]["id"]


def test_public_lists_page_sort_and_refuse_what_they_do_not_take(registry, seeded):
    anyone = Api(registry["url"], None)
    first = anyone.get("/v1/public/ventures", params={"limit": 1, "sort": "-name"}).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = anyone.get(
        "/v1/public/ventures", params={"limit": 1, "sort": "-name", "cursor": first["next_cursor"]}
    ).json()
    assert second["items"][0]["name"].casefold() <= first["items"][0]["name"].casefold()
    for params, field in [
        ({"owner": "Owner Org"}, "owner"),
        ({"format": "xml"}, "format"),
        ({"valid_on": "someday"}, "valid_on"),
        ({"sort": "owner"}, "sort"),
    ]:
        refused = anyone.get("/v1/public/licenses", params=params)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["loc"] == ["query", field]
    missing = anyone.get("/v1/public/licenses/lic_nothing_here")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"


def test_public_reads_are_limited_per_client_address(registry, ops, tmp_path):
    """On a gateway of its own (the shared one's counters are everyone's): anyone's
    reads from one address count together, whatever the route; a key's lists count
    apart."""
    env = {
        **registry["env"],
        "JVREG_GATEWAY_PORT": str(free_port()),
        "JVREG_EXPENSIVE_READ_LIMIT": "3/hour",
    }
    stack = Stack(env, log_dir=tmp_path, services=("gateway",))
    stack.start()
    try:
        stack.wait_healthy(60)
        anyone = Api(stack.gateway_url, None)
        for path in ("/v1/public/ventures", "/v1/public/licenses?format=csv"):
            assert anyone.get(path).status_code == 200
        assert anyone.get("/v1/public/ventures/jv_none").status_code == 404
        refused = anyone.get("/v1/public/facilities")
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        keyed = Api(stack.gateway_url, ops.session.headers["Authorization"].split()[1])
        assert keyed.get("/v1/ventures").status_code == 200
    finally:
        stack.stop()
