"""What /metrics labels a request with, which queues it reads, and the demo data of
`jvreg seed`, checked against the services' contracts and the licensing rules without
a registry."""

import json
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from werkzeug.routing import Map, Rule
from werkzeug.test import Client
from werkzeug.wrappers import Response

from ops.seed import (
    STAGES,
    first_licence,
    flow_bodies,
    licence_body,
    plant_body,
    transition_body,
    venture_body,
    venture_of,
)
from services.facilities.contract import RegisterFacility
from services.gateway.metrics import RequestMetrics, consumer_queues
from services.investments.contract import RecordFlow
from services.licensing import contract as licensing
from services.licensing import domain
from services.ventures.contract import RegisterVenture
from shared.errors import validated

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DRAP = {"key_id": "key_drap", "role": "regulator", "owner": "DRAP Licensing Division"}


class App:
    """A WSGI application with the URL map of one route, as nameko's WsgiApp has."""

    url_map = Map([Rule("/v1/ventures/<venture_id>", methods=["GET"])])

    def __call__(self, environ, start_response):
        status = 200 if environ["PATH_INFO"].startswith("/v1/ventures/") else 404
        return Response("{}", status=status)(environ, start_response)


def requests_of(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("jvreg_http_request_duration_seconds_count", labels) or 0


def test_a_request_is_counted_under_its_route_template_and_status():
    client = Client(RequestMetrics(App()))
    route = "/v1/ventures/<venture_id>"
    before = requests_of("GET", route, "200"), requests_of("GET", "unmatched", "404")

    for path in ("/v1/ventures/jv_1", "/v1/ventures/jv_2", "/nowhere"):
        client.get(path).close()  # a request is measured to the end of its answer

    assert requests_of("GET", route, "200") == before[0] + 2
    assert requests_of("GET", "unmatched", "404") == before[1] + 1


def test_a_method_nobody_declared_is_counted_as_other():
    before = requests_of("other", "unmatched", "404")
    Client(RequestMetrics(App())).open("/nowhere", method="BREW").close()
    assert requests_of("other", "unmatched", "404") == before + 1


def test_the_queues_read_are_every_consumer_queue_and_event_log():
    queues = consumer_queues()
    assert queues["facilities.follow_venture"] == "facilities"
    assert queues["notifications.queue_webhook_deliveries"] == "notifications"
    assert queues["licensing.event-log"] == "licensing"
    assert not [name for name in queues if "{" in name]  # per-instance ones come from them


def as_sent(model, body: dict):
    """`body` as the service parses it: from the JSON text the gateway passes on."""
    return validated(model, json.dumps(body))


@pytest.mark.parametrize("number", range(20))
def test_every_seeded_venture_is_valid_input(number):
    venture = venture_of(number)
    as_sent(RegisterVenture, venture_body(venture))
    as_sent(RegisterFacility, plant_body(venture, number))
    # Only what the plant's kind may hold, each type once (one application at a time).
    assert set(venture.licences) <= set(domain.LICENCE_TYPES_BY_PLANT[venture.plant_kind])
    assert len(set(venture.licences)) == len(venture.licences)
    for licence_type in venture.licences:
        as_sent(licensing.ApplyForLicence, licence_body(venture, "fac_1", licence_type))
    flows = flow_bodies(venture, number)
    assert {body["currency"] for _, body in flows} == {"PKR", "CNY", "USD"}
    for _, body in flows:
        as_sent(RecordFlow, body)


def test_three_ventures_have_licences_at_every_stage():
    assert first_licence(3) >= len(STAGES)


def test_seeded_names_are_unique_over_rounds():
    names = [venture_of(number).name for number in range(30)]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_is_reached_by_legal_transitions(stage):
    """The licensing rules themselves take the seed's steps to the stage."""
    licence = licensing.Licence(
        id="lic_1",
        facility_id="fac_1",
        venture_id="jv_1",
        owner="Pak-China Health Investment Group (demo)",
        type="dml_basic",
        status="submitted",
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )
    for step_number, step in enumerate(STAGES[stage]):
        body = transition_body(step, 7, step_number)
        assert body == transition_body(step, 7, step_number)  # the same on every run
        request = as_sent(licensing.RequestTransition, body)
        licence, _ = domain.decide(licence, request, DRAP, NOW)
    assert licence.status == stage
