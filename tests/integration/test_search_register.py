"""The public register's documents in a real search container fed through the real
broker: a licence carries its plant's and venture's names whichever of the three
queues delivers first; a venture's later changes reach its plants' and licences'
documents in sequence order (an early one held back), once each, and a duplicate
changes nothing."""

import copy

import test_search_service as search_service

from ops.processes import wait_until
from services.facilities import contract as facilities
from services.licensing import contract as licensing
from shared.outbox import event_publisher

from support import contract_event

# The search container of test_search_service, and its events.
search_config = search_service.search_config
search = search_service.search
INVESTOR = search_service.INVESTOR
venture_event = search_service.venture_event

VENTURE, PLANT, LICENCE = "jv_reg1", "fac_reg1", "lic_reg1"
PARTNERS = [
    {"name": "Sindh Herbal Ltd", "country": "PK", "kind": "private_company", "equity_pct": "60"},
    {"name": "Tongren Co", "country": "CN", "kind": "private_company", "equity_pct": "40"},
]


def plant_registered():
    plant = copy.deepcopy(facilities.FACILITY_EXAMPLE)
    plant.update(
        id=PLANT, venture_id=VENTURE, name="Dhabeji TCM Plant", city="Dhabeji", province="sindh"
    )
    plant["owner"] = INVESTOR["owner"]
    return contract_event(
        facilities.FacilityRegistered,
        facility=plant,
        change={"to": "planned", "reason": "registered", "actor": INVESTOR},
    )


def licence_submitted():
    return contract_event(
        licensing.EVENTS["license.submitted"],
        license={
            "id": LICENCE,
            "facility_id": PLANT,
            "venture_id": VENTURE,
            "owner": INVESTOR["owner"],
            "type": "dml_basic",
        },
    )


def venture_at(sequence: int, name: str, sector: str = "traditional_chinese_medicine"):
    routing_key = "venture.registered" if sequence == 1 else "venture.updated"
    return venture_event(
        routing_key, VENTURE, sequence, name=name, sector=sector, partners=PARTNERS
    )


def applied(proxy, *versions: tuple[str, int]) -> bool:
    states = proxy.applications([document_id for document_id, _ in versions])
    return all(states[document_id]["sequence"] >= sequence for document_id, sequence in versions)


def test_a_licence_carries_its_plant_and_venture_and_follows_the_venture(search, amqp_uri):
    _, proxy = search
    publish = {
        source: event_publisher(amqp_uri, source)
        for source in ("ventures", "facilities", "licensing")
    }
    # The licence first, its venture last: each document is complete once all are in.
    publish["licensing"](licence_submitted())
    publish["facilities"](plant_registered())
    publish["ventures"](venture_at(1, "Thar Herbal Works"))
    wait_until(
        lambda: applied(proxy, (LICENCE, 1), (PLANT, 1), (VENTURE, 1)), 20, "all three applied"
    )
    licence = proxy.register_item("licence", LICENCE)
    assert (licence["venture_name"], licence["plant_name"], licence["city"]) == (
        "Thar Herbal Works",
        "Dhabeji TCM Plant",
        "Dhabeji",
    )
    assert licence["partners"] == [
        {"name": "Sindh Herbal Ltd", "country": "PK"},
        {"name": "Tongren Co", "country": "CN"},
    ]
    found = proxy.register("licence", {"q": "tongren", "province": "sindh"}, None, 10)
    assert [item["id"] for item in found["items"]] == [LICENCE]

    # Sequence 3 before 2: held back, so the documents end at 3's name, not 2's.
    publish["ventures"](venture_at(3, "Thar Formulations", "finished_formulations"))
    publish["ventures"](venture_at(2, "Thar Herbal Works II"))
    publish["ventures"](venture_at(2, "Thar Herbal Works II"))  # a duplicate
    wait_until(lambda: applied(proxy, (VENTURE, 3)), 20, "the venture's third change applied")
    for doctype, document_id in (("licence", LICENCE), ("facility", PLANT)):
        shown = proxy.register_item(doctype, document_id)
        assert (shown["venture_name"], shown["sector"]) == (
            "Thar Formulations",
            "finished_formulations",
        )
    assert (
        proxy.register("licence", {"sector": "traditional_chinese_medicine"}, None, 10)["items"]
        == []
    )
    # The venture's changes were applied once each; its dependants' own counts untouched.
    assert proxy.applications([VENTURE, PLANT, LICENCE]) == {
        VENTURE: {"sequence": 3, "applications": 3},
        PLANT: {"sequence": 1, "applications": 1},
        LICENCE: {"sequence": 1, "applications": 1},
    }
