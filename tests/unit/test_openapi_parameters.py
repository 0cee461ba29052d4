"""The OpenAPI document states what the services enforce on query and path parameters:
a client (or Schemathesis) that follows it is not refused for values it allows."""

from services.gateway.openapi import openapi_document
from services.gateway.service import ROUTES


def parameters(path: str, method: str = "get") -> dict[str, dict]:
    operation = openapi_document(ROUTES)["paths"][path][method]
    return {parameter["name"]: parameter for parameter in operation["parameters"]}


def test_list_filters_have_the_schemas_their_services_validate():
    assert parameters("/v1/subscriptions")["status"]["schema"] == {
        "enum": ["active", "disabled"],
        "type": "string",
    }
    assert parameters("/v1/investments/summary")["group_by"]["schema"]["enum"] == [
        "sector",
        "province",
        "partner_country",
    ]
    ventures = parameters("/v1/ventures")
    assert "other" in ventures["sector"]["schema"]["enum"]
    assert ventures["q"]["schema"] == {"maxLength": 200, "minLength": 1, "type": "string"}
    assert parameters("/v1/licenses")["expiring_before"]["schema"]["format"] == "date"


def test_currencies_are_the_iso_4217_codes_not_any_three_capitals():
    currency = parameters("/v1/investments/summary")["currency"]["schema"]
    assert {"PKR", "CNY", "USD"} <= set(currency["enum"])
    assert "AAA" not in currency["enum"]
    assert currency["default"] == "USD"


def test_the_fx_rate_path_names_a_currency_and_a_date():
    path = parameters("/v1/fx-rates/{currency}/{date}", "put")
    assert "PKR" in path["currency"]["schema"]["enum"]
    assert path["date"]["schema"] == {"format": "date", "type": "string"}
    assert path["currency"]["required"] and path["date"]["required"]


def responses(path: str, method: str) -> dict[str, dict]:
    return openapi_document(ROUTES)["paths"][path][method]["responses"]


def test_every_status_a_route_answers_is_documented_with_its_headers():
    fx_rate = responses("/v1/fx-rates/{currency}/{date}", "put")
    assert {"200", "201", "403", "409", "415", "422", "429"} <= set(fx_rate)
    assert fx_rate["201"]["headers"]["ETag"]["required"]
    patch = responses("/v1/ventures/{venture_id}", "patch")
    assert {"404", "412", "428"} <= set(patch)
    assert patch["412"]["content"]["application/problem+json"]
    assert patch["429"]["headers"]["Retry-After"]["required"]
    assert "Location" in responses("/v1/ventures", "post")["201"]["headers"]


def test_webhook_urls_and_event_types_have_their_grammar_in_the_schema():
    schema = openapi_document(ROUTES)["components"]["schemas"]["CreateSubscription"]["properties"]
    assert schema["url"]["format"] == "uri"
    assert schema["url"]["pattern"] == "^[Hh][Tt][Tt][Pp][Ss]?://"
    assert schema["event_types"]["items"]["pattern"].startswith("^(?:license|")
