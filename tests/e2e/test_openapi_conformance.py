"""The gateway's OpenAPI document against its answers: Schemathesis, with every check
it has, over every operation of `/openapi.json` on a running registry."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import Api, running_registry

HERE = Path(__file__).parent / "schemathesis"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Bounded and reproducible: a fixed number of cases per operation, derandomised.
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzzed_registry(backends, rabbit_management, tmp_path_factory):
    """A registry of its own, without the throttles: the run sends hundreds of
    unauthenticated requests and lists (a shared gateway would rightly answer 429 for a
    minute, to every test), and revokes and rotates every key it sees listed. Its
    webhooks go nowhere but 127.0.0.1 (hooks.py rewrites every URL's host)."""
    log_dir = tmp_path_factory.mktemp("fuzzed-registry-logs")
    with running_registry(
        backends,
        rabbit_management,
        log_dir,
        JVREG_AUTH_FAILURE_LIMIT="1000000/minute",
        JVREG_EXPENSIVE_READ_LIMIT="1000000/minute",
    ) as registry:
        yield registry


def schemathesis_run(url: str, key: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "hooks",
        "PYTHONPATH": str(HERE),
        # the key, as the document's security scheme takes it (schemathesis.toml), so
        # that Schemathesis can leave it out to check the 401
        "JVREG_CONFORMANCE_KEY": key["key"],
        # the key the run uses and the bootstrap key that made it
        "JVREG_CONFORMANCE_KEY_IDS": f"{key['id']},{key['created_by']}",
    }
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_every_operation_answers_as_its_openapi_document_says(fuzzed_registry, tmp_path):
    """As ops, who may call every operation (an investor's run would add ~70 s to
    `make test` and reach fewer operations; the roles are the authorisation matrix's)."""
    url = fuzzed_registry["url"]
    ops = Api(url, fuzzed_registry["ops_key"])
    created = ops.post("/v1/api-keys", json={"role": "ops", "owner": "Conformance ops"})
    assert created.status_code == 201, created.text
    run = schemathesis_run(url, created.json(), tmp_path)
    print(run.stdout[-20000:], run.stderr[-5000:])
    assert run.returncode == 0, run.stdout[-20000:]
