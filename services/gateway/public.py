"""The public register's answers besides a JSON page: every matching item streamed as
CSV or JSON Lines, chosen by `?format=` or the Accept header. A stream walks the search
service's pages one after another and writes each row as it comes, so an export of any
size holds one page in memory; `limit` and `cursor` do not apply to it."""

import csv
import io
import logging
from collections.abc import Callable, Iterator
from typing import Literal

from pydantic import BaseModel, Field, create_model
from werkzeug.wrappers import Request, Response

from services.search.contract import REGISTER_QUERIES, REGISTER_VIEWS
from shared import codec
from shared.errors import field_error
from shared.pagination import examples_of
from shared.spreadsheet import text_cell

log = logging.getLogger(__name__)

Format = Literal["json", "csv", "jsonl"]
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
# What Accept may ask for, the page's own type first: `*/*` and no Accept get JSON.
ACCEPTED = {
    "application/json": "json",
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
}
FILE_NAMES = {"venture": "ventures", "facility": "facilities", "licence": "licences"}


def list_query_with_format(doctype: str) -> type[BaseModel]:
    """The query of a public list as the gateway takes it: the search service's, and
    `format`."""
    base = REGISTER_QUERIES[doctype]
    return create_model(
        f"{base.__name__}Parameters",
        __base__=base,
        format=(
            Format | None,
            Field(
                None,
                description="`csv` or `jsonl`: every matching item (not a page), streamed; "
                "or send `Accept: text/csv` or `application/x-ndjson`. Default `json`",
            ),
        ),
    )


def wanted_format(request: Request) -> str:
    """`?format=`, else what Accept prefers of JSON, CSV and JSON Lines."""
    given = request.args.get("format")
    if given is not None:
        if given not in ("json", *MEDIA_TYPES):
            raise field_error(["format"], "json, csv or jsonl")
        return given
    best = request.accept_mimetypes.best_match(list(ACCEPTED), default="application/json")
    return ACCEPTED[best]


def csv_columns(doctype: str) -> list[str]:
    """The header row of a CSV export: the view's fields in their order."""
    return list(REGISTER_VIEWS[doctype].model_fields)


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # partners: "Name (PK); Name (CN)"
        return "; ".join(f"{partner['name']} ({partner['country']})" for partner in value)
    return text_cell(str(value))


def csv_lines(doctype: str, items: Iterator[dict]) -> Iterator[bytes]:
    columns = csv_columns(doctype)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[str]) -> bytes:
        writer.writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text.encode()

    yield line(columns)
    for item in items:
        yield line([csv_cell(item.get(column)) for column in columns])


def jsonl_lines(items: Iterator[dict]) -> Iterator[bytes]:
    for item in items:
        yield (codec.dumps(item) + "\n").encode()


def every_item(fetch: Callable[[str | None], dict]) -> Iterator[dict]:
    """Every item of a list, page after page (`fetch(cursor)`). The first page is asked
    for at once, so that a refused query is a problem answer, not a broken stream."""
    page = fetch(None)

    def walk(page: dict) -> Iterator[dict]:
        while True:
            yield from page["items"]
            if not page["next_cursor"]:
                return
            try:
                page = fetch(page["next_cursor"])
            except Exception as error:
                # The answer is under way: the client sees it cut short, not completed.
                log.warning("a public register export stopped: %s", error)
                raise

    return walk(page)


def lines_of(doctype: str, wanted: str, items: Iterator[dict]) -> Iterator[bytes]:
    return csv_lines(doctype, items) if wanted == "csv" else jsonl_lines(items)


def exports_of(doctype: str) -> tuple[tuple[str, str], ...]:
    """Each export's media type, with an example (the view's own, written as it)."""
    example = examples_of(REGISTER_VIEWS[doctype])[:1]
    return tuple(
        (media_type, b"".join(lines_of(doctype, wanted, iter(example))).decode())  # type: ignore[arg-type]
        for wanted, media_type in MEDIA_TYPES.items()
    )


def export_response(doctype: str, wanted: str, fetch: Callable[[str | None], dict]) -> Response:
    lines = lines_of(doctype, wanted, every_item(fetch))
    media_type = MEDIA_TYPES[wanted]
    return Response(
        lines,
        content_type=f"{media_type}; charset=utf-8" if wanted == "csv" else media_type,
        headers={"Content-Disposition": f'attachment; filename="{FILE_NAMES[doctype]}.{wanted}"'},
    )
