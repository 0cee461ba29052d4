"""The OpenAPI document generated from the gateway's route declarations, and the edge
that maps the services' errors (which carry no HTTP) to problem documents."""

import inspect
import json
import subprocess
import sys

import pytest
from openapi_spec_validator import validate

import shared.errors
from services.gateway.http import ApiEndpoint
from services.gateway.openapi import openapi_document
from services.gateway.problems import (
    PROBLEM_TYPES,
    InvalidParameters,
    UnsupportedMediaType,
    problem_for,
    problem_headers,
)
from services.gateway.routing import Route, check_path
from services.gateway.service import ROUTES, GatewayService
from shared.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    RegistryError,
    ServiceUnavailable,
    TooManyRequests,
)
from shared.pagination import examples_of

DOCUMENT = openapi_document(ROUTES)
OPERATIONS = [
    (path, method, operation)
    for path, methods in DOCUMENT["paths"].items()
    for method, operation in methods.items()
]


def spec(name: str) -> Route:
    (found,) = [route for route in ROUTES if route.name == name]
    return found


def test_the_document_is_valid_openapi_3_1():
    validate(DOCUMENT)
    assert DOCUMENT["openapi"] == "3.1.0"
    schemas = DOCUMENT["components"]["schemas"]
    assert "RegisterVenture" in schemas
    assert schemas["Partner"]["additionalProperties"] is False


def test_every_route_of_the_service_is_an_operation_named_after_its_method():
    assert len(OPERATIONS) == len(ROUTES)
    operation_ids = [operation["operationId"] for _, _, operation in OPERATIONS]
    assert len(set(operation_ids)) == len(operation_ids)
    for operation_id in operation_ids:
        assert inspect.isfunction(getattr(GatewayService, operation_id))
    tags = {tag["name"] for tag in DOCUMENT["tags"]}
    assert {"ventures", "licences", "investments", "api-keys"} <= tags
    assert all(set(operation["tags"]) <= tags for _, _, operation in OPERATIONS)


def test_every_body_and_answer_in_json_has_an_example():
    missing = []
    for path, method, operation in OPERATIONS:
        contents = [("request", operation.get("requestBody", {}).get("content", {}))]
        contents += [
            (status, answer.get("content", {})) for status, answer in operation["responses"].items()
        ]
        for where, content in contents:
            for media_type, entry in content.items():
                if "json" in media_type and not ("example" in entry or "examples" in entry):
                    missing.append(f"{method.upper()} {path} {where}")
    assert missing == []


def test_every_example_is_valid_for_its_model():
    for route in ROUTES:
        for model in filter(None, (route.body, route.response)):
            for example in examples_of(model):
                model.model_validate_json(json.dumps(example))


def test_every_refusal_is_a_problem_document_with_its_headers():
    for path, method, operation in OPERATIONS:
        for status, answer in operation["responses"].items():
            if int(status) < 400 or path == "/health":
                continue
            content = answer["content"]["application/problem+json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
            assert content["example"]["status"] == int(status)
            if status in ("429", "503"):
                assert answer["headers"]["Retry-After"]["required"], (path, method)


def headers_of(path: str, method: str) -> dict[str, dict]:
    operation = DOCUMENT["paths"][path][method]
    return {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}


def test_commands_take_an_idempotency_key_and_updates_if_match():
    for path, method, _ in OPERATIONS:
        parameters = headers_of(path, method)
        assert ("Idempotency-Key" in parameters) == (method in ("post", "put", "patch", "delete"))
    update = headers_of("/v1/ventures/{venture_id}", "patch")
    assert update["If-Match"]["required"] and not update["Idempotency-Key"]["required"]
    created = DOCUMENT["paths"]["/v1/ventures"]["post"]["responses"]["201"]["headers"]
    assert set(created) == {"Location", "ETag"}


def test_roles_are_stated_and_public_routes_need_no_key():
    assert "investor, ops" in DOCUMENT["paths"]["/v1/ventures"]["post"]["description"]
    for path in ("/health", "/openapi.json", "/docs"):
        assert DOCUMENT["paths"][path]["get"]["security"] == []
        assert "401" not in DOCUMENT["paths"][path]["get"]["responses"]


def test_every_error_a_service_raises_has_its_place_in_the_table():
    domain_errors = [
        cls
        for _, cls in inspect.getmembers(shared.errors, inspect.isclass)
        if issubclass(cls, RegistryError) and cls is not RegistryError
    ]
    assert domain_errors and all(cls in PROBLEM_TYPES for cls in domain_errors)
    assert problem_for(Conflict("taken", extra={"allowed": []}), "/v1/ventures/jv_1") == {
        "type": "/problems/conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "taken",
        "instance": "/v1/ventures/jv_1",
        "allowed": [],
    }
    assert problem_headers(TooManyRequests("slow down", extra={"retry_after": 7})) == {
        "Retry-After": "7"
    }
    assert problem_headers(ServiceUnavailable("down")) == {"Retry-After": "1"}


def answer_of(route: Route, error: Exception) -> dict:
    response = ApiEndpoint(route.method, route.path, route=route).response_from_exception(error)
    return json.loads(response.get_data())


def field(*loc) -> list[dict]:
    return [{"loc": list(loc), "msg": "wrong", "type": "value_error"}]


def test_the_edge_places_a_services_field_paths_in_the_request():
    invalid = InvalidInput("1 invalid field(s)", field("partners", 0, "equity_pct"))
    answer = answer_of(spec("register_venture"), invalid)
    assert answer["status"] == 422
    assert answer["errors"][0]["loc"] == ["body", "partners", 0, "equity_pct"]
    filters = answer_of(spec("list_ventures"), InvalidInput("bad filter", field("sector")))
    assert filters["errors"][0]["loc"] == ["query", "sector"]
    unknown = answer_of(spec("apply_for_license"), NotFound("no facility", field("facility_id")))
    assert unknown["status"] == 404 and unknown["errors"][0]["loc"] == ["body", "facility_id"]


def test_the_edges_own_refusals_name_their_place_in_full():
    media = UnsupportedMediaType("send JSON", field("header", "Content-Type"))
    answer = answer_of(spec("register_venture"), media)
    assert answer["status"] == 415 and answer["errors"][0]["loc"] == ["header", "Content-Type"]


def test_path_parameters_are_checked_against_the_routes_model():
    check_path(spec("set_fx_rate").path_model, {"currency": "PKR", "date": "2025-05-02"})
    with pytest.raises(InvalidParameters) as refused:
        check_path(spec("set_fx_rate").path_model, {"currency": "AAA", "date": "2025-05-02"})
    assert refused.value.errors[0]["loc"] == ["path", "currency"]
    answer = answer_of(spec("set_fx_rate"), refused.value)
    assert answer["status"] == 422 and answer["errors"][0]["loc"] == ["path", "currency"]


def test_the_document_is_made_without_the_service_module():
    """No import cycle: the generator and the routes know nothing of the service."""
    probe = (
        "import sys, services.gateway.openapi, services.gateway.routing; "
        "assert 'services.gateway.service' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
