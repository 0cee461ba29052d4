"""The public register's documents in the search index (services/search/index.py) on a
real tantivy index: a plant and a licence carry their venture's and plant's names,
sector, province and partners whatever order their changes come in, follow every
change of them exactly once (their own sequence and count untouched), survive a
rebuild, and show the public view only. No broker, no database."""

import copy

import pytest

from services.facilities.contract import FACILITY_EXAMPLE
from services.licensing.contract import LICENCE_EXAMPLE
from services.search.index import Change, ListQuery, SearchIndex
from services.ventures.contract import VENTURE_EXAMPLE

VENTURE_ID, FACILITY_ID, LICENCE_ID = "jv_1", "fac_1", "lic_1"


def venture(sequence: int = 1, **fields) -> Change:
    resource = {**copy.deepcopy(VENTURE_EXAMPLE), "id": VENTURE_ID, "version": sequence, **fields}
    return Change("venture", VENTURE_ID, sequence, resource)


def facility(sequence: int = 1, **fields) -> Change:
    resource = {
        **copy.deepcopy(FACILITY_EXAMPLE),
        "id": FACILITY_ID,
        "venture_id": VENTURE_ID,
        "version": sequence,
        **fields,
    }
    return Change("facility", FACILITY_ID, sequence, resource)


def licence(sequence: int = 1, **fields) -> Change:
    resource = {
        **copy.deepcopy(LICENCE_EXAMPLE),
        "id": LICENCE_ID,
        "facility_id": FACILITY_ID,
        "venture_id": VENTURE_ID,
        "version": sequence,
        **fields,
    }
    return Change("licence", LICENCE_ID, sequence, resource)


@pytest.fixture
def index(tmp_path):
    return SearchIndex(tmp_path / "index")


def register(index, doctype="licence", **filters) -> list[str]:
    q = filters.pop("q", None)
    valid_on = filters.pop("valid_on", None)
    query = ListQuery(doctype, filters=filters, q=q, valid_on=valid_on, register=True)
    return [item["id"] for item in index.search(query).items]


def view(index, doctype="licence", document_id=LICENCE_ID) -> dict:
    (found,) = index.register_views(doctype, [document_id])
    return found


@pytest.mark.parametrize(
    "order",
    [("venture", "facility", "licence"), ("licence", "facility", "venture")],
)
@pytest.mark.parametrize("commit_each", [True, False])
def test_a_licence_carries_its_plant_and_venture_whatever_order_they_come_in(
    index, order, commit_each
):
    changes = {"venture": venture(), "facility": facility(), "licence": licence()}
    for doctype in order:
        if commit_each:
            index.apply([changes[doctype]])
        else:
            index.stage(changes[doctype])
    index.commit()
    shown = view(index)
    assert shown["plant_name"] == FACILITY_EXAMPLE["name"]
    assert shown["city"] == "Nowshera" and shown["province"] == "khyber_pakhtunkhwa"
    assert shown["venture_name"] == VENTURE_EXAMPLE["name"]
    assert shown["sector"] == "api_manufacturing"
    assert shown["partners"] == [
        {"name": "Indus Pharma (Pvt) Ltd", "country": "PK"},
        {"name": "Zhejiang Yangtze Pharmaceutical Co.", "country": "CN"},
    ]
    assert view(index, "facility", FACILITY_ID)["venture_name"] == VENTURE_EXAMPLE["name"]
    assert register(index, province="khyber_pakhtunkhwa", partner_country="CN") == [LICENCE_ID]
    assert register(index, q="yangtze nowsh") == [LICENCE_ID]
    assert register(index, "facility", sector="api_manufacturing") == [FACILITY_ID]
    # Each document at its own sequence, each change applied once.
    for document_id in (VENTURE_ID, FACILITY_ID, LICENCE_ID):
        assert index.committed(document_id) == (1, 1)


def test_dependants_follow_a_renamed_venture_exactly_once(index):
    index.apply([venture(), facility(), licence(), licence(2, status="under_review")])
    renamed = venture(2, name="Gwadar Biologics", sector="biologics_vaccines")
    assert index.apply([renamed]) == [True]
    assert index.apply([renamed]) == [False]  # a duplicate rewrites nothing
    assert view(index)["venture_name"] == "Gwadar Biologics"
    assert view(index, "facility", FACILITY_ID)["sector"] == "biologics_vaccines"
    assert register(index, sector="api_manufacturing") == []
    assert register(index, sector="biologics_vaccines", q="gwadar") == [LICENCE_ID]
    assert register(index, q="yangtze") == [LICENCE_ID]  # the partners stayed
    assert index.committed(LICENCE_ID) == (2, 2)
    assert index.committed(FACILITY_ID) == (1, 1)
    # The licence's own next change keeps what it carries.
    index.apply([licence(3, status="inspection_scheduled")])
    assert view(index)["venture_name"] == "Gwadar Biologics"
    assert view(index)["status"] == "inspection_scheduled"


def test_a_rebuild_links_what_it_loads(index):
    index.load([licence(4), facility(2), venture(3, name="Thar Formulations")])
    assert view(index)["venture_name"] == "Thar Formulations"
    assert register(index, q="thar") == [LICENCE_ID]
    assert index.committed(LICENCE_ID) == (4, 1)


def test_valid_on_selects_licences_granted_and_valid_through_that_day(index):
    granted = {"status": "granted", "valid_until": "2031-12-14T23:59:59.999000Z"}
    index.apply([venture(), facility(), licence(**granted)])
    assert register(index, valid_on="2031-12-14") == [LICENCE_ID]
    assert register(index, valid_on="2026-01-01") == [LICENCE_ID]
    assert register(index, valid_on="2031-12-15") == []
    index.apply([licence(2, **{**granted, "status": "suspended"})])
    assert register(index, valid_on="2026-01-01") == []


def test_the_public_view_shows_nothing_private(index):
    index.apply([venture(), facility(), licence(decision_ref="DRAP/LIC/2026/0412")])
    shown = [view(index), view(index, "facility", FACILITY_ID), view(index, "venture", VENTURE_ID)]
    text = repr(shown)
    for private in ("ayesha.khan", "equity_pct", "51", "Indus Pharma Holdings", "owner"):
        assert private not in text
    assert shown[0]["decision_ref"] == "DRAP/LIC/2026/0412"
    assert index.register_views("licence", [VENTURE_ID, "lic_unknown"]) == []


def test_a_product_registration_is_found_by_its_ingredients_and_number(index):
    registered = licence(
        type="product_registration",
        status="granted",
        product="Augmentin 625",
        registration_number="082341",
        product_details={
            "dosage_form": "film_coated_tablet",
            "strength": {"value": "625", "unit": "mg"},
            "active_ingredients": [
                {"inn": "Amoxicillin", "strength": {"value": "500", "unit": "mg"}},
                {"inn": "Clavulanic acid", "strength": {"value": "125", "unit": "mg"}},
            ],
        },
    )
    index.apply([venture(), facility(), registered])
    assert register(index, q="clavul") == register(index, q="082341") == [LICENCE_ID]
    assert register(index, registration_number="082341") == [LICENCE_ID]
    assert register(index, registration_number="082342") == []
    keyed = index.search(ListQuery("licence", {"registration_number": "082341"})).items
    assert [item["id"] for item in keyed] == [LICENCE_ID]
    shown = view(index)
    assert (shown["product"], shown["registration_number"]) == ("Augmentin 625", "082341")
    assert (shown["dosage_form"], shown["strength"]) == ("film_coated_tablet", "625 mg")
    assert shown["active_ingredients"] == "Amoxicillin 500 mg + Clavulanic acid 125 mg"
    assert "product_details" not in shown


def test_a_registration_made_before_product_details_shows_its_name_only(index):
    index.apply([venture(), facility(), licence(product="Amoxicillin 500 mg capsules")])
    shown = view(index)
    assert shown["product"] == "Amoxicillin 500 mg capsules"
    assert shown["dosage_form"] is shown["registration_number"] is None
