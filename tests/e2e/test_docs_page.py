"""/docs: Swagger UI over /openapi.json, served by the gateway from a PyPI package's
assets (nothing fetched from elsewhere), as headless Chromium renders it; and
/asyncapi.json, the event contract."""

import json
import subprocess
import sys
from pathlib import Path

import requests
from jsonschema import Draft7Validator

from services.gateway.asyncapi import asyncapi_document
from shared.contract import EVENT_TYPES

PROBE = Path(__file__).parent / "swagger_ui_probe.py"
ASYNCAPI_3_SCHEMA = json.loads(
    (Path(__file__).parents[1] / "schemas" / "asyncapi-3.0.0.json").read_text()
)


def test_the_docs_page_renders_every_operation_from_the_gateway_alone(registry):
    url = registry["url"]
    document = requests.get(f"{url}/openapi.json", timeout=10).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    run = subprocess.run(
        [sys.executable, str(PROBE), url], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-5000:]
    seen = json.loads(run.stdout)
    assert seen["errors"] == []
    assert seen["operations"] == operations
    # the operation opened: its body and answers are shown
    assert "Request body" in seen["expanded"] and "201" in seen["expanded"]
    assert all(address.startswith(url) for address in seen["requested"]), seen["requested"]


def test_the_docs_assets_are_the_packages_and_nothing_else(registry):
    url = registry["url"]
    css = requests.get(f"{url}/docs/swagger-ui.css", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    # only the files the page loads: not the package's others, nor a path out of it
    assert requests.get(f"{url}/docs/LICENSE", timeout=10).status_code == 422
    outside = requests.get(f"{url}/docs/..%2F..%2Fgateway%2Fservice.py", timeout=10)
    assert outside.status_code in (404, 422)


def test_the_gateway_serves_the_asyncapi_document_of_the_contracts(registry):
    served = requests.get(f"{registry['url']}/asyncapi.json", timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"] == "application/json"
    document = served.json()
    errors = list(Draft7Validator(ASYNCAPI_3_SCHEMA).iter_errors(document))
    assert not errors, [error.message for error in errors[:5]]
    assert document == json.loads(json.dumps(asyncapi_document()))
    assert {"ventures.events", "licensing.events"} <= {
        channel["address"] for channel in document["channels"].values()
    }


def test_the_event_catalogue_is_a_page_of_every_event_type(registry):
    page = requests.get(f"{registry['url']}/docs/events", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<table>" in page.text and "<h2" in page.text
    for routing_key in EVENT_TYPES:
        assert f"<code>{routing_key}</code>" in page.text, routing_key
