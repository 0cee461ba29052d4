"""The search service in a real nameko container, fed the owners' events through the
real broker: documents follow their events in order and once (an early one held back
until its predecessor), lists answer with filters, words, sorts and counts, `lag()`
tells how far behind the instance is, reads wait for a version they were told of, and
an instance's index comes back rebuilt from the event logs (`jvreg search rebuild`)."""

import copy
import json

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from ops.processes import wait_until
from ops.search import rebuild_index
from services.facilities import contract as facilities
from services.search.service import SearchService
from services.search.settings import SearchSettings
from services.ventures import contract as ventures
from shared.errors import InvalidInput
from shared.inbox import EventLog
from shared.mongo import connect
from shared.outbox import event_publisher

from support import contract_event

INVESTOR = {"key_id": "key_1", "role": "investor", "owner": "Lahore Pharma Holdings"}


def venture_event(routing_key: str, venture_id: str, sequence: int, **fields):
    payload = ventures.EVENTS[routing_key]
    change = {"reason": "in a test", "actor": INVESTOR}
    if routing_key != "venture.updated":
        change["to"] = fields.get("status", "registered")
    else:
        change["fields"] = {}
    return contract_event(
        payload,
        venture={"id": venture_id, "owner": INVESTOR["owner"], "version": sequence, **fields},
        change=change,
    )


@pytest.fixture
def search_config(service_config, tmp_path):
    return {
        **service_config,
        "JVREG_SEARCH_INSTANCE": "itest",
        "JVREG_SEARCH_DATA_DIR": str(tmp_path / "search"),
    }


@pytest.fixture
def search(search_config, container_factory):
    container = container_factory(SearchService, search_config)
    container.start()
    with ServiceRpcProxy("search", search_config) as proxy:
        yield container, proxy


def listed(proxy, doctype="venture", **query) -> list[str]:
    return [item["id"] for item in proxy.list(doctype, query, None, 50)["items"]]


def test_documents_follow_their_events_in_order_and_once(search, amqp_uri):
    container, proxy = search
    publish = event_publisher(amqp_uri, "ventures")
    # Sequence 2 before 1: held back until 1 is applied, never applied out of order.
    publish(venture_event("venture.updated", "jv_a", 2, name="Renamed Works"))
    publish(venture_event("venture.registered", "jv_a", 1, name="First Works"))
    publish(venture_event("venture.registered", "jv_a", 1, name="First Works"))  # again
    publish(venture_event("venture.registered", "jv_b", 1, name="Other Works", sector="other"))
    assert proxy.list("venture", {}, None, 50, {"jv_a": 2, "jv_b": 1})["items"]
    items = proxy.list("venture", {}, None, 50)["items"]
    assert [(item["id"], item["name"], item["version"]) for item in items] == [
        ("jv_a", "Renamed Works", 2),
        ("jv_b", "Other Works", 1),
    ]

    def lag_settled():
        lag = proxy.lag()
        return lag["applied"].get("ventures") == 3 and lag["duplicates"].get("ventures", 0) >= 1

    wait_until(lag_settled, 20, "the duplicate skipped")
    lag = proxy.lag()
    assert lag["instance"] == "itest" and lag["documents"]["venture"] == 2
    assert lag["waiting"] == {"ventures": 0, "facilities": 0, "licensing": 0}
    assert lag["last_event_time"]["ventures"]


def test_lists_filter_search_sort_and_count(search, amqp_uri):
    _, proxy = search
    publish = event_publisher(amqp_uri, "ventures")
    for number, (name, sector) in enumerate(
        [
            ("Indus Tablets", "finished_formulations"),
            ("Gwadar Vaccines", "biologics_vaccines"),
            ("Indus Devices", "medical_devices"),
        ],
        start=1,
    ):
        publish(venture_event("venture.registered", f"jv_{number}", 1, name=name, sector=sector))
    plant = copy.deepcopy(facilities.FACILITY_EXAMPLE)
    plant.update(id="fac_1", venture_id="jv_1", city="Nowshera", owner=INVESTOR["owner"])
    event_publisher(amqp_uri, "facilities")(
        contract_event(
            facilities.FacilityRegistered,
            facility=plant,
            change={"to": "planned", "reason": "registered", "actor": INVESTOR},
        )
    )
    assert proxy.list("facility", {}, None, 10, {"fac_1": 1})["items"][0]["city"] == "Nowshera"
    proxy.list("venture", {}, None, 10, {"jv_1": 1, "jv_2": 1, "jv_3": 1})

    assert listed(proxy, q="indus dev") == ["jv_3"]
    assert listed(proxy, q="VACC") == ["jv_2"]
    assert listed(proxy, sector="biologics_vaccines") == ["jv_2"]
    assert listed(proxy, owner="someone else") == []
    assert listed(proxy, sort="-name") == ["jv_1", "jv_3", "jv_2"]
    assert listed(proxy, "facility", q="nowsh") == ["fac_1"]
    counted = proxy.list("venture", {"count": "sector"}, None, 1)
    assert sorted((c["term"], c["count"]) for c in counted["counts"]) == [
        ("biologics_vaccines", 1),
        ("finished_formulations", 1),
        ("medical_devices", 1),
    ]
    first = proxy.list("venture", {"sort": "name"}, None, 2)
    second = proxy.list("venture", {"sort": "name"}, first["next_cursor"], 2)
    assert [i["name"] for i in first["items"] + second["items"]] == [
        "Gwadar Vaccines",
        "Indus Devices",
        "Indus Tablets",
    ]
    assert second["next_cursor"] is None
    with pytest.raises(InvalidInput) as refused:
        proxy.list("venture", {"sort": "id"}, first["next_cursor"], 2)
    assert refused.value.errors[0]["loc"] == ["cursor"]
    with pytest.raises(InvalidInput) as refused:
        proxy.list("venture", {"count": "partners"}, None, 2)
    assert refused.value.errors[0]["loc"] == ["count"]


def test_an_instance_rebuilds_its_index_from_the_event_logs(
    search, search_config, amqp_uri, backends
):
    """The logs hold more than the live queue delivered (events from before the
    instance existed); the rebuilt index has them, and the live one takes it up."""
    _, proxy = search
    mongo = connect(backends["mongo_uri"])
    prefix = search_config["JVREG_DB_PREFIX"]
    log = EventLog(mongo[f"{prefix}_ventures"])
    earlier = [
        venture_event("venture.registered", f"jv_old{n}", 1, name=f"Old {n}") for n in range(3)
    ]
    renamed = venture_event("venture.updated", "jv_old0", 2, name="Old Renamed")
    for event in [*earlier, renamed]:
        log.keep(event)
    # Applied by the running instance, and not (yet) in the log the rebuild reads: the
    # instance replays it into the rebuilt index.
    publish = event_publisher(amqp_uri, "ventures")
    publish(venture_event("venture.registered", "jv_live", 1, name="Live Works"))
    assert [i["id"] for i in proxy.list("venture", {}, None, 10, {"jv_live": 1})["items"]] == [
        "jv_live"
    ]
    # One event both applied live and logged: the rebuilt document is the same.
    both = venture_event("venture.registered", "jv_both", 1, name="Both Works")
    publish(both)
    log.keep(both)
    live = proxy.list("venture", {"q": "both"}, None, 10, {"jv_both": 1})["items"]

    settings = SearchSettings.from_config(search_config)
    report = rebuild_index(settings, mongo, progress=None)
    assert report["documents"] == 4 and report["events"] == 5
    wait_until(lambda: len(listed(proxy)) == 5, 20, "the rebuilt index taken up")
    names = {item["id"]: item["name"] for item in proxy.list("venture", {}, None, 10)["items"]}
    assert names["jv_old0"] == "Old Renamed" and names["jv_live"] == "Live Works"
    assert proxy.list("venture", {"q": "both"}, None, 10)["items"] == live
    assert not (settings.index_root / "REBUILDING").exists()
    assert len(list(settings.index_root.glob("gen-*"))) == 1
    # It goes on following events.
    event_publisher(amqp_uri, "ventures")(venture_event("venture.registered", "jv_new", 1))
    assert "jv_new" in [
        i["id"] for i in proxy.list("venture", {}, None, 10, {"jv_new": 1})["items"]
    ]
    json.dumps(proxy.lag())


def test_a_list_waiting_for_a_version_that_never_comes_answers_with_what_it_has(search):
    _, proxy = search
    answer = proxy.list("venture", {}, None, 10, {"jv_never": 1, "fac_other_doctype": 5})
    assert answer == {"items": [], "next_cursor": None}
