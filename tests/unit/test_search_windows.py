"""The search index's shortcuts are exact (services/search/index.py): a page read through
a sort window equals the page of the plain sort of every match, and facet counts kept
across changes equal a fresh aggregation. On a real tantivy index in a temporary
directory, with random documents, changes and queries; no broker, no database."""

import copy
import random
import re
from collections import Counter

import pytest

from services.search import index as search_index
from services.search.contract import FILTERS, SORTS
from services.search.index import (
    Change,
    ListQuery,
    SearchIndex,
    key_window,
    query_of,
    sort_key,
    split_sort,
    words,
)
from services.ventures.contract import VENTURE_EXAMPLE

NAMES = ("Indus", "Yangtze", "Karakoram", "Gwadar", "Lahore", "Kunlun", "Indigo", "Silk")
SECTORS = ("api_manufacturing", "telemedicine", "medical_devices", "other")
PROVINCES = ("punjab", "sindh", "balochistan")
STATUSES = ("registered", "active", "suspended")
COUNTRIES = ("CN", "PK", "SG")
TIMES = ("2026-01-0{}T10:00:00Z", "2026-02-1{}T08:30:00Z", "2025-12-2{}T23:59:59Z")


def venture(rng: random.Random, number: int) -> dict:
    resource = copy.deepcopy(VENTURE_EXAMPLE)
    for partner in resource["partners"]:
        partner["country"] = rng.choice(COUNTRIES)
    resource.update(
        id=f"jv_{number:024x}",
        # Names repeat, so ties broken by id show; some differ only in case.
        name=f"{rng.choice(NAMES)} {rng.choice(NAMES).lower()} {rng.randrange(30)}",
        sector=rng.choice(SECTORS),
        province=rng.choice(PROVINCES),
        status=rng.choice(STATUSES),
        owner=f"Investor {rng.randrange(3)}",
        created_at=rng.choice(TIMES).format(rng.randrange(10)),
        updated_at=rng.choice(TIMES).format(rng.randrange(10)),
    )
    return resource


def expected_ids(resources: dict[str, dict], query: ListQuery) -> list[str]:
    """The plain answer, from the resources themselves: every match, sorted."""
    sort, ascending = split_sort(query.sort)
    matching = []
    for resource in resources.values():
        values = search_index._raw_values("venture", resource, {})
        if any(value not in values.get(name, []) for name, value in query.filters.items()):
            continue
        text = words(search_index._text_of("venture", resource))
        if not all(any(word.startswith(asked) for word in text) for asked in words(query.q or "")):
            continue
        matching.append(resource)
    ordered = sorted(matching, key=lambda r: sort_key("venture", sort, r), reverse=not ascending)
    return [resource["id"] for resource in ordered]


def paged_ids(index: SearchIndex, query: ListQuery) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        page = index.search(ListQuery(**{**query.__dict__, "after": after}))
        seen += [item["id"] for item in page.items]
        assert len(page.items) <= query.limit
        after = page.next_after
        if after is None:
            return seen


def random_query(rng: random.Random, count: str | None = None) -> ListQuery:
    options = {
        "sector": SECTORS,
        "province": PROVINCES,
        "status": STATUSES,
        "partner_country": COUNTRIES,
        "owner": ("Investor 0", "Investor 1"),
    }
    assert set(options) <= set(FILTERS["venture"])
    chosen = rng.sample(sorted(options), rng.choice((0, 0, 1, 1, 2)))
    filters = {name: rng.choice(options[name]) for name in chosen}
    q = rng.choice([None, None, None, "ind", "indus", "yangtze gwad", "kunlun 1"])
    sort = rng.choice(SORTS["venture"])
    return ListQuery(
        "venture",
        filters,
        q=q,
        sort=rng.choice(("", "-")) + sort,
        limit=rng.choice((1, 7, 50)),
        count=count,
    )


@pytest.fixture
def small_windows(monkeypatch):
    """Windows at a small scale: from 40 matches on, so that a few hundred documents (a
    sample of one in 16) hold many windows."""
    monkeypatch.setattr(search_index, "FEW_MATCHES", 40)


def test_windowed_pages_equal_the_plain_sort(tmp_path, small_windows, monkeypatch):
    # Which way each window was sorted: here, from its documents (a list), or by
    # tantivy (None: it held too many matches to read).
    sorted_by: Counter = Counter()
    read_window = SearchIndex._window_hits

    def counted(*args):
        read = read_window(*args)
        sorted_by["documents" if read is not None else "tantivy"] += 1
        return read

    monkeypatch.setattr(SearchIndex, "_window_hits", staticmethod(counted))
    rng = random.Random(13)
    index = SearchIndex(tmp_path / "index")
    resources = {r["id"]: r for r in (venture(rng, n) for n in range(1, 700))}
    index.apply(Change("venture", id, 1, resource) for id, resource in resources.items())
    for round_ in range(4):
        for _ in range(12):
            query = random_query(rng)
            assert paged_ids(index, query) == expected_ids(resources, query), (round_, query)
        # Changes move documents in every sort order, and add some: the sample keeps
        # keys documents have left, and windows stay exact.
        changes = []
        for number in rng.sample(range(1, 700), 120) + list(
            range(700 + round_ * 40, 740 + round_ * 40)
        ):
            changed = venture(rng, number)
            previous = resources.get(changed["id"])
            sequence = 1 if previous is None else index.sequence_of(changed["id"]) + 1
            resources[changed["id"]] = changed
            changes.append(Change("venture", changed["id"], sequence, changed))
        index.apply(changes)
    assert index.windows.keys, "the pages went through sort windows"
    assert sorted_by["documents"] and sorted_by["tantivy"], sorted_by


def test_kept_facet_counts_equal_a_fresh_aggregation_after_changes(tmp_path):
    rng = random.Random(7)
    index = SearchIndex(tmp_path / "index")
    resources = {r["id"]: r for r in (venture(rng, n) for n in range(1, 300))}
    index.apply(Change("venture", id, 1, resource) for id, resource in resources.items())
    facets = ("sector", "province", "status", "partner_country", "owner")
    asked = [random_query(rng, count=rng.choice(facets)) for _ in range(20)]
    asked = [ListQuery(**{**query.__dict__, "q": None}) for query in asked]

    def aggregated(query: ListQuery) -> list[dict]:
        searcher = index.index.searcher()
        return index.facet(searcher, query_of(index.index, query, searcher), query)

    for round_ in range(15):
        for query in asked:
            assert index.search(query).counts == aggregated(query), (round_, query)
        changes = []
        for number in rng.sample(range(1, 340), 25):
            changed = venture(rng, number)
            sequence = index.sequence_of(changed["id"]) + 1
            changes.append(Change("venture", changed["id"], sequence, changed))
            if rng.random() < 0.3:  # a document changed twice in one commit
                again = venture(rng, number)
                changes.append(Change("venture", again["id"], sequence + 1, again))
        if round_ % 5 == 4:  # staged, then rolled back: nothing counted
            for change in changes:
                index.stage(change)
            index.rollback()
        else:
            index.apply(changes)
    assert index.kept.kept, "the counts were kept"


def test_counts_first_asked_while_an_unread_change_is_staged_are_not_kept(tmp_path):
    index = SearchIndex(tmp_path / "index")
    rng = random.Random(3)
    first, second = venture(rng, 1), venture(rng, 2)
    index.apply([Change("venture", first["id"], 1, {**first, "sector": "telemedicine"})])
    by_sector = ListQuery("venture", count="sector")
    index.stage(Change("venture", first["id"], 2, {**first, "sector": "other"}))
    # Readers see the committed index; the staged change's former document was not read.
    assert index.search(by_sector).counts == [{"term": "telemedicine", "count": 1}]
    assert not index.kept.kept
    index.commit()
    assert index.search(by_sector).counts == [{"term": "other", "count": 1}]
    assert index.kept.kept
    # Once counts are kept, a staged change is counted at its commit, not before.
    index.stage(Change("venture", second["id"], 1, {**second, "sector": "other"}))
    assert index.search(by_sector).counts == [{"term": "other", "count": 1}]
    index.commit()
    assert index.search(by_sector).counts == [{"term": "other", "count": 2}]


def test_a_key_window_holds_exactly_the_keys_between_its_bounds():
    rng = random.Random(5)
    alphabet = "0123456789abcdef._jv"

    def key() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))

    for _ in range(3000):
        lower, upper, candidate = key(), key(), key()
        lower = rng.choice([lower, None, candidate])
        upper = rng.choice([upper, None])
        if lower is not None and upper is not None and lower >= upper:
            with pytest.raises(ValueError):
                key_window(lower, upper)
            continue
        pattern = key_window(lower, upper)
        inside = (lower is None or candidate >= lower) and (upper is None or candidate < upper)
        # Python's re reads the pattern as tantivy does (classes, \xhh, alternatives).
        assert (pattern is None or re.fullmatch(pattern, candidate) is not None) == inside
