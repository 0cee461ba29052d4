"""The public register's exports (services/gateway/public.py): the format from
`?format=` or Accept, the CSV header row and cells, and a stream that asks for each
page only when the rows before it have been written (one page in memory)."""

import csv
import io

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.gateway.public import csv_columns, export_response, wanted_format
from services.search.contract import PUBLIC_LICENCE_EXAMPLE
from shared.errors import InvalidInput


def request(query: str = "", accept: str | None = None) -> Request:
    headers = {"Accept": accept} if accept else {}
    return Request(
        EnvironBuilder(
            path="/v1/public/licenses", query_string=query, headers=headers
        ).get_environ()
    )


@pytest.mark.parametrize(
    ("query", "accept", "wanted"),
    [
        ("", None, "json"),
        ("", "*/*", "json"),
        ("", "text/csv", "csv"),
        ("", "application/x-ndjson", "jsonl"),
        ("", "application/jsonl", "jsonl"),
        ("", "text/html,application/json;q=0.9,text/csv;q=0.5", "json"),
        ("format=csv", "application/json", "csv"),
        ("format=jsonl", None, "jsonl"),
    ],
)
def test_the_format_is_the_parameter_else_what_accept_prefers(query, accept, wanted):
    assert wanted_format(request(query, accept)) == wanted


def test_an_unknown_format_is_invalid_input_naming_it():
    with pytest.raises(InvalidInput) as refused:
        wanted_format(request("format=xml"))
    assert refused.value.errors[0]["loc"] == ["format"]


def test_the_csv_export_writes_the_header_then_each_page_as_it_is_asked_for():
    pages = {
        None: {"items": [PUBLIC_LICENCE_EXAMPLE], "next_cursor": "2"},
        "2": {
            "items": [{**PUBLIC_LICENCE_EXAMPLE, "id": "lic_2", "plant_name": "=cmd()"}],
            "next_cursor": None,
        },
    }
    asked = []

    def fetch(cursor):
        asked.append(cursor)
        return pages[cursor]

    response = export_response("licence", "csv", fetch)
    assert asked == [None]  # the first page at once: a refused query is a problem answer
    chunks = iter(response.response)
    header, first = next(chunks), next(chunks)
    assert asked == [None]  # the second page only once the first was written
    rest = b"".join(chunks)
    assert asked == [None, "2"]
    rows = list(csv.reader(io.StringIO((header + first + rest).decode())))
    assert rows[0] == csv_columns("licence")
    assert rows[1][rows[0].index("partners")] == (
        "Indus Pharma (Pvt) Ltd (PK); Zhejiang Yangtze Pharmaceutical Co. (CN)"
    )
    assert rows[1][rows[0].index("product")] == ""
    # A cell a spreadsheet would run as a formula is written as text.
    assert rows[2][rows[0].index("plant_name")] == "'=cmd()"
