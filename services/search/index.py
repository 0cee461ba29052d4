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

import bisect
import json
import math
import re
import shutil
from collections import Counter, OrderedDict
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
# The writer's memory for changes not yet flushed: an instance following the events
# commits small batches, and one writer thread keeps its segments few (tantivy merges
# them as they grow).
WRITER_HEAP_BYTES = 50_000_000
# A rebuild loads every document with one writer thread whose memory holds them all, so
# it flushes one segment: a windowed page compiles its window against each segment's
# terms, and the first sorted page of 1,000,000 ventures took 3.1 ms over the 10
# segments of a 50 MB heap, 2.2 ms over one (the same page of 1,000: 2.0 ms). A million
# ventures took 1.5 GB at most; beyond what the heap holds (tantivy allows up to 4 GB
# a thread), it flushes another segment.
REBUILD_HEAP_BYTES = 2_000_000_000
# Sort windows (SearchIndex.search): the documents whose id ends so (a regular
# expression) are the sample of each sort order (ids end in a hex counter, so about one
# in 16: windows of many gaps vary little in size).
SAMPLE_ENDING = "0"
# Matches up to which a page is taken from all of them, sorted: too few to need a window.
FEW_MATCHES = 2_000
# Words of the index that a word of `q` may begin to be asked as terms (_word_query).
WORD_EXPANSIONS = 32
# How many times the gaps already read a window after them spans at most.
WIDEN = 8
# How many more matches than wanted a sort window is sized to hold.
WINDOW_MARGIN = 1.1
# A window's matches are read whole and sorted by their documents' keys when they are
# at most this many times those wanted (as sized, about WINDOW_MARGIN times); more,
# and tantivy sorts them (SearchIndex._window_hits).
WINDOW_READ = 3
# Facet counts kept up to date (KeptCounts) and compiled sort windows (SortWindows),
# the least recently asked dropped first.
KEPT_COUNTS = 256
KEPT_WINDOWS = 1024


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


def _word_query(searcher: tantivy.Searcher, word: str, field: str) -> tantivy.Query:
    """Documents with a word of their text that begins with `word`: the words it begins,
    each a term, when they are few (a term's postings are skipped through to a sort
    window's documents, where a pattern collects every posting of every word it matches
    first); the pattern otherwise."""
    begun = searcher.terms_with_prefix(field, word, limit=WORD_EXPANSIONS + 1)
    if len(begun) > WORD_EXPANSIONS:
        return tantivy.Query.regex_query(SCHEMA, field, re.escape(word) + ".*")
    return tantivy.Query.boolean_query(
        [(tantivy.Occur.Should, _term(field, term)) for term, _ in begun]
    )


def most_matches(searcher: tantivy.Searcher, query: ListQuery) -> int:
    """At most how many documents match `query`, by its terms' document frequencies
    (deleted documents included): of its doctype, of each filter, and of the words
    that each word of `q` begins (when they are few enough to be asked as terms)."""
    bounds = [searcher.doc_freq("doctype", query.doctype)]
    bounds += [searcher.doc_freq(name, value) for name, value in query.filters.items()]
    fields = ("text", "related_text") if query.register else ("text",)
    for word in words(query.q or ""):
        begun = [
            searcher.terms_with_prefix(field, word, limit=WORD_EXPANSIONS + 1) for field in fields
        ]
        if all(len(terms) <= WORD_EXPANSIONS for terms in begun):
            bounds.append(sum(count for terms in begun for _, count in terms))
    return min(bounds)


def query_of(index: tantivy.Index, query: ListQuery, searcher: tantivy.Searcher) -> tantivy.Query:
    """The filter part of `query` (no paging): doctype, equality filters, words, dates,
    over what `searcher` sees."""
    must = [_term("doctype", query.doctype)]
    for name, value in sorted(query.filters.items()):
        must.append(_term(name, value))
    for word in words(query.q or ""):
        # Each word of `q` begins a word of the document's text (names, products, cities).
        found = _word_query(searcher, word, "text")
        if query.register:  # or of its plant's or venture's
            related = _word_query(searcher, word, "related_text")
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


# --- sort windows ------------------------------------------------------------------------
# A regular expression over sort keys (ASCII: hex digits, TIE and ids) that tantivy
# answers from the term dictionary, visiting only the keys it matches; a range over
# the same keys reads the whole sort column. Long keys are taken WINDOW_CHUNK
# characters at a time: alternatives for every character of a key at one level would
# exceed what tantivy compiles (1,000 states), one level per character its nesting.
WINDOW_CHUNK = 8
ANY_KEY_CHAR = r"[\x00-\x7f]"


def _literal(text: str) -> str:
    return "".join(char if char.isalnum() else f"\\x{ord(char):02x}" for char in text)


def _one_of(low: int, high: int) -> str | None:
    """Any key starting with one character in [low, high]; None when that is empty."""
    if low > high:
        return None
    return f"[\\x{low:02x}-\\x{high:02x}]{ANY_KEY_CHAR}*"


def _either(alternatives: Iterable[str | None]) -> str | None:
    present = [alternative for alternative in alternatives if alternative is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else "(" + "|".join(present) + ")"


def _at_least(lower: str) -> str:
    """Keys >= `lower`."""
    if not lower:
        return f"{ANY_KEY_CHAR}*"
    chunk, rest = lower[:WINDOW_CHUNK], lower[WINDOW_CHUNK:]
    greater = [
        _literal(chunk[:at]) + one_of
        for at, char in enumerate(chunk)
        if (one_of := _one_of(ord(char) + 1, 0x7F)) is not None
    ]
    return _either([*greater, _literal(chunk) + _at_least(rest)]) or ""


def _below(upper: str) -> str | None:
    """Keys < `upper` (the empty string included); None when there are none."""
    if not upper:
        return None
    chunk, rest = upper[:WINDOW_CHUNK], upper[WINDOW_CHUNK:]
    prefixes = [_literal(chunk[:at]) for at in range(len(chunk))]
    smaller = [
        _literal(chunk[:at]) + one_of
        for at, char in enumerate(chunk)
        if (one_of := _one_of(0, ord(char) - 1)) is not None
    ]
    below_rest = _below(rest)
    longer = None if below_rest is None else _literal(chunk) + below_rest
    return _either([*prefixes, *smaller, longer])


def key_window(lower: str | None, upper: str | None) -> str | None:
    """A regular expression of the sort keys from `lower` (included) to `upper` (not
    included), `lower` < `upper`; None when both are unbounded (None)."""
    if upper is not None and (upper == "" or (lower is not None and lower >= upper)):
        raise ValueError(f"an empty window: {lower!r} to {upper!r}")
    if lower is None:
        return None if upper is None else _below(upper)
    if upper is None:
        return _at_least(lower)
    common = 0
    while lower[common] == upper[common] if common < len(lower) else False:
        common += 1
    if common == len(lower):  # `lower` begins `upper`
        return _literal(lower) + (_below(upper[common:]) or "")
    below_rest = _below(upper[common + 1 :])
    return _literal(lower[:common]) + (
        _either(
            [
                _literal(lower[common]) + _at_least(lower[common + 1 :]),
                _one_of(ord(lower[common]) + 1, ord(upper[common]) - 1),
                None if below_rest is None else _literal(upper[common]) + below_rest,
            ]
        )
        or ""
    )


def separator(keys: list[str], at: int) -> str:
    """The shortest beginning of `keys[at]` that sorts after `keys[at - 1]` (sorted,
    distinct keys, `at` > 0): a window's bound between the two, shorter than either,
    so that its pattern is quicker to compile."""
    key, before = keys[at], keys[at - 1]
    common = 0
    while common < len(before) and before[common] == key[common]:
        common += 1
    return key[: common + 1]


class SortWindows:
    """Where a page's sort window may start and end: the sort keys of a sample of each
    doctype's documents (those whose id ends as SAMPLE_ENDING), per sort field, in
    order, and the compiled windows between them (compiling one takes milliseconds).
    The sample is taken from the index on a doctype's first windowed page, then kept
    as changes are staged. Only how much a page visits depends on it, never what the
    page holds, so a key a document has since left stays (still a valid bound) and a
    change rolled back does no harm."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, list[str]]] = {}
        self.compiled: OrderedDict[tuple[str, str | None, str | None], tantivy.Query] = (
            OrderedDict()
        )

    def add(self, change: Change) -> None:
        kept = self.keys.get(change.doctype)
        if kept is None or not re.fullmatch(f".*{SAMPLE_ENDING}", change.id):
            return
        for sort in SORTS[change.doctype]:
            keys = kept[f"s_{sort}"]
            key = sort_key(change.doctype, sort, change.resource)
            at = bisect.bisect_left(keys, key)
            if at == len(keys) or keys[at] != key:
                keys.insert(at, key)

    def sample(self, searcher, doctype: str, sort_field: str) -> list[str]:
        if doctype not in self.keys:
            self.keys[doctype] = self._taken(searcher, doctype)
        return self.keys[doctype][sort_field]

    def window(self, sort_field: str, lower: str | None, upper: str | None) -> tantivy.Query:
        """Documents whose key under `sort_field` is from `lower` (included) to `upper`."""
        key = (sort_field, lower, upper)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        pattern = key_window(lower, upper)
        query = (
            tantivy.Query.all_query()
            if pattern is None
            else tantivy.Query.regex_query(SCHEMA, sort_field, pattern)
        )
        self.compiled[key] = query
        while len(self.compiled) > KEPT_WINDOWS:
            self.compiled.popitem(last=False)
        return query

    @staticmethod
    def _taken(searcher, doctype: str) -> dict[str, list[str]]:
        sampled = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, _term("doctype", doctype)),
                (
                    tantivy.Occur.Must,
                    tantivy.Query.regex_query(SCHEMA, "id", f".*{SAMPLE_ENDING}"),
                ),
            ]
        )
        found = searcher.search(sampled, 1, count=True).count or 0  # type: ignore[attr-defined]
        hits = searcher.search(sampled, max(found, 1), count=False).hits
        keys: dict[str, set[str]] = {f"s_{sort}": set() for sort in SORTS[doctype]}
        for _, address in hits:  # one document at a time: a sample holds many
            resource = _resource(searcher, address)
            for sort in SORTS[doctype]:
                keys[f"s_{sort}"].add(sort_key(doctype, sort, resource))
        return {field: sorted(taken) for field, taken in keys.items()}


class SearchIndex:
    """One instance's index in `path`: its documents, the sequence each has reached,
    and the queries of the lists. One writer per index (tantivy locks the directory):
    changes are staged, then committed together, and a reader sees them once committed."""

    def __init__(self, path: Path, heap_bytes: int = WRITER_HEAP_BYTES):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.index = tantivy.Index(SCHEMA, path=str(self.path), reuse=True)
        self.writer = self.index.writer(heap_bytes, num_threads=1)
        self.index.reload()
        # Staged, not yet committed: id -> sequence (what the next change of it follows),
        # and id -> the changes applied to it, that one included.
        self.staged: dict[str, int] = {}
        self.staged_applications: dict[str, int] = {}
        # id -> the change staged last (its own, or its dependants' rewrite of it).
        self.staged_changes: dict[str, Change] = {}
        self.windows = SortWindows()
        self.kept = KeptCounts()

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
        self.kept.stage(change, self.get)
        self.writer.delete_documents_by_term("id", change.id)
        self.writer.add_document(document(change, applications, related))
        self.windows.add(change)
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
        self.kept.commit()

    def rollback(self) -> None:
        self.writer.rollback()
        self._forget_staged()
        self.kept.rollback()

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
            self.windows.add(change)
            loaded += 1
        self.writer.commit()
        self.index.reload()
        self._link_loaded()
        self.kept.clear()
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
        return _resource(searcher, hits[0][1])

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
        searcher = self.index.searcher()
        matching = query_of(self.index, query, searcher)
        found = self._first_after(searcher, matching, query, f"s_{sort}", ascending)
        hits = found[: query.limit]
        items = [
            resource if resource is not None else _resource(searcher, address)
            for _, address, resource in hits
        ]
        next_after = str(hits[-1][0]) if len(found) > query.limit and hits else None
        counts = None
        if query.count is not None:
            if query.count not in FACETS[query.doctype]:
                raise ValueError(f"{query.doctype} documents have no facet {query.count}")
            if kept_countable(query):
                counts = self.kept.counts(query, lambda: self.facet(searcher, matching, query))
            else:
                counts = self.facet(searcher, matching, query)
        return Page(items=items, next_after=next_after, counts=counts)

    def _first_after(
        self, searcher, matching, query: ListQuery, sort_field: str, ascending: bool
    ) -> list:
        """The first `limit + 1` matches after the cursor in sort order, as (key, address,
        resource or None when it was not read).

        Ordering by a text fast field costs what the hits returned number (each segment
        turns its best ones into their keys) and what the query visits, so a page reads
        the sort order a window at a time: the sample's keys (SortWindows) cut it into
        gaps, each of about as many documents as the sample holds one in; a window is
        the next gaps from the cursor, as many as should hold the matches still wanted
        (WINDOW_MARGIN times), cut at the cursor itself (as it is read, or by a range
        over the sort field). The windows are disjoint and read in order, so their
        sorted hits, one after another, are exactly the plain sort's. Few matches are
        sorted whole."""
        order = tantivy.Order.Asc if ascending else tantivy.Order.Desc
        wanted = query.limit + 1
        after = query.after

        def past_cursor(hit) -> bool:
            return after is None or (hit[0] > after if ascending else hit[0] < after)

        def sorted_hits(window, limit: int) -> list:
            parts = [matching] if window is None else [matching, window]
            if window is not None:
                within = tantivy.Query.boolean_query([(tantivy.Occur.Must, p) for p in parts])
                read = self._window_hits(searcher, within, query.doctype, sort_field, limit)
                if read is not None:  # cut at the cursor here
                    in_order = read if ascending else read[::-1]
                    return [hit for hit in in_order if past_cursor(hit)][:limit]
            if after is not None:  # keys past the cursor
                lower, upper = (after, None) if ascending else (None, after)
                parts.append(_text_range(self.index, sort_field, lower, upper))
            both = tantivy.Query.boolean_query([(tantivy.Occur.Must, part) for part in parts])
            ordered = searcher.search(
                both, limit, count=False, order_by_field=sort_field, order=order
            ).hits
            return [(key, address, None) for key, address in ordered]

        documents = searcher.doc_freq("doctype", query.doctype)
        most = most_matches(searcher, query)
        if documents <= FEW_MATCHES or most <= FEW_MATCHES:
            return sorted_hits(None, wanted)
        keys = self.windows.sample(searcher, query.doctype, sort_field)
        gaps = len(keys)
        if not gaps:
            return sorted_hits(None, wanted)

        def bound(at: int) -> str | None:
            """Where gap `at` begins (gap 0 from the start, the last to the end)."""
            return separator(keys, at) if 0 < at < gaps else None

        # The gap the cursor is in, from bound(gap) at or before it to bound(gap + 1) after.
        if after is None:
            gap = 0 if ascending else gaps - 1
        else:
            gap = max(bisect.bisect_right(keys, after) - 1, 0)
            if gap + 1 < gaps and (bound(gap + 1) or "") <= after:
                gap += 1
        # Matches per gap: the rarest term's share of the gap's documents at first; what
        # windows read through held (words, deletions) weighs in as they are read.
        estimated = most / gaps
        prior_gaps = math.ceil(WINDOW_MARGIN * wanted / estimated)
        read_gaps, read_hits = 0.0, 0
        found: list = []
        while True:
            need = wanted - len(found)
            rate = (read_hits + estimated * prior_gaps) / (read_gaps + prior_gaps)
            span = math.ceil(WINDOW_MARGIN * need / rate)
            if read_gaps:
                span = min(span, math.ceil(WIDEN * read_gaps))
            low, high = (gap, gap + span) if ascending else (gap - span + 1, gap + 1)
            low, high = max(low, 0), min(high, gaps)
            hits = sorted_hits(self.windows.window(sort_field, bound(low), bound(high)), need)
            found += hits
            if len(found) >= wanted or (high == gaps if ascending else low == 0):
                return found
            # Read through: the window held fewer matches than asked for. (Of the
            # cursor's gap, about half is past the cursor.)
            read_hits += len(hits)
            read_gaps += high - low - (0.5 if after is not None and not read_gaps else 0)
            gap = high if ascending else low - 1

    @staticmethod
    def _window_hits(searcher, both, doctype: str, sort_field: str, wanted: int) -> list | None:
        """Every match of a window (`both`), as (key, address, resource) in ascending key
        order; None when it holds over WINDOW_READ times the matches `wanted`. A window
        is sized to hold about as many as a page wants, and a page reads their documents
        anyway: sorting them here by the key each document makes costs less than
        tantivy's ordering by a text field, which looks each hit's key up in the field's
        dictionary."""
        most = WINDOW_READ * wanted
        hits = searcher.search(both, most, count=False).hits
        if len(hits) >= most:
            return None
        sort = sort_field.removeprefix("s_")
        read = []
        for _, address in hits:
            resource = _resource(searcher, address)
            read.append((sort_key(doctype, sort, resource), address, resource))
        read.sort(key=lambda hit: hit[0])
        return read

    @staticmethod
    def facet(searcher, matching, query: ListQuery) -> list[dict]:
        """The facet counts of `query.count` over the documents `matching`, most first."""
        answer = searcher.aggregate(
            matching, {"counts": {"terms": {"field": query.count, "size": FACET_LIMIT}}}
        )
        return ordered_counts(
            (bucket["key"], bucket["doc_count"]) for bucket in answer["counts"]["buckets"]
        )


def _resource(searcher, address) -> dict:
    return json.loads(bytes(searcher.doc(address)["resource"][0]))


def ordered_counts(counts: Iterable[tuple[str, int]]) -> list[dict]:
    """Facet counts as a list answers them: most first, then by term."""
    return [
        {"term": term, "count": count}
        for term, count in sorted(counts, key=lambda pair: (-pair[1], str(pair[0])))
    ]


class KeptCounts:
    """Facet counts of lists without words or dates (`count=` with equality filters
    only), per (doctype, filters, facet): counted by aggregation when first asked, then
    kept exactly as commits replace documents, so that asking again does not visit
    every match. A change is counted out with the document it replaces (read when it
    is staged, once any counts are kept) and in with the new one, at the commit that
    makes it visible, as readers see it. Counts are not kept when first asked while
    a change staged before any were kept waits for its commit (its former document
    was not read), nor once they reach FACET_LIMIT values."""

    def __init__(self) -> None:
        self.kept: OrderedDict[tuple, Counter[str]] = OrderedDict()
        # id -> (doctype, the committed document it replaces, its staged one).
        self.staged: dict[str, tuple[str, Mapping[str, Any] | None, Mapping[str, Any]]] = {}
        self.unread = False  # a change staged whose former document was not read

    def counts(self, query: ListQuery, aggregated) -> list[dict]:
        """The counts of `query` from those kept, or `aggregated()` (then kept)."""
        key = (query.doctype, tuple(sorted(query.filters.items())), query.count)
        if key in self.kept:
            self.kept.move_to_end(key)
            return ordered_counts(self.kept[key].items())
        answer = aggregated()
        if not self.unread and len(answer) < FACET_LIMIT:
            self.kept[key] = Counter({count["term"]: count["count"] for count in answer})
            while len(self.kept) > KEPT_COUNTS:
                self.kept.popitem(last=False)
        return answer

    def stage(self, change: Change, committed_resource) -> None:
        if not self.kept:
            self.unread = True
            return
        replaced = (
            self.staged[change.id][1] if change.id in self.staged else committed_resource(change.id)
        )
        self.staged[change.id] = (change.doctype, replaced, change.resource)

    def commit(self) -> None:
        staged, self.staged, self.unread = self.staged, {}, False
        for key in list(self.kept):
            doctype, filters, facet = key
            counts = self.kept[key]
            for kind, before, after in staged.values():
                if kind != doctype:
                    continue
                counts.subtract(_counted_values(doctype, before, filters, facet))
                counts.update(_counted_values(doctype, after, filters, facet))
            for term in [term for term, count in counts.items() if count <= 0]:
                del counts[term]
            if len(counts) >= FACET_LIMIT:
                del self.kept[key]

    def rollback(self) -> None:
        self.staged.clear()
        self.unread = False

    def clear(self) -> None:
        self.kept.clear()
        self.rollback()


def kept_countable(query: ListQuery) -> bool:
    """Whether `query`'s counts may be kept: no words or dates, and only the document's
    own fields as filters (a keyed list's; a public register's may filter on what a
    licence carries of its plant and venture, which its resource does not hold)."""
    own = set(FILTERS[query.doctype])
    return (
        query.q is None
        and query.expiring_before is None
        and query.valid_on is None
        and not query.register
        and set(query.filters) <= own
        and query.count in FACETS[query.doctype]
    )


def _counted_values(
    doctype: str,
    resource: Mapping[str, Any] | None,
    filters: tuple[tuple[str, str], ...],
    facet: str,
) -> list[str]:
    """The values of `facet` a document counts for under `filters` (none when it does
    not match them), as the index holds them."""
    if resource is None:
        return []
    values = _raw_values(doctype, resource, {})  # own fields only (kept_countable)
    if any(value not in values.get(name, ()) for name, value in filters):
        return []
    return values.get(facet, [])


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def doctype_of(resource_id: str) -> str:
    """The doctype of an aggregate by its id's prefix (`jv_`, `fac_`, `lic_`)."""
    for doctype, prefix in DOCUMENT_TYPES.items():
        if resource_id.startswith(prefix):
            return doctype
    raise ValueError(f"{resource_id} is not a venture, facility or licence id")
