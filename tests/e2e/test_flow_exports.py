"""Investment flows exports through the gateway, against the registry's real processes:
who may export what, the CSV exact to each currency's minor unit, the IATI-style
activity JSON valid against a schema written from the IATI standard with each flow
type's code, and a few hundred flows streamed."""

import csv
import io
import json
import subprocess
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
import requests

from services.investments.contract import EXPORT_COLUMNS
from shared import codec

from support import JVREG, venture_body

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "schemas" / "iati-activities.schema.json").read_text()
)
INDUS, YANGTZE = "Indus Pharma (Pvt) Ltd", "Zhejiang Yangtze Pharmaceutical Co."

# Every flow type, in four currencies of three minor units; recorded in this order,
# exported by value date. Amounts as sent, and as the export writes them.
FLOWS = [
    ("commitment", INDUS, "500000000", "PKR", "2025-01-15", "500000000.00"),
    ("commitment", YANGTZE, "2.5", "USD", "2025-01-20", "2.50"),
    ("disbursement", INDUS, "123456789.55", "PKR", "2025-02-10", "123456789.55"),
    ("loan", YANGTZE, "1234567.89", "CNY", "2025-04-15", "1234567.89"),
    ("equity_purchase", INDUS, "1000", "JPY", "2025-03-20", "1000"),
    ("loan_repayment", YANGTZE, "1.5", "KWD", "2025-06-10", "1.500"),
    ("equity_sale", INDUS, "0.01", "USD", "2025-06-15", "0.01"),
    ("commitment", YANGTZE, "-1.25", "USD", "2025-05-01", "-1.25"),
]
IATI_CODES = {
    "commitment": "2",
    "disbursement": "3",
    "loan": "3",
    "equity_purchase": "8",
    "equity_sale": "9",
    "loan_repayment": "6",
}


def raw_key(api) -> str:
    return api.session.headers["Authorization"].removeprefix("Bearer ")


def jvreg_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([JVREG, "export", *args], capture_output=True, text=True, timeout=120)


def record(api, venture_id: str, flow_type, partner, amount, currency, day, reference=None):
    body = {
        "type": flow_type,
        "partner": partner,
        "amount": amount,
        "currency": currency,
        "value_date": day,
        "reference": reference,
    }
    response = api.post(f"/v1/ventures/{venture_id}/investments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def owner(new_key):
    return new_key("investor", "Flow Export Holdings")


@pytest.fixture(scope="module")
def venture(owner) -> dict:
    """A venture with one flow of every type; `flows` as the API answered them."""
    response = owner.post("/v1/ventures", json=venture_body())
    assert response.status_code == 201, response.text
    venture = response.json()
    flows = [record(owner, venture["id"], *flow[:5]) for flow in FLOWS]
    return {**venture, "flows": flows}


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.text)))


def test_a_venture_export_in_csv_is_exact_to_each_currencys_minor_unit(owner, venture):
    response = owner.get(f"/v1/ventures/{venture['id']}/investments/export?format=csv")
    header, *rows = csv_rows(response)
    assert header == list(EXPORT_COLUMNS)
    assert 'filename="' in response.headers["Content-Disposition"]
    by_date = sorted(
        zip(FLOWS, venture["flows"], strict=True), key=lambda pair: (pair[0][4], pair[1]["id"])
    )
    expected = [
        [
            venture["id"],
            venture["name"],
            flow["id"],
            flow_type,
            IATI_CODES[flow_type],
            partner,
            "PK" if partner == INDUS else "CN",
            currency,
            exported,
            day,
            "",
            "",
            codec.rfc3339(datetime.fromisoformat(flow["recorded_at"].replace("Z", "+00:00"))),
            "investor",
            "Flow Export Holdings",
        ]
        for (flow_type, partner, _, currency, day, exported), flow in by_date
    ]
    assert rows == expected


def test_the_iati_export_is_valid_and_codes_each_flow_type(owner, venture):
    response = owner.get(f"/v1/ventures/{venture['id']}/investments/export?format=iati")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    document = response.json()
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    [activity] = document["iati-activities"]
    assert activity["iati-identifier"].endswith(venture["id"])
    assert activity["activity-status"] == {"code": "1"}  # registered: pipeline
    assert activity["recipient-country"] == [{"code": "PK", "percentage": "100"}]
    assert {"vocabulary": "1", "code": "32168", "percentage": "100"} in activity["sector"]
    funding = [org for org in activity["participating-org"] if org["role"] == "1"]
    assert [org["narrative"][0]["text"] for org in funding] == [INDUS, YANGTZE]
    assert all(org["type"] == "70" for org in funding)  # private companies
    recorded = {flow["id"]: flow for flow in venture["flows"]}
    assert [t["ref"] for t in activity["transaction"]] == [
        flow["id"]
        for flow in sorted(venture["flows"], key=lambda flow: (flow["value_date"], flow["id"]))
    ]
    exported_amounts = {
        flow["id"]: row[5] for flow, row in zip(venture["flows"], FLOWS, strict=True)
    }
    for transaction in activity["transaction"]:
        flow = recorded[transaction["ref"]]
        assert transaction["transaction-type"] == {"code": IATI_CODES[flow["type"]]}
        assert transaction["value"] == {
            "currency": flow["currency"],
            "value-date": flow["value_date"],
            "amount": exported_amounts[flow["id"]],
        }
        partner = transaction[
            "receiver-org" if flow["type"] in ("loan_repayment", "equity_sale") else "provider-org"
        ]
        assert partner["narrative"] == [{"text": flow["partner"]}]
        if flow["type"] == "loan":
            assert transaction["finance-type"] == {"code": "421"}


def test_accept_chooses_the_format_and_a_wrong_format_is_named(regulator, venture):
    path = f"/v1/ventures/{venture['id']}/investments/export"
    as_json = regulator.get(path, headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    assert len(as_json.json()["iati-activities"][0]["transaction"]) == len(FLOWS)
    assert len(csv_rows(regulator.get(path, headers={"Accept": "text/csv"}))) == 1 + len(FLOWS)
    wrong = regulator.get(path, params={"format": "xlsx"})
    assert wrong.status_code == 422
    assert wrong.headers["Content-Type"] == "application/problem+json"
    assert [error["loc"] for error in wrong.json()["errors"]] == [["query", "format"]]


def test_another_investor_sees_neither_the_venture_nor_its_flows(new_key, venture):
    other = new_key("investor", "Some Other Holdings")
    refused = other.get(f"/v1/ventures/{venture['id']}/investments/export")
    assert refused.status_code == 404
    assert refused.headers["Content-Type"] == "application/problem+json"
    portfolio = other.get("/v1/investments/export?format=csv")
    assert csv_rows(portfolio) == [list(EXPORT_COLUMNS)]
    empty = other.get("/v1/investments/export?format=iati").json()
    jsonschema.Draft202012Validator(SCHEMA).validate(empty)
    assert empty["iati-activities"] == []


def test_the_portfolio_export_streams_a_few_hundred_flows_of_each_venture(new_key, ops, regulator):
    """Three ventures, 320 commitments over 40 value dates: the owner's portfolio holds
    them all, in venture order then by value date, streamed (chunked, no length) over
    several pages of the investments service's export."""
    investor = new_key("investor", "Streaming Holdings")
    ventures = []
    for _ in range(3):
        response = investor.post("/v1/ventures", json=venture_body())
        assert response.status_code == 201, response.text
        ventures.append(response.json()["id"])
    recorded = []
    for n in range(320):
        venture_id = ventures[n % 3]
        day = f"2024-{1 + n % 10:02d}-{1 + n % 4:02d}"
        flow = record(investor, venture_id, "commitment", INDUS, f"{n + 1}.01", "PKR", day, f"r{n}")
        recorded.append(flow)
    response = investor.get("/v1/investments/export", params={"format": "csv"}, stream=True)
    assert response.status_code == 200
    assert response.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.headers
    header, *rows = list(csv.reader(io.StringIO(response.content.decode())))
    column = {name: n for n, name in enumerate(header)}
    expected = sorted(
        recorded, key=lambda f: (ventures.index(f["venture_id"]), f["value_date"], f["id"])
    )
    assert [row[column["flow_id"]] for row in rows] == [flow["id"] for flow in expected]
    assert [row[column["amount"]] for row in rows] == [flow["amount"] for flow in expected]
    # A regulator's portfolio holds them too, among every other venture's.
    everyone = regulator.get("/v1/investments/export", params={"format": "iati"}).json()
    jsonschema.Draft202012Validator(SCHEMA).validate(everyone)
    exported = {
        transaction["ref"]
        for activity in everyone["iati-activities"]
        for transaction in activity["transaction"]
    }
    assert {flow["id"] for flow in recorded} <= exported


def test_jvreg_export_writes_the_stream_to_a_file(owner, venture, registry, new_key, tmp_path):
    """`jvreg export` writes what the gateway streams, byte for byte apart from the
    IATI file's generation time; a refusal says why and leaves no file."""
    target = tmp_path / "flows.csv"
    done = jvreg_export(
        "investments",
        "--venture",
        venture["id"],
        "--url",
        registry["url"],
        "--key",
        raw_key(owner),
        "-o",
        str(target),
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {target}" in done.stdout
    answered = owner.get(f"/v1/ventures/{venture['id']}/investments/export?format=csv")
    assert target.read_bytes() == answered.content
    iati = tmp_path / "flows.json"
    args = ("investments", "--format", "iati", "--url", registry["url"], "-o", str(iati))
    assert jvreg_export(*args, "--key", raw_key(owner)).returncode == 0
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(iati.read_text()))

    other = new_key("investor", "Some Other Holdings")
    refused = tmp_path / "refused.csv"
    args = ("investments", "--venture", venture["id"], "--url", registry["url"])
    answer = jvreg_export(*args, "--key", raw_key(other), "-o", str(refused))
    assert answer.returncode == 1
    assert "404 Not found" in answer.stderr
    assert not refused.exists() and not refused.with_name("refused.csv.part").exists()


@pytest.mark.parametrize("wanted", ["jsonl", "csv"])
def test_jvreg_export_writes_a_public_register_export_without_a_key(
    wanted, venture, registry, tmp_path
):
    """Ventures: their public entries change only when someone changes a venture (a
    licence's or plant's may change by itself, at an expiry), so the file and the
    answer read after it are the same."""
    target = tmp_path / f"ventures.{wanted}"
    done = jvreg_export("ventures", "--format", wanted, "--url", registry["url"], "-o", str(target))
    assert done.returncode == 0, done.stderr
    answered = requests.get(f"{registry['url']}/v1/public/ventures", params={"format": wanted})
    assert answered.status_code == 200
    assert target.read_bytes() == answered.content
    assert venture["id"] in target.read_text()  # registered above, on the public register
