"""The gateway's HTTP rules without a broker: body limits, If-Match, problem mapping,
authorisation and ownership (services replaced by nameko's worker_factory mocks)."""

import json

import pytest
from nameko.exceptions import RemoteError
from nameko.testing.services import worker_factory
from openapi_spec_validator import validate
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.gateway.http import MAX_BODY_BYTES, expected_version, problem_for, read_json_body
from services.gateway.keys import Principal
from services.gateway.openapi import openapi_document
from services.gateway.service import GatewayService
from shared.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    PreconditionRequired,
    UnsupportedMediaType,
)


def request(
    method="POST", data: bytes | str = b"{}", headers=None, content_type="application/json"
):
    builder = EnvironBuilder(
        method=method, path="/v1/ventures", data=data, headers=headers, content_type=content_type
    )
    return Request(builder.get_environ())


def test_a_json_body_is_passed_on_as_text():
    assert read_json_body(request(data='{"pct": 33.33}')) == '{"pct": 33.33}'


def test_a_body_that_is_not_json_is_a_bad_request():
    with pytest.raises(BadRequest) as caught:
        read_json_body(request(data="{'name': 'single quotes'}"))
    assert caught.value.errors[0]["loc"] == ["body"]


def test_a_body_over_one_mebibyte_is_refused():
    huge = json.dumps({"description": "x" * MAX_BODY_BYTES})
    with pytest.raises(PayloadTooLarge):
        read_json_body(request(data=huge))


def test_a_body_of_another_media_type_is_refused():
    with pytest.raises(UnsupportedMediaType):
        read_json_body(request(data="name=x", content_type="application/x-www-form-urlencoded"))


def test_if_match_is_required_and_must_name_a_version():
    assert expected_version(request(headers={"If-Match": '"7"'})) == 7
    assert expected_version(request(headers={"If-Match": 'W/"7"'})) == 7
    with pytest.raises(PreconditionRequired):
        expected_version(request())
    with pytest.raises(PreconditionFailed):
        expected_version(request(headers={"If-Match": '"abc"'}))


def test_unexpected_errors_become_a_500_problem_without_internals():
    problem = problem_for(RemoteError("KeyError", "'secret internals'"), "/v1/ventures")
    assert problem["status"] == 500
    assert "secret" not in json.dumps(problem)


def test_routing_errors_become_problems():
    problem = problem_for(MethodNotAllowed(), "/v1/ventures")
    assert problem["status"] == 405 and problem["type"] == "/problems/method-not-allowed"


def test_openapi_document_is_valid_openapi_3_1():
    document = openapi_document()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert "RegisterVenture" in document["components"]["schemas"]
    partner = document["components"]["schemas"]["Partner"]
    assert partner["additionalProperties"] is False


VENTURE = {"id": "jv_1", "owner": "Lahore Pharma", "version": 3, "name": "Sino-Indus"}


def gateway_as(role: str, owner: str = "Lahore Pharma"):
    service = worker_factory(GatewayService)
    service.keys.authenticate.return_value = Principal(key_id="key_1", role=role, owner=owner)
    service.ventures.get_venture.return_value = dict(VENTURE)
    service.facilities.list_facilities.return_value = []
    service.licensing.list_licenses.return_value = []
    service.investments.venture_summary.return_value = {"currency": "USD"}
    return service


def test_an_investor_cannot_see_another_organisations_venture():
    service = gateway_as("investor", owner="Another Investor")
    with pytest.raises(NotFound):
        service.get_venture(request("GET"), "jv_1")


def test_an_investor_sees_its_own_venture_with_its_etag():
    response = gateway_as("investor").get_venture(request("GET"), "jv_1")
    assert response.status_code == 200 and response.headers["ETag"] == '"3"'


def test_regulators_may_not_register_ventures():
    with pytest.raises(Forbidden):
        gateway_as("regulator").register_venture(request(data="{}"))


def test_investors_may_not_change_a_ventures_status():
    service = gateway_as("investor")
    with pytest.raises(Forbidden):
        service.change_venture_status(request(data='{"to": "active"}'), "jv_1")
    service.ventures.change_venture_status.assert_not_called()


def test_an_investor_lists_only_its_own_organisations_ventures():
    service = gateway_as("investor")
    service.ventures.list_ventures.return_value = []
    builder = EnvironBuilder(
        method="GET", path="/v1/ventures", query_string="owner=Someone+Else&sector=telemedicine"
    )
    service.list_ventures(Request(builder.get_environ()))
    filters, after, limit = service.ventures.list_ventures.call_args.args
    assert filters == {"owner": "Lahore Pharma", "sector": "telemedicine"}
    assert (after, limit) == (None, 51)


def test_an_update_needs_if_match_before_reaching_the_service():
    service = gateway_as("investor")
    with pytest.raises(PreconditionRequired):
        service.update_venture(request("PATCH", data='{"sez": null}'), "jv_1")
    service.ventures.update_venture.assert_not_called()
