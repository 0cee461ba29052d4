"""The OpenAPI document states what the services enforce on query and path parameters:
a client (or Schemathesis) that follows it is not refused for values it allows."""

from services.gateway.openapi import openapi_document


def parameters(path: str, method: str = "get") -> dict[str, dict]:
    operation = openapi_document()["paths"][path][method]
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
