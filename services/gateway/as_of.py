"""Reads and lists "as of" a past instant (`?as_of=`, docs/architecture.md §6.6): the
parameter, and a list answered by the owner from its history (shared/as_of.py) instead
of by the search service, whose index holds the present."""

from collections.abc import Callable, Mapping

from pydantic import BaseModel, create_model

from shared.as_of import AsOfQuery
from shared.errors import field_error, validated
from shared.pagination import decode_cursor, filters_in, page, parse_limit

# The search service's parameters an as-of list does not take: words, facet counts and
# sorts other than registration order (the owner's history is read in id order).
SEARCH_ONLY = ("q", "count")


def with_as_of(query: type[BaseModel]) -> type[BaseModel]:
    """A list's query model with `as_of`, for the route's declaration (OpenAPI)."""
    return create_model(query.__name__, __base__=(query, AsOfQuery))


def as_of_in(args: Mapping[str, str]) -> str | None:
    """The request's `as_of`, checked (RFC 3339 with an offset, not in the future:
    invalid input naming `as_of`), as given; None when absent."""
    raw = args.get("as_of")
    if raw is None:
        return None
    validated(AsOfQuery, {"as_of": raw})
    return raw


def page_as_of(
    list_rpc: Callable[..., list[dict]], as_of: str, args: Mapping[str, str], principal
) -> dict:
    """The page of an owner's list as it stood `as_of`: its filters matched on each
    aggregate's state then, in registration order; an investor's limited to its own."""
    filters = {key: value for key, value in filters_in(args).items() if key != "as_of"}
    for name in SEARCH_ONLY:
        if name in filters:
            raise field_error([name], "not with as_of: a past state is listed by its filters")
    if filters.pop("sort", "id") != "id":
        raise field_error(["sort"], "not with as_of: a past state is listed in id order")
    if principal.role == "investor":
        filters["owner"] = principal.owner
    limit = parse_limit(args.get("limit"))
    after = decode_cursor(args.get("cursor"))
    return page(list_rpc(filters, after, limit + 1, as_of), limit)
