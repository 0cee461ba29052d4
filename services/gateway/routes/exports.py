"""/v1/ventures/{id}/investments/export and /v1/investments/export: a venture's or the
portfolio's investment flows as CSV or IATI-style activity JSON, streamed page after
page (docs/investments.md, "Exports"): the gateway holds one page of the investments
service's export at a time, whatever the size."""

import csv
import io
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from services.gateway.lists import RECENT
from services.gateway.routing import route
from services.investments.contract import (
    EXPORT_COLUMNS,
    EXPORT_CSV_EXAMPLE,
    IATI_EXAMPLE,
    IATI_VERSION,
    ExportQuery,
)
from shared import codec
from shared.errors import validated
from shared.pagination import MAX_LIMIT

log = logging.getLogger(__name__)

TAG = "investments"
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "iati": "application/json"}
# What the OpenAPI document shows of each.
EXPORTS = (("text/csv", EXPORT_CSV_EXAMPLE), ("application/json", codec.dumps(IATI_EXAMPLE)))
# What Accept may ask for; anything else (and no Accept) gets CSV.
ACCEPTED = {"text/csv": "csv", "application/json": "iati"}
EXTENSIONS = {"csv": "csv", "iati": "json"}

# A page of the export: `fetch(start)` -> {"items": [...], "next": start | None}.
Fetch = Callable[[str | None], dict]


def wanted_format(request: Request) -> str:
    """`?format=` (checked: a wrong one is a 422 naming it), else what Accept prefers."""
    asked = validated(ExportQuery, dict(request.args.items())).format
    if asked:
        return asked
    best = request.accept_mimetypes.best_match(list(ACCEPTED), default="text/csv")
    return ACCEPTED[best]


def pages(fetch: Fetch) -> Iterator[list[dict]]:
    """The export's pages, each fetched once the one before was written. The first is
    fetched at once, so that a refusal is a problem answer rather than a broken stream."""
    page = fetch(None)

    def walk(page: dict) -> Iterator[list[dict]]:
        while True:
            yield page["items"]
            if page["next"] is None:
                return
            try:
                page = fetch(page["next"])
            except Exception as error:
                # The answer is under way: the client sees it cut short, not completed.
                log.warning("an investment flows export stopped: %s", error)
                raise

    return walk(page)


def csv_lines(pages: Iterator[list[dict]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def written(rows: list[list[str]]) -> bytes:
        writer.writerows(rows)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text.encode()

    yield written([list(EXPORT_COLUMNS)])
    for items in pages:
        yield written([item["row"] for item in items])


def iati_lines(pages: Iterator[list[dict]]) -> Iterator[bytes]:
    """One `iati-activities` document: each activity as the service gave it, its
    transactions written into it as they come."""
    generated = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    head = {"version": IATI_VERSION, "generated-datetime": generated}
    yield (codec.dumps(head)[:-1] + ',"iati-activities":[').encode()
    activities = transactions = 0
    for items in pages:
        chunk = []
        for item in items:
            if "activity" in item:
                if activities:
                    chunk.append("]},")
                # The activity's own members, then its transactions as they come.
                chunk.append(codec.dumps(item["activity"])[:-1] + ',"transaction":[')
                activities += 1
                transactions = 0
            else:
                chunk.append(("," if transactions else "") + codec.dumps(item["transaction"]))
                transactions += 1
        yield "".join(chunk).encode()
    yield (b"]}" if activities else b"") + b"]}"


def export_response(wanted: str, fetch: Fetch, name: str) -> Response:
    lines = csv_lines(pages(fetch)) if wanted == "csv" else iati_lines(pages(fetch))
    return Response(
        lines,
        content_type=MEDIA_TYPES[wanted],
        headers={"Content-Disposition": f'attachment; filename="{name}.{EXTENSIONS[wanted]}"'},
        direct_passthrough=True,
    )


class FlowExportRoutes:
    """Mixed into the gateway service, which provides `investments`, `search` and (from
    VentureRoutes) `_visible_venture`."""

    investments: Any  # nameko dependencies of the gateway service
    search: Any

    @route(
        "GET",
        "/v1/ventures/<venture_id>/investments/export",
        summary="A venture's investment flows, every one, as CSV or IATI-style activity JSON "
        "(streamed)",
        tag=TAG,
        query=ExportQuery,
        response=None,
        exports=EXPORTS,
    )
    def export_venture_investments(self, request, principal, venture_id):
        self._visible_venture(principal, venture_id)
        wanted = wanted_format(request)

        def fetch(start: str | None) -> dict:
            return self.investments.export_flows([venture_id], start, wanted)

        return export_response(wanted, fetch, f"{venture_id}-investments")

    @route(
        "GET",
        "/v1/investments/export",
        summary="The portfolio's investment flows (an investor's: its own ventures'), every "
        "one, as CSV or IATI-style activity JSON (streamed)",
        tag=TAG,
        query=ExportQuery,
        response=None,
        exports=EXPORTS,
    )
    def export_portfolio_investments(self, request, principal):
        wanted = wanted_format(request)
        # The ventures a page at a time as the lists show them (the search service
        # pages them by id at any size); an investor's are its organisation's own.
        query = {"owner": principal.owner} if principal.role == "investor" else {}

        def fetch(start: str | None) -> dict:
            """`start`: the search cursor of this page of ventures and where in their
            export the page starts, or None for the first."""
            cursor, within = decode_start(start)
            recent = RECENT.visible_to(principal, "venture")  # read your writes, §10
            ventures = self.search.list("venture", query, cursor, MAX_LIMIT, recent)
            ids = [venture["id"] for venture in ventures["items"]]
            page = self.investments.export_flows(ids, within, wanted)
            if page["next"] is not None:
                return {"items": page["items"], "next": encode_start(cursor, page["next"])}
            following = ventures["next_cursor"]
            next_start = None if following is None else encode_start(following, None)
            return {"items": page["items"], "next": next_start}

        return export_response(wanted, fetch, "investments")


def encode_start(cursor: str | None, within: str | None) -> str:
    return codec.dumps([cursor, within])


def decode_start(start: str | None) -> tuple[str | None, str | None]:
    if start is None:
        return None, None
    cursor, within = codec.loads(start)
    return cursor, within
