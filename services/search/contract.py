"""The search service's wire contract: the query parameters of the lists it answers for
the gateway (each owner's filters, plus `q`, `sort` and `count`), what it answers
(a page of the owner's resources with facet counts), and what it consumes: every event
of ventures, facilities and licensing, on queues of each instance's own
(`search.<instance>.<source>`, docs/architecture.md §10). It publishes no events."""

from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    create_model,
    model_validator,
)

from services.facilities import contract as facilities
from services.licensing import contract as licensing
from services.ventures import contract as ventures
from shared.codec import rfc3339
from shared.contract import Strict, Subscription
from shared.input_types import date_bounds
from shared.pagination import examples_of, page_of
from shared.vocabulary import Province

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
    "licence": (
        "owner",
        "status",
        "type",
        "facility_id",
        "venture_id",
        "registration_number",
        "renews",
    ),
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

    q: Words | None = Field(
        None,
        description="words of the product, its active ingredients (INN) or registration "
        "number, e.g. `amoxicillin`",
    )
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


# --- the public register: no key, what a public register shows and nothing more ---------
# Its documents carry what they belong to (docs/architecture.md §10): a plant its
# venture's name, sector and partners; a licence its plant's name, city and province
# and its venture's. Never investment figures, focal points, owners, key ids or notes.

REGISTER_FILTERS: dict[str, tuple[str, ...]] = {
    "venture": ("sector", "province", "status", "partner_country"),
    "facility": ("venture_id", "kind", "status", "province", "sector", "partner_country"),
    "licence": (
        "venture_id",
        "facility_id",
        "type",
        "status",
        "province",
        "sector",
        "partner_country",
        "registration_number",
    ),
}
PublicVentureSort = Literal["id", "-id", "name", "-name"]
PublicFacilitySort = Literal["id", "-id", "name", "-name", "city", "-city"]
PublicLicenceSort = Literal["id", "-id", "type", "-type", "valid_until", "-valid_until"]
PUBLIC_WORDS = Field(
    None,
    description="words to find, each the start of a word of the venture's or plant's "
    "names, the product or the city, e.g. `indus nowsh`",
)
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class PublicVentureQuery(Strict):
    """What the public register's venture list takes: filters, `q` and `sort`."""

    sector: ventures.Sector | None = None
    province: Province | None = None
    status: ventures.VentureStatus | None = None
    partner_country: ventures.CountryCode | None = Field(
        None, description="ventures with a partner from this country (ISO 3166-1 alpha-2)"
    )
    q: Words | None = PUBLIC_WORDS
    sort: PublicVentureSort = Field("id", description=SORT_DESCRIPTION)


class PublicFacilityQuery(Strict):
    """What the public register's plant list takes: filters (the plant's own and its
    venture's sector and partners' countries), `q` and `sort`."""

    venture_id: Identifier | None = None
    kind: facilities.FacilityKind | None = None
    status: facilities.FacilityStatus | None = None
    province: Province | None = None
    sector: ventures.Sector | None = Field(None, description="the venture's sector")
    partner_country: ventures.CountryCode | None = Field(
        None, description="plants of ventures with a partner from this country"
    )
    q: Words | None = PUBLIC_WORDS
    sort: PublicFacilitySort = Field("id", description=SORT_DESCRIPTION)


class PublicLicenceQuery(Strict):
    """What the public register's licence list takes: filters (the licence's own, its
    plant's province, its venture's sector and partners' countries, a day it is valid
    on), `q` and `sort`."""

    venture_id: Identifier | None = None
    facility_id: Identifier | None = None
    type: licensing.LicenceType | None = None
    status: licensing.LicenceStatus | None = None
    province: Province | None = Field(None, description="the plant's province")
    sector: ventures.Sector | None = Field(None, description="the venture's sector")
    partner_country: ventures.CountryCode | None = Field(
        None, description="licences of ventures with a partner from this country"
    )
    valid_on: Annotated[date, date_bounds(licensing.VALID_UNTIL_YEARS_AHEAD + 1)] | None = Field(
        None,
        description="licences granted and in force now whose validity reaches this day "
        "(`valid_until` on or after it), e.g. `2027-01-01`",
    )
    registration_number: Identifier | None = Field(
        None, description="the product registration with DRAP's registration number"
    )
    q: Words | None = PUBLIC_WORDS
    sort: PublicLicenceSort = Field("id", description=SORT_DESCRIPTION)


REGISTER_QUERIES: dict[str, type[BaseModel]] = {
    "venture": PublicVentureQuery,
    "facility": PublicFacilityQuery,
    "licence": PublicLicenceQuery,
}


class PublicPartner(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    country: str = Field(description="ISO 3166-1 alpha-2, e.g. PK or CN")


PUBLIC_VENTURE_EXAMPLE: dict[str, Any] = {
    "id": ventures.VENTURE_EXAMPLE["id"],
    "name": ventures.VENTURE_EXAMPLE["name"],
    "sector": "api_manufacturing",
    "province": "khyber_pakhtunkhwa",
    "sez": "Rashakai SEZ",
    "status": "active",
    "partners": [
        {"name": "Indus Pharma (Pvt) Ltd", "country": "PK"},
        {"name": "Zhejiang Yangtze Pharmaceutical Co.", "country": "CN"},
    ],
}
PUBLIC_FACILITY_EXAMPLE: dict[str, Any] = {
    "id": facilities.FACILITY_EXAMPLE["id"],
    "name": facilities.FACILITY_EXAMPLE["name"],
    "kind": "formulation_plant",
    "city": "Nowshera",
    "province": "khyber_pakhtunkhwa",
    "sez": "Rashakai SEZ",
    "status": "operational",
    "venture_id": PUBLIC_VENTURE_EXAMPLE["id"],
    "venture_name": PUBLIC_VENTURE_EXAMPLE["name"],
    "sector": "api_manufacturing",
    "partners": PUBLIC_VENTURE_EXAMPLE["partners"],
}
PUBLIC_LICENCE_EXAMPLE: dict[str, Any] = {
    "id": licensing.LICENCE_EXAMPLE["id"],
    "type": "dml_formulation",
    "product": None,
    "registration_number": None,
    "dosage_form": None,
    "strength": None,
    "active_ingredients": None,
    "status": "granted",
    "valid_until": "2031-12-14T23:59:59.999Z",
    "decision_ref": "DRAP/LIC/2026/0412",
    "facility_id": PUBLIC_FACILITY_EXAMPLE["id"],
    "plant_name": PUBLIC_FACILITY_EXAMPLE["name"],
    "city": "Nowshera",
    "province": "khyber_pakhtunkhwa",
    "venture_id": PUBLIC_VENTURE_EXAMPLE["id"],
    "venture_name": PUBLIC_VENTURE_EXAMPLE["name"],
    "sector": "api_manufacturing",
    "partners": PUBLIC_VENTURE_EXAMPLE["partners"],
}


class PublicVenture(BaseModel):
    """A venture as the public register shows it."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [PUBLIC_VENTURE_EXAMPLE]}
    )

    id: str
    name: str
    sector: str
    province: str
    sez: str | None = None
    status: str
    partners: list[PublicPartner]


class PublicFacility(BaseModel):
    """A plant as the public register shows it, with its venture's name, sector and
    partners (empty until the register has heard of the venture)."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [PUBLIC_FACILITY_EXAMPLE]}
    )

    id: str
    name: str
    kind: str
    city: str
    province: str
    sez: str | None = None
    status: str
    venture_id: str
    venture_name: str | None = None
    sector: str | None = None
    partners: list[PublicPartner] = Field(default_factory=list)


class PublicLicence(BaseModel):
    """A licence as the public register shows it: its number (`id`), type, status,
    validity and decision reference, its plant and its venture with the partners."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [PUBLIC_LICENCE_EXAMPLE]}
    )

    id: str = Field(description="the licence number")
    type: str
    product: str | None = None
    registration_number: str | None = Field(
        None, description="a product registration's number, issued by DRAP on grant"
    )
    dosage_form: str | None = None
    strength: str | None = Field(None, description="e.g. `500 mg`")
    active_ingredients: str | None = Field(
        None,
        description="INN names (each with its strength in a combination), e.g. "
        "`Amoxicillin 500 mg + Clavulanic acid 125 mg`",
    )
    status: str
    valid_until: Annotated[datetime, PlainSerializer(rfc3339)] | None = Field(
        None, description="valid through this moment (RFC 3339)"
    )
    decision_ref: str | None = Field(None, description="DRAP's reference of the latest decision")
    facility_id: str
    plant_name: str | None = None
    city: str | None = None
    province: str | None = Field(None, description="the plant's province")
    venture_id: str
    venture_name: str | None = None
    sector: str | None = None
    partners: list[PublicPartner] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def product_shown_flat(cls, data: Any) -> Any:
        """A product registration's details as plain columns (the CSV export's too)."""
        details = data.get("product_details") if isinstance(data, dict) else None
        if not details:
            return data
        product = licensing.ProductDetails.model_validate(details)
        return {
            **data,
            "dosage_form": product.dosage_form,
            "strength": str(product.strength),
            "active_ingredients": product.ingredients_text(),
        }


REGISTER_VIEWS: dict[str, type[BaseModel]] = {
    "venture": PublicVenture,
    "facility": PublicFacility,
    "licence": PublicLicence,
}
PublicVenturePage = page_of(PublicVenture)
PublicFacilityPage = page_of(PublicFacility)
PublicLicencePage = page_of(PublicLicence)


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
