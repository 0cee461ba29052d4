"""The search service's wire contract: the query parameters of the lists it answers for
the gateway (each owner's filters, plus `q`, `sort` and `count`), what it answers
(a page of the owner's resources with facet counts), and what it consumes: every event
of ventures, facilities and licensing, on queues of each instance's own
(`search.<instance>.<source>`, docs/architecture.md §10). It publishes no events."""

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from services.facilities import contract as facilities
from services.licensing import contract as licensing
from services.ventures import contract as ventures
from shared.contract import Subscription
from shared.pagination import examples_of, page_of

SERVICE = "search"

# Each kind of document the index keeps, by the prefix of its owner's ids.
DOCUMENT_TYPES = {"venture": "jv_", "facility": "fac_", "licence": "lic_"}
# The aggregate of each source's events, and its doctype.
SOURCES = {
    ventures.SERVICE: ("venture", "venture"),
    facilities.SERVICE: ("facility", "facility"),
    licensing.SERVICE: ("license", "licence"),
}

# Equality filters of each list (the owner's filter models, but `q` and the dates).
FILTERS: dict[str, tuple[str, ...]] = {
    "venture": ("owner", "sector", "province", "status", "partner_country"),
    "facility": ("owner", "venture_id", "province", "kind", "status"),
    "licence": ("owner", "status", "type", "facility_id", "venture_id"),
}
# What `count=` may count, per list.
VentureFacet = Literal["sector", "province", "status", "partner_country", "owner"]
FacilityFacet = Literal["province", "kind", "status", "city", "venture_id", "owner"]
LicenceFacet = Literal["status", "type", "facility_id", "venture_id", "owner"]
# What `sort=` may sort by, per list (`-name`: descending). Ties are broken by id.
VentureSort = Literal[
    "id", "-id", "name", "-name", "created_at", "-created_at", "updated_at", "-updated_at"
]
FacilitySort = Literal[
    "id",
    "-id",
    "name",
    "-name",
    "city",
    "-city",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
]
LicenceSort = Literal[
    "id",
    "-id",
    "type",
    "-type",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "valid_until",
    "-valid_until",
]
FACETS: dict[str, tuple[str, ...]] = {
    "venture": get_args(VentureFacet),
    "facility": get_args(FacilityFacet),
    "licence": get_args(LicenceFacet),
}
SORTS: dict[str, tuple[str, ...]] = {
    doctype: tuple(value for value in get_args(sorts) if not value.startswith("-"))
    for doctype, sorts in (
        ("venture", VentureSort),
        ("facility", FacilitySort),
        ("licence", LicenceSort),
    )
}


Words = Annotated[str, StringConstraints(min_length=1, max_length=200)]
SORT_DESCRIPTION = (
    "order of the items: a field, ascending, or `-field`, descending (ties by id); "
    "default `id`, the order of registration"
)
COUNT_DESCRIPTION = (
    "a field to count the matching items by (like openFDA's `count=`): the answer's "
    "`counts` holds each value with its number of items, most first"
)


class VentureQuery(ventures.VentureFilters):
    """Query parameters of the venture list: the filters, `q` (words of the venture's,
    its partners' or its SEZ's names, each matching the start of a word), `sort` and
    `count`."""

    q: Words | None = Field(None, description="words of the names to find, e.g. `indus api`")
    sort: VentureSort = Field("id", description=SORT_DESCRIPTION)
    count: VentureFacet | None = Field(None, description=COUNT_DESCRIPTION)


class FacilityQuery(facilities.FacilityFilters):
    """Query parameters of the facility list: the filters, `q` (words of the plant's
    name, city or SEZ), `sort` and `count`."""

    q: Words | None = Field(None, description="words of the name or city, e.g. `nowshera`")
    sort: FacilitySort = Field("id", description=SORT_DESCRIPTION)
    count: FacilityFacet | None = Field(None, description=COUNT_DESCRIPTION)


class LicenceQuery(licensing.LicenceFilters):
    """Query parameters of the licence list: the filters, `q` (words of the registered
    product), `sort` and `count`."""

    q: Words | None = Field(None, description="words of the product, e.g. `amoxicillin`")
    sort: LicenceSort = Field("id", description=SORT_DESCRIPTION)
    count: LicenceFacet | None = Field(None, description=COUNT_DESCRIPTION)


QUERIES: dict[str, type[BaseModel]] = {
    "venture": VentureQuery,
    "facility": FacilityQuery,
    "licence": LicenceQuery,
}


class TermCount(BaseModel):
    term: str = Field(description="a value of the counted field")
    count: int = Field(ge=0, description="how many matching items have it")


def search_page_of(model: type[BaseModel], example_count: dict[str, Any]) -> type[BaseModel]:
    """`{"items": [...], "next_cursor": ..., "counts": [...]}`: a list's page, with the
    counts of `count=` when it was asked."""
    examples: list[Any] = [
        {"items": examples_of(model)[:1], "next_cursor": None, "counts": [example_count]}
    ]

    class WithExamples(page_of(model)):  # type: ignore[misc,valid-type]  # a model made at run time
        model_config = ConfigDict(json_schema_extra={"examples": examples})

    return create_model(
        f"{model.__name__}Page",
        __base__=WithExamples,
        counts=(
            list[TermCount] | None,
            Field(
                None, description="with `count=`: each value and its number of items, most first"
            ),
        ),
    )


VenturePage = search_page_of(ventures.Venture, {"term": "api_manufacturing", "count": 12})
FacilityPage = search_page_of(facilities.Facility, {"term": "khyber_pakhtunkhwa", "count": 4})
LicencePage = search_page_of(licensing.Licence, {"term": "granted", "count": 9})


class Lag(BaseModel):
    """How far behind an instance's index is (`search.lag()`)."""

    instance: str
    documents: dict[str, int] = Field(description="documents in the index, per doctype")
    applied: dict[str, int] = Field(description="events applied since start, per source")
    duplicates: dict[str, int] = Field(description="events skipped as applied before")
    last_event_time: dict[str, str | None] = Field(
        description="per source, the `time` of the last event applied (RFC 3339)"
    )
    waiting: dict[str, int | None] = Field(
        description="per source, messages waiting in this instance's queue (None: unknown)"
    )


# --- what it consumes ---------------------------------------------------------------
# `{instance}` is this instance's name (JVREG_SEARCH_INSTANCE): each instance keeps an
# index of its own, so each needs every event, on queues of its own.

QUEUE_TEMPLATE = "search.{instance}.{source}"
FOLLOWS_VENTURES = Subscription(
    QUEUE_TEMPLATE.format(instance="{instance}", source=ventures.SERVICE),
    ventures.SERVICE,
    "venture.#",
    lambda: ventures.EVENTS,
)
FOLLOWS_FACILITIES = Subscription(
    QUEUE_TEMPLATE.format(instance="{instance}", source=facilities.SERVICE),
    facilities.SERVICE,
    "facility.#",
    lambda: facilities.EVENTS,
)
FOLLOWS_LICENCES = Subscription(
    QUEUE_TEMPLATE.format(instance="{instance}", source=licensing.SERVICE),
    licensing.SERVICE,
    "license.#",
    lambda: licensing.EVENTS,
)
SUBSCRIPTIONS: list[Subscription] = [FOLLOWS_VENTURES, FOLLOWS_FACILITIES, FOLLOWS_LICENCES]
EVENTS: dict[str, type[BaseModel]] = {}


def queue_of(subscription: Subscription, instance: str) -> str:
    return subscription.queue.format(instance=instance)
