"""The gateway's HTTP rules without a broker: body limits, If-Match, problem mapping,
authorisation and ownership (services replaced by nameko's worker_factory mocks)."""

import json

import pytest
from nameko.exceptions import RemoteError
from nameko.testing.services import worker_factory
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wrappers import Request, Response

from services.gateway.http import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    ProblemWsgiApp,
    expected_version,
    problem_response,
    read_json_body,
    require_json_media_type,
)
from services.gateway.keys import Principal
from services.gateway.problems import (
    BadRequest,
    PayloadTooLarge,
    PreconditionRequired,
    UnsupportedMediaType,
    problem_for,
)
from services.gateway.service import GatewayService
from shared.errors import Conflict, Forbidden, NotFound, PreconditionFailed, Unauthorized


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


def test_a_body_without_a_content_type_is_refused():
    with pytest.raises(UnsupportedMediaType) as caught:
        read_json_body(request(data="{}", content_type=None))
    assert caught.value.errors[0]["loc"] == ["header", "Content-Type"]


def test_a_json_merge_patch_body_is_json():
    assert read_json_body(request(data="{}", content_type="application/merge-patch+json")) == "{}"


def test_a_body_nested_deeper_than_the_bound_is_a_bad_request_not_a_crash():
    for body in ("[" * 100_000, "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)):
        with pytest.raises(BadRequest) as caught:
            read_json_body(request(data=body))
        assert caught.value.errors[0] == {
            "loc": ["body"],
            "msg": "nested too deeply",
            "type": "json_too_deep",
        }


def test_nesting_up_to_the_bound_and_brackets_inside_strings_are_fine():
    deep = '{"a": ' * (MAX_JSON_DEPTH - 1) + "[]" + "}" * (MAX_JSON_DEPTH - 1)
    assert read_json_body(request(data=deep)) == deep
    wide = json.dumps({"note": 'say "[[[" \\' + "[" * 10_000, "rows": [[1]] * 5_000})
    assert read_json_body(request(data=wide)) == wide


def if_match(value: str) -> Request:
    return request("PATCH", headers={"If-Match": value})


def test_if_match_is_required_and_must_name_the_current_version():
    assert expected_version(if_match('"7"'), 7) == 7
    with pytest.raises(PreconditionRequired):
        expected_version(request(), 7)
    for stale in ('"6"', '"abc"', '"77"'):
        with pytest.raises(PreconditionFailed):
            expected_version(if_match(stale), 7)


def test_if_match_star_matches_whatever_version_exists():
    assert expected_version(if_match("*"), 7) == 7


def test_if_match_with_a_list_matches_any_of_its_etags():
    assert expected_version(if_match('"5", "7" ,"9"'), 7) == 7
    with pytest.raises(PreconditionFailed):
        expected_version(if_match('"5", "9"'), 7)


def test_a_weak_etag_never_matches_if_match():
    for weak in ('W/"7"', 'W/"7", "8"'):
        with pytest.raises(PreconditionFailed):
            expected_version(if_match(weak), 7)


def test_unexpected_errors_become_a_500_problem_without_internals():
    problem = problem_for(RemoteError("KeyError", "'secret internals'"), "/v1/ventures")
    assert problem["status"] == 500
    assert "secret" not in json.dumps(problem)


def test_a_services_extra_members_never_replace_the_problems_own():
    refusal = Conflict("already open", extra={"status": "submitted", "open_application": "lic_1"})
    problem = problem_for(refusal, "/v1/licenses")
    assert problem["status"] == 409 and problem["open_application"] == "lic_1"


def test_routing_errors_become_problems():
    problem = problem_for(MethodNotAllowed(), "/v1/ventures")
    assert problem["status"] == 405 and problem["type"] == "/problems/method-not-allowed"


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
    service.search.list.return_value = {"items": [], "next_cursor": None}
    builder = EnvironBuilder(
        method="GET", path="/v1/ventures", query_string="owner=Someone+Else&sector=telemedicine"
    )
    service.list_ventures(Request(builder.get_environ()))
    doctype, filters, cursor, limit, _ = service.search.list.call_args.args
    assert doctype == "venture"
    assert filters == {"owner": "Lahore Pharma", "sector": "telemedicine"}
    assert (cursor, limit) == (None, 50)


def test_an_update_needs_if_match_before_reaching_the_service():
    service = gateway_as("investor")
    with pytest.raises(PreconditionRequired):
        service.update_venture(request("PATCH", data='{"sez": null}'), "jv_1")
    service.ventures.update_venture.assert_not_called()


class Route:
    """A stand-in for a nameko HTTP entrypoint: answers every request the same way."""

    def __init__(self, answer: Response):
        self.answer = answer

    def handle_request(self, request):
        return self.answer

    def require_media_type(self, request):
        require_json_media_type(request)


class Routes:
    """What ProblemWsgiApp needs of nameko's WebServer: the URL map of its routes."""

    def __init__(self, *rules: tuple[str, str, Response]):
        self.rules = rules

    def make_url_map(self):
        return Map(
            [
                Rule(path, methods=[method], endpoint=Route(answer))
                for method, path, answer in self.rules
            ]
        )


def edge(*rules) -> Client:
    return Client(ProblemWsgiApp(Routes(*rules), body_timeout=5))


def test_every_401_says_how_to_authenticate_and_whether_the_key_was_bad():
    unauthorized = problem_response(problem_for(Unauthorized("unknown or revoked API key")))
    client = edge(("GET", "/v1/ventures", unauthorized))
    anonymous = client.get("/v1/ventures")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="jvreg"'
    bad_key = client.get("/v1/ventures", headers={"Authorization": "Bearer jvk_made_up"})
    assert bad_key.headers["WWW-Authenticate"] == 'Bearer realm="jvreg", error="invalid_token"'


def test_every_405_lists_the_allowed_methods():
    client = edge(("GET", "/v1/ventures", Response("{}")), ("POST", "/v1/ventures", Response("{}")))
    response = client.delete("/v1/ventures")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, POST"
    assert response.mimetype == "application/problem+json"


def test_a_response_carrying_a_raw_key_or_secret_is_never_stored():
    key = json.dumps({"id": "key_1", "key": "jvk_" + "A1b2-_" * 7})
    secret = json.dumps({"id": "sub_1", "secret": "whsec_" + "Zm9vYmFy+/" * 4 + "=="})
    client = edge(
        ("POST", "/keys", Response(key)),
        ("POST", "/subscriptions", Response(secret)),
        ("GET", "/ventures", Response('{"name": "jvk_ in a name"}')),
    )
    for path in ("/keys", "/subscriptions"):
        assert client.post(path).headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get("/ventures").headers


def test_a_command_body_without_a_json_content_type_is_refused_before_a_worker_is_taken():
    client = edge(("POST", "/v1/ventures", Response("{}", status=201)))
    for content_type in (None, "text/plain"):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post("/v1/ventures", data=b"{}", headers=headers)
        assert response.status_code == 415, content_type
        assert response.json["errors"][0]["loc"] == ["header", "Content-Type"]
    assert client.post("/v1/ventures", json={}).status_code == 201
