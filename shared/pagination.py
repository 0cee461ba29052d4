"""Opaque cursors for `{"items": [...], "next_cursor": ...}` lists, ordered by id."""

import base64
import binascii
import json
from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model

from shared.errors import field_error

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class PageQuery(BaseModel):
    """The paging parameters of every list (read by `parse_limit` and `decode_cursor`)."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="items per page")
    cursor: str | None = Field(
        None, description="the `next_cursor` of the previous page; absent for the first"
    )


def encode_cursor(last_id: str) -> str:
    raw = json.dumps({"after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The id a page starts after; a cursor we did not issue is invalid input naming `cursor`."""
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = payload["after"]
        if not isinstance(after, str) or not after:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise field_error(["cursor"], "malformed cursor") from None


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise field_error(["limit"], "must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise field_error(["limit"], f"must be between 1 and {MAX_LIMIT}")
    return limit


# The query parameters of paging; the others of a list's query are its filters.
PAGING_PARAMS = ("limit", "cursor")


def filters_in(args: Mapping[str, str]) -> dict[str, str]:
    """A list query's filters: its parameters other than paging's."""
    return {key: value for key, value in args.items() if key not in PAGING_PARAMS}


def paged(fetch: Callable[[str | None, int], list[dict]], args: Mapping[str, str]) -> dict:
    """The page `args` (`limit`, `cursor`) ask for, fetched with `fetch(after, limit)`,
    one item more than the page, to know whether another page follows."""
    limit = parse_limit(args.get("limit"))
    return page(fetch(decode_cursor(args.get("cursor")), limit + 1), limit)


def page(items: list[dict], limit: int) -> dict:
    """Build a page from up to `limit + 1` items fetched in id order."""
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(items[-1]["id"]) if has_more and items else None
    return {"items": items, "next_cursor": next_cursor}


def every_item(fetch: Callable[[str | None, int], list[dict]]) -> list[dict]:
    """Every item of a list, fetched a page at a time with `fetch(after, limit)`."""
    items: list[dict] = []
    after = None
    while True:
        batch = fetch(after, MAX_LIMIT)
        items.extend(batch)
        if len(batch) < MAX_LIMIT:
            return items
        after = batch[-1]["id"]


def examples_of(model: type[BaseModel]) -> list[JsonValue]:
    """The examples a model states in its JSON schema (`json_schema_extra`)."""
    return list(model.model_json_schema(mode="serialization").get("examples", []))


def page_of(model: type[BaseModel]) -> type[BaseModel]:
    """The model of `page(...)` of `model`s: `{"items": [...], "next_cursor": ...}`."""
    examples: list[JsonValue] = [
        {"items": [item], "next_cursor": None} for item in examples_of(model)[:1]
    ]
    return create_model(
        f"{model.__name__}Page",
        __config__=ConfigDict(json_schema_extra={"examples": examples}) if examples else None,
        items=(list[model], ...),  # type: ignore[valid-type]  # a model made at run time
        next_cursor=(str | None, Field(description="pass as `cursor` for the next page")),
    )
