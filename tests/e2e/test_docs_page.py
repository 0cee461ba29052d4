"""/docs: Swagger UI over /openapi.json, served by the gateway from a PyPI package's
assets (nothing fetched from elsewhere), as headless Chromium renders it."""

import json
import subprocess
import sys
from pathlib import Path

import requests

PROBE = Path(__file__).parent / "swagger_ui_probe.py"


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
