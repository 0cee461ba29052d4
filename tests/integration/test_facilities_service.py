"""The facilities service in a real nameko container, fed real ventures' and licensing
events through the broker: its projection of ventures (in order, once, early events
held back), decommissioning, and plant status following manufacturing licences."""

import json

import pytest
from kombu import Connection, Queue
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_waiter

from ops.processes import wait_until
from services.facilities.service import FacilitiesService
from services.licensing import contract as licensing
from services.ventures import contract as ventures
from shared import messaging
from shared.contract import example
from shared.errors import Conflict, NotFound
from shared.inbox import EventOutOfOrder
from shared.outbox import event_publisher

from support import PLANT, contract_event, handled

INVESTOR = {"key_id": "key_1", "role": "investor", "owner": "Lahore Pharma Holdings"}
REGULATOR = {"key_id": "key_2", "role": "regulator", "owner": "DRAP Licensing Division"}


@pytest.fixture
def facilities(service_config, container_factory):
    container = container_factory(FacilitiesService, service_config)
    container.start()
    store = next(d for d in container.dependencies if d.attr_name == "store")
    with ServiceRpcProxy("facilities", service_config) as proxy:
        yield container, proxy, store.db


@pytest.fixture
def facility_events(amqp_uri):
    """Every event on `facilities.events`, as a subscriber bound before they happen sees it."""
    queue = Queue(
        "test-facilities-subscriber",
        exchange=messaging.events_exchange("facilities"),
        routing_key="facility.#",
        durable=True,
    )
    with Connection(amqp_uri) as connection:
        queue(connection.channel()).declare()
    received: list[dict] = []

    def until(enough, what: str) -> list[dict]:
        def check():
            with Connection(amqp_uri) as connection:
                bound = queue(connection.channel())
                while (
                    message := bound.get(no_ack=True, accept=messaging.EVENT_CONTENT_TYPES)
                ) is not None:
                    received.append(message.payload)
            return enough(received)

        wait_until(check, 20, what)
        return received

    return until


class Ventures:
    """The ventures service's side of the conversation: its events, as it publishes them."""

    def __init__(self, amqp_uri: str):
        self.publish = event_publisher(amqp_uri, "ventures")

    @staticmethod
    def event(routing_key, venture_id, sequence, status="active", name="Indus-Yangtze API Works"):
        payload = ventures.EVENTS[routing_key]
        change = {"reason": f"{routing_key} in a test", "actor": REGULATOR}
        if "to" in example(payload)["change"]:
            change["to"] = status
        return contract_event(
            payload,
            venture={
                "id": venture_id,
                "owner": INVESTOR["owner"],
                "status": status,
                "name": name,
                "sector": "finished_formulations",
                "province": "khyber_pakhtunkhwa",
                "version": sequence,
            },
            change=change,
        )


class Licensing:
    def __init__(self, amqp_uri: str):
        self.publish = event_publisher(amqp_uri, "licensing")

    @staticmethod
    def event(routing_key, licence_id, facility_id, sequence, status, licence_type):
        return contract_event(
            licensing.EVENTS[routing_key],
            license={
                "id": licence_id,
                "facility_id": facility_id,
                "type": licence_type,
                "status": status,
                "version": sequence,
            },
            change={"to": status, "reason": "decided in a test", "actor": REGULATOR},
        )


def projected(db, venture_id: str, sequence: int) -> bool:
    doc = db.ventures.find_one({"_id": venture_id})
    return doc is not None and doc["sequence"] == sequence


def register_when_projected(proxy, db, venture_id: str, body: dict = PLANT) -> dict:
    wait_until(lambda: db.ventures.find_one({"_id": venture_id}), 20, f"{venture_id} projected")
    return proxy.register_facility(venture_id, json.dumps(body), INVESTOR)


def test_a_facility_needs_a_venture_the_service_has_heard_of(facilities, amqp_uri):
    _, proxy, db = facilities
    with pytest.raises(NotFound):
        proxy.register_facility("jv_unknown", json.dumps(PLANT), INVESTOR)
    assert db.facilities.count_documents({}) == 0

    Ventures(amqp_uri).publish(Ventures.event("venture.registered", "jv_a", 1, "registered"))
    facility = register_when_projected(proxy, db, "jv_a")
    assert facility["status"] == "planned" and facility["version"] == 1
    assert facility["owner"] == INVESTOR["owner"] and facility["venture_id"] == "jv_a"
    assert facility["capacity"] == {"value": "250000000", "unit": "tablets/year"}
    assert proxy.get_facility(facility["id"]) == facility


def test_venture_events_apply_in_order_and_once(facilities, amqp_uri):
    container, _, db = facilities
    ventures = Ventures(amqp_uri)
    ventures.publish(Ventures.event("venture.registered", "jv_b", 1, "registered"))
    renamed = Ventures.event("venture.updated", "jv_b", 2, "registered", name="Renamed JV")
    with handled(container, "follow_venture", renamed, times=2):
        ventures.publish(renamed)
        ventures.publish(renamed)  # delivered twice: at-least-once delivery
    assert projected(db, "jv_b", 2)
    assert db.ventures.find_one({"_id": "jv_b"})["name"] == "Renamed JV"

    # Sequence 4 arrives before 3: it is held back (requeued) until 3 is applied.
    def refused_as_early(worker_ctx, result, exc_info):
        return exc_info is not None and exc_info[0] is EventOutOfOrder

    suspended = Ventures.event("venture.status_changed", "jv_b", 4, "suspended")
    with entrypoint_waiter(container, "follow_venture", callback=refused_as_early, timeout=20):
        ventures.publish(suspended)
    assert projected(db, "jv_b", 2)
    ventures.publish(Ventures.event("venture.status_changed", "jv_b", 3, "active"))
    wait_until(
        lambda: projected(db, "jv_b", 4), 30, "the early event applied after its predecessor"
    )
    assert db.ventures.find_one({"_id": "jv_b"})["status"] == "suspended"


def test_dissolving_a_venture_decommissions_its_facilities_once(
    facilities, amqp_uri, facility_events
):
    _, proxy, db = facilities
    ventures = Ventures(amqp_uri)
    ventures.publish(Ventures.event("venture.registered", "jv_c", 1))
    plants = [register_when_projected(proxy, db, "jv_c") for _ in range(2)]

    dissolved = Ventures.event("venture.status_changed", "jv_c", 2, "dissolved")
    ventures.publish(dissolved)
    ventures.publish(dissolved)
    for plant in plants:
        wait_until(
            lambda plant=plant: proxy.get_facility(plant["id"])["status"] == "decommissioned",
            20,
            "decommissioned",
        )
    with pytest.raises(Conflict):
        proxy.register_facility("jv_c", json.dumps(PLANT), INVESTOR)
    assert db.facilities.count_documents({"venture_id": "jv_c"}) == 2

    events = facility_events(
        lambda got: sum(e["type"] == "jvreg.facility.status_changed" for e in got) >= 2,
        "two facility.status_changed events",
    )
    for plant in plants:
        own = [e for e in events if e["subject"] == plant["id"]]
        assert [(e["type"], e["sequence"]) for e in own] == [
            ("jvreg.facility.registered", 1),
            ("jvreg.facility.status_changed", 2),
        ]
        change = own[1]["data"]["change"]
        assert (change["from"], change["to"]) == ("planned", "decommissioned")
        assert change["actor"] == REGULATOR
    # The duplicate dissolution had no second effect.
    assert db.outbox.count_documents({"routing_key": "facility.status_changed"}) == 2


def test_a_plant_follows_its_manufacturing_licences(facilities, amqp_uri, facility_events):
    _, proxy, db = facilities
    Ventures(amqp_uri).publish(Ventures.event("venture.registered", "jv_d", 1))
    plant = register_when_projected(proxy, db, "jv_d")
    licensing = Licensing(amqp_uri)

    def dml(sequence, routing_key, status):
        return Licensing.event(routing_key, "lic_dml", plant["id"], sequence, status, "dml_basic")

    lifecycle = [
        dml(1, "license.submitted", "submitted"),
        dml(2, "license.under_review", "under_review"),
        dml(3, "license.inspection_scheduled", "inspection_scheduled"),
        dml(4, "license.granted", "granted"),
        dml(5, "license.suspended", "suspended"),
        dml(6, "license.reinstated", "granted"),
        dml(7, "license.revoked", "revoked"),
    ]
    # A product registration granted for the plant does not let it operate.
    licensing.publish(
        Licensing.event(
            "license.granted", "lic_prod", plant["id"], 4, "granted", "product_registration"
        )
    )
    # Out of order and with a duplicate: the plant still follows the licence's order.
    for event in [lifecycle[1], lifecycle[0], *lifecycle[2:5], lifecycle[4], *lifecycle[5:]]:
        licensing.publish(event)

    events = facility_events(
        lambda got: sum(e["type"] == "jvreg.facility.status_changed" for e in got) >= 4,
        "four facility.status_changed events",
    )
    changes = [
        (e["sequence"], e["data"]["change"]["from"], e["data"]["change"]["to"])
        for e in events
        if e["subject"] == plant["id"] and e["type"] == "jvreg.facility.status_changed"
    ]
    assert changes == [
        (2, "planned", "operational"),
        (3, "operational", "halted"),
        (4, "halted", "operational"),
        (5, "operational", "halted"),
    ]
    facility = proxy.get_facility(plant["id"])
    assert facility["status"] == "halted" and facility["licenses_in_force"] == []
    assert db.licence_sequences.find_one({"_id": "lic_dml"})["sequence"] == 7


def test_the_list_filters_facilities(facilities, amqp_uri):
    _, proxy, db = facilities
    ventures = Ventures(amqp_uri)
    ventures.publish(Ventures.event("venture.registered", "jv_e", 1))
    ventures.publish(Ventures.event("venture.registered", "jv_f", 1))
    lab = register_when_projected(proxy, db, "jv_e", {**PLANT, "kind": "qc_lab"})
    plant = register_when_projected(proxy, db, "jv_e")
    other = register_when_projected(proxy, db, "jv_f", {**PLANT, "province": "punjab"})

    def ids(filters, after=None, limit=10):
        return [f["id"] for f in proxy.list_facilities(filters, after, limit)]

    assert ids({"venture_id": "jv_e"}) == [lab["id"], plant["id"]]
    assert ids({"kind": "qc_lab"}) == [lab["id"]]
    assert ids({"province": "punjab"}) == [other["id"]]
    assert ids({"status": "planned"}, after=lab["id"], limit=1) == [plant["id"]]
