"""The search service's rules over its embedded index (tantivy): what each kind of
document (venture, facility, licence) keeps for search, filters, sorts and facet counts,
the order in which changes of one aggregate are applied, and the queries that answer
the gateway's lists. No broker, no database: a directory of the instance's own.

Why tantivy: the owners' MongoDB (SecantusDB locally) answers a sorted or ranged page by
scanning every document; an inverted index with column ("fast") fields answers the
same filtered, sorted page, a word search and a facet count from its term dictionary
and columns, whatever the number of documents (docs/architecture.md §10).

Order. Each document keeps the `sequence` of the last event applied to it. A change
whose sequence is at or below it is a duplicate and changes nothing; the next one is
applied; one further ahead is early (`EarlyChange`, shared.inbox's rule), so the
consumer holds it back until its predecessor arrives. Each document also counts the
changes applied to it in this index (`applications`; a rebuild loads one), so that an
event applied twice shows (the chaos suite checks it equals the sequence)."""

import json
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tantivy

from services.search.contract import (
    DOCUMENT_TYPES,
    FACETS,
    FILTERS,
    REGISTER_FILTERS,
    REGISTER_VIEWS,
    SORTS,
    SOURCES,
)

# Hits a facet count names at most (openFDA's `count=` answers 100 by default, 1000 at most).
FACET_LIMIT = 1000
# The separator of a sort key's value and the id that breaks its ties: below every
# character of a value (hex digits and the ids' [a-z0-9_]), so "ab" sorts before "abc".
TIE = "."
WRITER_HEAP_BYTES = 50_000_000


class EarlyChange(Exception):
    """A change that comes before its predecessor: it cannot be applied yet."""


@dataclass(frozen=True)
class Change:
    """One event's effect on the index: `resource` (the aggregate after the event, as
    its owner's contract shows it) is document `id` of `doctype` at `sequence`."""

    doctype: str
    id: str
    sequence: int
    resource: Mapping[str, Any]
    source: str = ""


@dataclass
class Page:
    items: list[dict]
    next_after: str | None
    counts: list[dict] | None = None


def change_of(source: str, subject: str, sequence: int, payload: Any) -> Change:
    """The document an event of `source` leaves: its aggregate after the change (the
    payload model of its producer's contract)."""
    aggregate, doctype = SOURCES[source]
    resource = getattr(payload, aggregate).model_dump(mode="json")
    return Change(doctype, subject, sequence, resource, source)


# --- the schema ------------------------------------------------------------------------

# Raw (untokenized) fields: filters and facets, their values as the resource holds them.
RAW_FIELDS = sorted(
    {name for fields in FILTERS.values() for name in fields}
    | {name for fields in REGISTER_FILTERS.values() for name in fields}
    | {name for fields in FACETS.values() for name in fields}
    | {"owner", "valid_until"}
)
SORT_FIELDS = sorted({f"s_{name}" for sorts in SORTS.values() for name in sorts})


def schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw", fast=True)
    builder.add_text_field("doctype", tokenizer_name="raw", fast=True)
    builder.add_integer_field("sequence", stored=True, indexed=False, fast=False)
    builder.add_integer_field("applications", stored=True, indexed=False, fast=False)
    builder.add_text_field("text", tokenizer_name="default", index_option="basic")
    builder.add_text_field("related_text", tokenizer_name="default", index_option="basic")
    for name in RAW_FIELDS:
        builder.add_text_field(name, tokenizer_name="raw", fast=True, index_option="basic")
    for name in SORT_FIELDS:
        builder.add_text_field(name, tokenizer_name="raw", fast=True, index_option="basic")
    builder.add_bytes_field("resource", stored=True, indexed=False, fast=False)
    builder.add_bytes_field("related", stored=True, indexed=False, fast=False)
    return builder.build()


SCHEMA = schema()


# --- documents ---------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The words of `text` as the index's default tokenizer makes them (runs of letters
    and digits, lower case)."""
    return [word.lower() for word in re.findall(r"[^\W_]+", text)]


def _text_of(doctype: str, resource: Mapping[str, Any]) -> str:
    """What `q=` searches: names, products (their INN names, registration numbers) and
    cities."""
    parts: list[Any] = [resource.get("name")]
    if doctype == "venture":
        parts += [partner.get("name") for partner in resource.get("partners") or []]
        parts.append(resource.get("sez"))
    elif doctype == "facility":
        parts += [resource.get("city"), resource.get("sez")]
    elif doctype == "licence":
        details = resource.get("product_details") or {}
        parts += [resource.get("product"), resource.get("registration_number")]
        parts += [ingredient.get("inn") for ingredient in details.get("active_ingredients", [])]
    return " ".join(str(part) for part in parts if part)


def _raw_values(
    doctype: str, resource: Mapping[str, Any], related: Mapping[str, Any]
) -> dict[str, list[str]]:
    """Each raw field's values: the resource's own, else its plant's (a licence's
    province, city), else its venture's (sector, partners' countries)."""
    sources = [resource, related.get("facility") or {}, related.get("venture") or {}]
    values: dict[str, list[str]] = {}
    for name in RAW_FIELDS:
        for source in sources:
            if name == "partner_country":
                found = sorted(
                    {p["country"] for p in source.get("partners") or [] if p.get("country")}
                )
            else:
                value = source.get(name)
                found = [] if value is None else [str(value)]
            if found:
                values[name] = found
                break
    return values


# --- what a document takes from those it belongs to -----------------------------------

# Of a venture and a plant, what the documents belonging to them carry (the public
# register's filters, words and views), and what links a document to them.
VENTURE_PART = ("id", "name", "sector", "province", "partners")
FACILITY_PART = ("id", "name", "city", "province", "sez")
LINKS = {"facility": ("venture_id",), "licence": ("facility_id", "venture_id")}
LINKED_DOCTYPES = {"venture_id": "venture", "facility_id": "facility"}
# The field by which the documents that carry part of a venture's or plant's name it.
DEPENDANTS_LINK = {"venture": "venture_id", "facility": "facility_id"}


def part_of(doctype: str, resource: Mapping[str, Any]) -> dict[str, Any]:
    """What a venture's or plant's dependants carry of it: partners by name and
    country only."""
    if doctype == "venture":
        part = {name: resource.get(name) for name in VENTURE_PART}
        part["partners"] = [
            {"name": partner.get("name"), "country": partner.get("country")}
            for partner in resource.get("partners") or []
        ]
        return part
    return {name: resource.get(name) for name in FACILITY_PART}


def related_of(doctype: str, resource: Mapping[str, Any], lookup) -> dict[str, Any]:
    """The parts of the venture and plant a document belongs to, each found with
    `lookup(id)` (the resource as the index holds it, None when not there yet)."""
    related: dict[str, Any] = {}
    for link in LINKS.get(doctype, ()):
        identifier = resource.get(link)
        found = lookup(identifier) if identifier else None
        if found is not None:
            linked = LINKED_DOCTYPES[link]
            related[linked] = part_of(linked, found)
    return related


def _related_text(related: Mapping[str, Any]) -> str:
    """What the public register's `q=` finds besides a document's own text: its plant's
    name and city, its venture's and partners' names."""
    facility = related.get("facility") or {}
    venture = related.get("venture") or {}
    parts: list[Any] = [facility.get("name"), facility.get("city"), venture.get("name")]
    parts += [partner.get("name") for partner in venture.get("partners") or []]
    return " ".join(str(part) for part in parts if part)


def register_view(doctype: str, resource: Mapping[str, Any], related: Mapping[str, Any]) -> dict:
    """A document as the public register shows it: its view model takes what it names
    of the resource and of what it belongs to, and nothing else."""
    facility = related.get("facility") or {}
    venture = related.get("venture") or {}
    shown: dict[str, Any] = {
        "plant_name": facility.get("name"),
        "city": facility.get("city"),
        "province": facility.get("province"),
        "venture_name": venture.get("name"),
        "sector": venture.get("sector"),
        "partners": venture.get("partners") or [],
    }
    shown.update({name: value for name, value in resource.items() if value is not None})
    return REGISTER_VIEWS[doctype].model_validate(shown).model_dump(mode="json")


def _hex(text: str) -> str:
    """A text as a key that sorts as its lower-case UTF-8 bytes, in [0-9a-f] only."""
    return text.casefold().encode().hex()


def sort_key(doctype: str, sort: str, resource: Mapping[str, Any]) -> str:
    """The value a document sorts by under `sort`, its id breaking ties: unique, so a
    page ends at one key and the next page starts right after it."""
    identifier = str(resource["id"])
    if sort == "id":
        return identifier
    value = resource.get(sort)
    text = "" if value is None else _hex(str(value))
    return f"{text}{TIE}{identifier}"


def document(
    change: Change, applications: int, related: Mapping[str, Any] | None = None
) -> tantivy.Document:
    resource = change.resource
    related = related or {}
    fields: dict[str, Any] = {
        "id": change.id,
        "doctype": change.doctype,
        "sequence": change.sequence,
        "applications": applications,
        "text": _text_of(change.doctype, resource),
        "related_text": _related_text(related),
        "resource": json.dumps(resource, separators=(",", ":")).encode(),
        "related": json.dumps(related, separators=(",", ":")).encode(),
    }
    fields.update(_raw_values(change.doctype, resource, related))
    for sort in SORTS[change.doctype]:
        fields[f"s_{sort}"] = sort_key(change.doctype, sort, resource)
    return tantivy.Document(**fields)


# --- queries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """What a list asks: its doctype, equality filters (field -> value), the words of
    `q`, `expiring_before` and `valid_on` (licences), a sort (`name` or `-name`), where
    the page starts (`after`, a sort key), how many and which facet to count. A public
    register's list (`register`) finds its words in what a document belongs to too."""

    doctype: str
    filters: Mapping[str, str] = field(default_factory=dict)
    q: str | None = None
    expiring_before: str | None = None
    valid_on: str | None = None
    register: bool = False
    sort: str = "id"
    after: str | None = None
    limit: int = 50
    count: str | None = None


def _term(name: str, value: str) -> tantivy.Query:
    return tantivy.Query.term_query(SCHEMA, name, value)


def _text_range(index: tantivy.Index, name: str, lower: str | None, upper: str | None):
    """Terms of `name` strictly between `lower` and `upper` (None: unbounded). The
    query parser is the only way tantivy's Python binding offers a range over text;
    the bounds are made of [0-9a-z_.-] only (sort keys, ids, dates), so they need no
    quoting."""
    for bound in (lower, upper):
        if bound is not None and not re.fullmatch(r"[0-9A-Za-z_.\-]+", bound):
            raise ValueError(f"not a key this index makes: {bound!r}")
    low = "*" if lower is None else lower
    high = "*" if upper is None else upper
    return index.parse_query(f"{name}:{{{low} TO {high}}}", [name])


def query_of(index: tantivy.Index, query: ListQuery) -> tantivy.Query:
    """The filter part of `query` (no paging): doctype, equality filters, words, dates."""
    must = [_term("doctype", query.doctype)]
    for name, value in sorted(query.filters.items()):
        must.append(_term(name, value))
    for word in words(query.q or ""):
        # Each word of `q` begins a word of the document's text (names, products, cities).
        found = tantivy.Query.regex_query(SCHEMA, "text", re.escape(word) + ".*")
        if query.register:  # or of its plant's or venture's
            related = tantivy.Query.regex_query(SCHEMA, "related_text", re.escape(word) + ".*")
            found = tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, found), (tantivy.Occur.Should, related)]
            )
        must.append(found)
    if query.expiring_before is not None:
        must.append(_text_range(index, "valid_until", None, query.expiring_before))
    if query.valid_on is not None:
        # Granted and in force now, valid through that day: `valid_until` ("YYYY-MM-DDT…")
        # sorts after the bare day when it is that day or later.
        must.append(_term("status", "granted"))
        must.append(_text_range(index, "valid_until", query.valid_on, None))
    return tantivy.Query.boolean_query([(tantivy.Occur.Must, part) for part in must])


def split_sort(sort: str) -> tuple[str, bool]:
    """`name` -> ("name", ascending); `-name` -> ("name", descending)."""
    return (sort[1:], False) if sort.startswith("-") else (sort, True)


class SearchIndex:
    """One instance's index in `path`: its documents, the sequence each has reached,
    and the queries of the lists. One writer per index (tantivy locks the directory):
    changes are staged, then committed together, and a reader sees them once committed."""

    def __init__(self, path: Path, writer_threads: int = 1):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.index = tantivy.Index(SCHEMA, path=str(self.path), reuse=True)
        self.writer = self.index.writer(WRITER_HEAP_BYTES * max(writer_threads, 1), writer_threads)
        self.index.reload()
        # Staged, not yet committed: id -> sequence (what the next change of it follows),
        # and id -> the changes applied to it, that one included.
        self.staged: dict[str, int] = {}
        self.staged_applications: dict[str, int] = {}
        # id -> the change staged last (its own, or its dependants' rewrite of it).
        self.staged_changes: dict[str, Change] = {}

    def close(self) -> None:
        self.writer.wait_merging_threads()

    # -- order --

    def committed(self, document_id: str) -> tuple[int, int]:
        """The sequence a document has reached and the changes applied to it, as
        committed; (0, 0) when it has none."""
        searcher = self.index.searcher()
        hits = searcher.search(_term("id", document_id), 1, count=False).hits
        if not hits:
            return 0, 0
        stored = searcher.doc(hits[0][1])
        return int(stored["sequence"][0]), int(stored["applications"][0])

    def sequence_of(self, document_id: str) -> int:
        """The last sequence applied (or staged) of a document; 0 when it has none."""
        return self._state(document_id)[0]

    def _state(self, document_id: str) -> tuple[int, int]:
        if document_id in self.staged:
            return self.staged[document_id], self.staged_applications[document_id]
        return self.committed(document_id)

    def stage(self, change: Change) -> bool:
        """Stage `change` if it is its document's next: True when staged, False for a
        duplicate; EarlyChange when it comes before its predecessor."""
        last, applications = self._state(change.id)
        if change.sequence <= last:
            return False
        if change.sequence > last + 1:
            raise EarlyChange(
                f"{change.doctype} {change.id} sequence {change.sequence} arrived before {last + 1}"
            )
        self._write(change, applications + 1)
        # What belongs to it carries its name and partners: rewritten with them, at
        # their own sequence and count (no change of theirs was applied).
        for dependant, dependant_applications in self._dependants_of(change):
            self._write(dependant, dependant_applications)
        return True

    def _write(self, change: Change, applications: int) -> None:
        """Stage `change`'s document with what it belongs to as the index holds it now
        (staged included): whichever of a licence, its plant and its venture comes
        last, the licence's document ends with all three."""
        related = related_of(change.doctype, change.resource, self.resource_of)
        self.writer.delete_documents_by_term("id", change.id)
        self.writer.add_document(document(change, applications, related))
        self.staged[change.id] = change.sequence
        self.staged_applications[change.id] = applications
        self.staged_changes[change.id] = change

    def resource_of(self, document_id: str) -> Mapping[str, Any] | None:
        """A document's resource as staged, else as committed; None when it has none."""
        if document_id in self.staged_changes:
            return self.staged_changes[document_id].resource
        return self.get(document_id)

    def _dependants_of(self, change: Change) -> list[tuple[Change, int]]:
        """The documents that carry part of `change`'s (a venture's plants and
        licences, a plant's licences), as committed or staged, each with its count of
        changes applied."""
        link = DEPENDANTS_LINK.get(change.doctype)
        if link is None:
            return []
        found: dict[str, tuple[Change, int]] = {}
        searcher = self.index.searcher()
        for stored in self._stored(searcher, _term(link, change.id)):
            found[stored[0].id] = stored
        for document_id, staged in self.staged_changes.items():
            if staged.resource.get(link) == change.id:
                found[document_id] = (staged, self.staged_applications[document_id])
        return list(found.values())

    def _stored(self, searcher, query) -> Iterator[tuple[Change, int]]:
        """Every committed document `query` matches, as the change that left it and
        its count of changes applied."""
        # tantivy's stub lacks SearchResult.count, which the binding has (count=True).
        total = searcher.search(query, 1, count=True).count or 0  # type: ignore[attr-defined]
        if not total:
            return
        for _, address in searcher.search(query, total, count=False).hits:
            stored = searcher.doc(address)
            document_id = stored["id"][0]
            resource = json.loads(bytes(stored["resource"][0]))
            change = Change(
                doctype_of(document_id), document_id, int(stored["sequence"][0]), resource
            )
            yield change, int(stored["applications"][0])

    def commit(self) -> None:
        """Make every staged change visible to readers, durably."""
        if not self.staged:
            return
        try:
            self.writer.commit()
        except Exception:
            self.rollback()
            raise
        self._forget_staged()
        self.index.reload()

    def rollback(self) -> None:
        self.writer.rollback()
        self._forget_staged()

    def _forget_staged(self) -> None:
        self.staged.clear()
        self.staged_applications.clear()
        self.staged_changes.clear()

    def apply(self, changes: Iterable[Change]) -> list[bool]:
        """Stage and commit `changes` in order (tests, rebuilds): whether each applied."""
        try:
            applied = [self.stage(change) for change in changes]
        except Exception:
            self.rollback()
            raise
        self.commit()
        return applied

    def load(self, changes: Iterable[Change]) -> int:
        """Put the latest state of many documents into an empty index, without the order
        checks (a rebuild: each change is the last event of its aggregate). Returns how
        many were loaded."""
        loaded = 0
        for change in changes:
            self.writer.add_document(document(change, 1))
            loaded += 1
        self.writer.commit()
        self.index.reload()
        self._link_loaded()
        return loaded

    def _link_loaded(self) -> None:
        """Give every loaded plant and licence what it carries of its venture and
        plant, now that all of them are in."""
        searcher = self.index.searcher()
        for doctype in LINKS:
            for change, applications in self._stored(searcher, _term("doctype", doctype)):
                related = related_of(doctype, change.resource, self.get)
                self.writer.delete_documents_by_term("id", change.id)
                self.writer.add_document(document(change, applications, related))
        self.writer.commit()
        self.index.reload()

    # -- reads --

    def count(self, doctype: str | None = None) -> int:
        searcher = self.index.searcher()
        query = tantivy.Query.all_query() if doctype is None else _term("doctype", doctype)
        # tantivy's stub lacks SearchResult.count, which the binding has (count=True).
        return searcher.search(query, 1, count=True).count or 0  # type: ignore[attr-defined]

    def get(self, document_id: str) -> dict | None:
        searcher = self.index.searcher()
        hits = searcher.search(_term("id", document_id), 1, count=False).hits
        if not hits:
            return None
        return json.loads(bytes(searcher.doc(hits[0][1])["resource"][0]))

    def register_views(self, doctype: str, document_ids: Iterable[str]) -> list[dict]:
        """The public register's view of each document of `doctype` there is."""
        searcher = self.index.searcher()
        views = []
        for document_id in document_ids:
            if not document_id.startswith(DOCUMENT_TYPES[doctype]):
                continue
            hits = searcher.search(_term("id", document_id), 1, count=False).hits
            if hits:
                stored = searcher.doc(hits[0][1])
                resource = json.loads(bytes(stored["resource"][0]))
                related = json.loads(bytes(stored["related"][0]))
                views.append(register_view(doctype, resource, related))
        return views

    def search(self, query: ListQuery) -> Page:
        """The page `query` asks for: `limit` documents in its sort order from just after
        `query.after`, the key to start the next page after (None on the last page), and
        the facet counts of `query.count` over every matching document."""
        sort, ascending = split_sort(query.sort)
        if sort not in SORTS[query.doctype]:
            raise ValueError(f"{query.doctype} documents do not sort by {sort}")
        sort_field = f"s_{sort}"
        matching = query_of(self.index, query)
        paged = matching
        if query.after is not None:
            lower, upper = (query.after, None) if ascending else (None, query.after)
            paged = tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, matching),
                    (tantivy.Occur.Must, _text_range(self.index, sort_field, lower, upper)),
                ]
            )
        searcher = self.index.searcher()
        result = searcher.search(
            paged,
            query.limit + 1,
            count=False,
            order_by_field=sort_field,
            order=tantivy.Order.Asc if ascending else tantivy.Order.Desc,
        )
        hits = result.hits[: query.limit]
        items = [json.loads(bytes(searcher.doc(address)["resource"][0])) for _, address in hits]
        next_after = str(hits[-1][0]) if len(result.hits) > query.limit and hits else None
        counts = None
        if query.count is not None:
            counts = self.facet(searcher, matching, query.doctype, query.count)
        return Page(items=items, next_after=next_after, counts=counts)

    def facet(self, searcher, matching, doctype: str, name: str) -> list[dict]:
        if name not in FACETS[doctype]:
            raise ValueError(f"{doctype} documents have no facet {name}")
        answer = searcher.aggregate(
            matching, {"counts": {"terms": {"field": name, "size": FACET_LIMIT}}}
        )
        buckets = answer["counts"]["buckets"]
        return [
            {"term": bucket["key"], "count": bucket["doc_count"]}
            for bucket in sorted(buckets, key=lambda b: (-b["doc_count"], str(b["key"])))
        ]


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def doctype_of(resource_id: str) -> str:
    """The doctype of an aggregate by its id's prefix (`jv_`, `fac_`, `lic_`)."""
    for doctype, prefix in DOCUMENT_TYPES.items():
        if resource_id.startswith(prefix):
            return doctype
    raise ValueError(f"{resource_id} is not a venture, facility or licence id")
