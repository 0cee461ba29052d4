"""The search service's index module (services/search/index.py) on a real tantivy index
in a temporary directory: order by sequence, duplicates, filters, words, sorts with
their cursors, facet counts. No broker, no database."""

import copy

import pytest

from services.facilities.contract import FACILITY_EXAMPLE
from services.licensing.contract import LICENCE_EXAMPLE
from services.search.index import Change, EarlyChange, ListQuery, SearchIndex, words
from services.ventures.contract import VENTURE_EXAMPLE


def venture(number: int, **fields) -> dict:
    resource = copy.deepcopy(VENTURE_EXAMPLE)
    resource.update({"id": f"jv_{number:024x}", "name": f"Venture {number}", **fields})
    return resource


def change(resource: dict, sequence: int = 1, doctype: str = "venture") -> Change:
    return Change(doctype, resource["id"], sequence, {**resource, "version": sequence})


@pytest.fixture
def index(tmp_path):
    return SearchIndex(tmp_path / "index")


def test_changes_of_one_document_apply_in_sequence_order_once(index):
    first = venture(1, status="registered")
    assert index.apply([change(first, 1)]) == [True]
    assert index.apply([change(first, 1)]) == [False]  # a duplicate changes nothing
    with pytest.raises(EarlyChange):
        index.apply([change({**first, "status": "dissolved"}, 3)])  # 2 has not come
    assert index.get(first["id"])["status"] == "registered"
    assert index.apply([change({**first, "status": "active"}, 2)]) == [True]
    assert index.apply([change({**first, "status": "dissolved"}, 3)]) == [True]
    assert index.get(first["id"])["status"] == "dissolved"
    assert index.sequence_of(first["id"]) == 3
    assert index.committed(first["id"]) == (3, 3)  # three changes, each applied once
    assert index.count("venture") == 1


def test_staged_changes_count_once_each_and_a_rolled_back_one_not_at_all(index):
    first = venture(1)
    assert index.stage(change(first, 1)) and index.stage(change(first, 2))
    assert not index.stage(change(first, 2))
    index.commit()
    assert index.committed(first["id"]) == (2, 2)
    assert index.stage(change(first, 3))
    index.rollback()
    assert index.committed(first["id"]) == (2, 2)
    assert index.apply([change(first, 3)]) == [True]
    assert index.committed(first["id"]) == (3, 3)
    assert index.committed("jv_unknown") == (0, 0)


def test_a_rebuild_loads_each_document_as_one_change(index):
    first = venture(1)
    index.load([change(first, 7)])
    assert index.committed(first["id"]) == (7, 1)


def test_a_staged_change_is_the_predecessor_of_the_next_before_the_commit(index):
    first = venture(1)
    assert index.stage(change(first, 1))
    assert index.stage(change({**first, "name": "Renamed"}, 2))
    assert not index.stage(change(first, 2))
    index.commit()
    assert index.get(first["id"])["name"] == "Renamed"


def test_the_index_survives_reopening(tmp_path):
    index = SearchIndex(tmp_path / "index")
    index.apply([change(venture(1), 1)])
    index.close()
    del index
    reopened = SearchIndex(tmp_path / "index")
    assert reopened.sequence_of(f"jv_{1:024x}") == 1


def test_filters_words_and_scoping(index):
    index.apply(
        [
            change(venture(1, name="Indus-Yangtze API Works", sector="api_manufacturing")),
            change(venture(2, name="Karakoram Vaccines", sector="biologics_vaccines", owner="B")),
            change(venture(3, name="Indus Devices", sector="medical_devices")),
        ]
    )
    names = lambda page: [item["name"] for item in page.items]  # noqa: E731
    assert names(index.search(ListQuery("venture", q="karako"))) == ["Karakoram Vaccines"]
    assert names(index.search(ListQuery("venture", q="INDUS dev"))) == ["Indus Devices"]
    assert names(index.search(ListQuery("venture", q="api-wor"))) == ["Indus-Yangtze API Works"]
    # Partners' names are searched too (every one of these has the example's partners).
    assert len(index.search(ListQuery("venture", q="zhejiang yangtze")).items) == 3
    assert names(index.search(ListQuery("venture", {"owner": "B"}))) == ["Karakoram Vaccines"]
    assert names(index.search(ListQuery("venture", {"sector": "medical_devices"}))) == [
        "Indus Devices"
    ]
    assert names(index.search(ListQuery("venture", {"partner_country": "CN"}))) == names(
        index.search(ListQuery("venture"))
    )
    assert index.search(ListQuery("venture", {"partner_country": "US"})).items == []
    assert index.search(ListQuery("facility")).items == []


def test_sorted_pages_follow_each_other_without_gaps_or_repeats(index):
    resources = [venture(n, name=f"Name {n % 7}") for n in range(1, 24)]
    index.apply(change(resource) for resource in resources)
    for sort, expected in (
        ("id", sorted(r["id"] for r in resources)),
        ("-id", sorted((r["id"] for r in resources), reverse=True)),
        ("name", [r["id"] for r in sorted(resources, key=lambda r: (r["name"], r["id"]))]),
        (
            "-name",
            [r["id"] for r in sorted(resources, key=lambda r: (r["name"], r["id"]), reverse=True)],
        ),
    ):
        seen, after = [], None
        while True:
            page = index.search(ListQuery("venture", sort=sort, after=after, limit=5))
            seen += [item["id"] for item in page.items]
            after = page.next_after
            if after is None:
                break
        assert seen == expected, sort


def test_facet_counts_the_matching_documents_by_value(index):
    index.apply(
        change(venture(n, sector=("telemedicine" if n % 3 else "other"), owner=f"O{n % 2}"))
        for n in range(1, 10)
    )
    page = index.search(ListQuery("venture", {"owner": "O1"}, count="sector", limit=1))
    assert page.counts == [{"term": "telemedicine", "count": 3}, {"term": "other", "count": 2}]
    assert len(page.items) == 1


def test_facilities_by_city_and_licences_by_product_and_expiry(index):
    plant = {**FACILITY_EXAMPLE}
    granted = {
        **LICENCE_EXAMPLE,
        "type": "product_registration",
        "product": "Amoxicillin 500 mg capsules",
        "status": "granted",
        "valid_until": "2030-01-01",
    }
    index.apply([change(plant, doctype="facility"), change(granted, doctype="licence")])
    assert [f["id"] for f in index.search(ListQuery("facility", q="nowsh")).items] == [plant["id"]]
    assert index.search(ListQuery("facility", count="city")).counts == [
        {"term": "Nowshera", "count": 1}
    ]
    assert [x["id"] for x in index.search(ListQuery("licence", q="amoxi")).items] == [granted["id"]]
    assert index.search(ListQuery("licence", expiring_before="2030-01-02")).items != []
    assert index.search(ListQuery("licence", expiring_before="2030-01-01")).items == []


def test_words_are_the_tokenizers():
    assert words("Indus-Yangtze API  Works 2") == ["indus", "yangtze", "api", "works", "2"]
