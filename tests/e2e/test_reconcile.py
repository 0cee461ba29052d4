"""`jvreg reconcile` against the running registry: clean once every event has been
applied, and exit 1 naming the drift when a projection disagrees with its source."""

import os
import subprocess
import sys
from pathlib import Path

from pymongo import MongoClient

from ops.processes import wait_until

JVREG = str(Path(sys.executable).parent / "jvreg")


def reconcile(registry) -> subprocess.CompletedProcess:
    env = {**os.environ, **registry["env"]}
    return subprocess.run(
        [JVREG, "reconcile"], env=env, capture_output=True, text=True, timeout=120
    )


def test_reconcile_is_clean_then_names_drift(registry, investor, regulator):
    from test_licensing_api import DML, PLANT, venture_body  # the same realistic plant

    venture = investor.post("/v1/ventures", json=venture_body()).json()

    def register_plant():
        response = investor.post(f"/v1/ventures/{venture['id']}/facilities", json=PLANT)
        return response.json() if response.status_code == 201 else None

    facility = None

    def registered():
        nonlocal facility
        facility = register_plant()
        return facility is not None

    wait_until(registered, 30, "the facilities service to learn of the venture")

    def applied():
        response = investor.post("/v1/licenses", json={**DML, "facility_id": facility["id"]})
        return response.status_code == 201

    wait_until(applied, 30, "the licensing service to learn of the facility")

    result = None

    def clean():
        nonlocal result
        result = reconcile(registry)
        return result.returncode == 0

    try:
        wait_until(clean, 60, "projections to converge", pause=1)
    except TimeoutError:
        raise AssertionError(f"{result.stdout}\n{result.stderr}") from None
    assert "DRIFT" not in result.stdout
    assert "facility status follows its manufacturing licences" in result.stdout

    env = registry["env"]
    client = MongoClient(env["JVREG_MONGO_URI"])
    projection = client[f"{env['JVREG_DB_PREFIX']}_licensing"].facilities
    projection.update_one({"_id": facility["id"]}, {"$set": {"status": "operational"}})
    try:
        drifted = reconcile(registry)
        assert drifted.returncode == 1
        assert f"{facility['id']}.status: projected 'operational', source 'planned'" in (
            drifted.stdout
        )
    finally:
        projection.update_one({"_id": facility["id"]}, {"$set": {"status": "planned"}})
        client.close()
