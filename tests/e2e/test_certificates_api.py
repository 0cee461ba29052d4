"""Licence certificates through the gateway, against the registry's real processes:
a granted licence's certificate fetched with a key and without one, checked by `jvreg
verify` as ops run it (a subprocess asking the running registry), genuine but not in
force once suspended, revoked or expired, and still genuine after a key rotation."""

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from ops.processes import wait_until
from ops.verify import IN_FORCE, NOT_GENUINE, NOT_IN_FORCE
from services.gateway.problems import PROBLEM_CONTENT_TYPE
from shared.clock import utcnow
from shared.codec import rfc3339
from shared.signing import read_key_ring, write_key_ring

from support import JVREG, PLANT, created, inspection_date, venture_body


def licence_awaiting_decision(investor, regulator) -> dict:
    venture = created(investor, "/v1/ventures", venture_body())
    plant = created(investor, f"/v1/ventures/{venture['id']}/facilities", PLANT)
    licence = created(
        investor, "/v1/licenses", {"facility_id": plant["id"], "type": "dml_formulation"}
    )
    decide(regulator, licence, "under_review")
    return decide(regulator, licence, "inspection_scheduled", inspection_date=inspection_date())


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def decide(regulator, licence: dict, to: str, **fields) -> dict:
    response = regulator.post(
        f"/v1/licenses/{licence['id']}/transitions",
        json={"to": to, "reason": f"DRAP decided: {to}", **fields},
    )
    assert response.status_code == 200, response.text
    return response.json()


def jvreg_verify(registry, source: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [JVREG, "verify", source, "--registry", registry["url"], *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def saved(certificate: dict, path: Path) -> str:
    path.write_text(json.dumps(certificate, indent=2))
    return str(path)


def test_a_granted_licence_has_a_certificate_that_verify_finds_genuine_and_in_force_until_suspended_or_revoked(  # noqa: E501
    registry, investor, regulator, new_key, tmp_path
):
    licence = licence_awaiting_decision(investor, regulator)
    public = f"{registry['url']}/v1/public/licenses/{licence['id']}/certificate"

    refused = requests.get(public, timeout=10)
    assert (refused.status_code, refused.headers["Content-Type"]) == (409, PROBLEM_CONTENT_TYPE)
    assert "never been granted" in refused.json()["detail"]
    missing = requests.get(public.replace(licence["id"], "lic_000000000000000000000000"))
    assert (missing.status_code, missing.headers["Content-Type"]) == (404, PROBLEM_CONTENT_TYPE)

    licence = decide(regulator, licence, "granted", decision_ref="DRAP/LIC/2026/0412")
    certificate = requests.get(public, timeout=10).json()
    payload = certificate["payload"]
    assert payload["license_number"] == licence["id"]
    assert payload["decision_ref"] == "DRAP/LIC/2026/0412"
    assert moment(payload["valid_until"]) == moment(licence["valid_until"])
    assert payload["plant"] == {"id": licence["facility_id"], "name": PLANT["name"]}
    # The holder's route answers the same certificate; another investor's learns nothing.
    own = investor.get(f"/v1/licenses/{licence['id']}/certificate")
    assert own.status_code == 200 and own.json()["payload"]["venture"] == payload["venture"]
    stranger = new_key("investor", "Another Investor Ltd")
    assert stranger.get(f"/v1/licenses/{licence['id']}/certificate").status_code == 404

    keys = requests.get(f"{registry['url']}/.well-known/jvreg-keys.json", timeout=10).json()
    assert certificate["kid"] in [key["kid"] for key in keys["keys"]]
    qr_code = requests.get(public + ".svg", timeout=10)
    assert qr_code.status_code == 200 and qr_code.headers["Content-Type"] == "image/svg+xml"

    file = saved(certificate, tmp_path / "certificate.json")
    verified = jvreg_verify(registry, file)
    assert verified.returncode == IN_FORCE, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"GENUINE: signed by the registry's key {certificate['kid']}")
    assert "IN FORCE according to the register" in verified.stdout
    by_url = jvreg_verify(registry, public)
    assert by_url.returncode == IN_FORCE, by_url.stdout + by_url.stderr

    decide(regulator, licence, "suspended", decision_ref="DRAP/LIC/2026/0480")
    suspended = jvreg_verify(registry, file)
    assert suspended.returncode == NOT_IN_FORCE, suspended.stdout + suspended.stderr
    assert suspended.stdout.startswith("GENUINE:")
    assert "NOT IN FORCE according to the register" in suspended.stdout
    assert suspended.stdout.rstrip().endswith(": suspended")

    decide(regulator, licence, "revoked", decision_ref="DRAP/LIC/2026/0502")
    revoked = jvreg_verify(registry, file)
    assert revoked.returncode == NOT_IN_FORCE and revoked.stdout.rstrip().endswith(": revoked")
    # A revoked licence still has the certificate of its grant, genuine and not in force.
    again = requests.get(public, timeout=10).json()
    assert again["payload"]["decision_ref"] == "DRAP/LIC/2026/0412"

    certificate["payload"]["valid_until"] = "2035-12-31T23:59:59.999Z"
    forged = jvreg_verify(registry, saved(certificate, tmp_path / "forged.json"))
    assert forged.returncode == NOT_GENUINE, forged.stdout + forged.stderr
    assert forged.stdout.startswith("NOT GENUINE: the signature does not match")
    # The refusals (404, 409) were one line each, never a traceback.
    gateway_log = (registry["log_dir"] / "gateway.log").read_text()
    assert f"refused GET /v1/public/licenses/{licence['id']}/certificate" in gateway_log
    assert "Traceback" not in gateway_log


def test_an_expired_licence_is_genuine_but_not_in_force(registry, investor, regulator, tmp_path):
    licence = licence_awaiting_decision(investor, regulator)
    soon = rfc3339(utcnow() + timedelta(seconds=3))
    licence = decide(
        regulator, licence, "granted", decision_ref="DRAP/LIC/2026/0413", valid_until=soon
    )
    file = saved(
        investor.get(f"/v1/licenses/{licence['id']}/certificate").json(), tmp_path / "c.json"
    )
    # The e2e registry sweeps every second.
    wait_until(
        lambda: investor.get(f"/v1/licenses/{licence['id']}").json()["status"] == "expired",
        30,
        "the licence to expire",
    )
    expired = jvreg_verify(registry, file)
    assert expired.returncode == NOT_IN_FORCE, expired.stdout + expired.stderr
    assert expired.stdout.startswith("GENUINE:") and expired.stdout.rstrip().endswith(": expired")


@pytest.fixture
def key_ring(registry):
    """The running gateway's key ring file, put back as it was after the test."""
    path = Path(registry["env"]["JVREG_SIGNING_KEYS_FILE"])
    before = read_key_ring(path)
    yield path
    write_key_ring(path, before)


def test_after_a_key_rotation_the_old_certificate_stays_genuine_and_new_ones_use_the_new_key(
    registry, investor, regulator, key_ring, tmp_path
):
    licence = licence_awaiting_decision(investor, regulator)
    decide(regulator, licence, "granted", decision_ref="DRAP/LIC/2026/0414")
    public = f"{registry['url']}/v1/public/licenses/{licence['id']}/certificate"
    old = requests.get(public, timeout=10).json()

    rotated = subprocess.run(
        [JVREG, "signing-keys", "rotate", "--file", str(key_ring)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.split()[0]
    # The gateway takes the new ring up without a restart.
    wait_until(lambda: requests.get(public, timeout=10).json()["kid"] == new_kid, 10, "the new key")
    keys = requests.get(f"{registry['url']}/.well-known/jvreg-keys.json", timeout=10).json()
    assert [key["kid"] for key in keys["keys"]][-2:] == [old["kid"], new_kid]
    assert keys["keys"][-2]["not_after"] == keys["keys"][-1]["not_before"]

    for certificate in (old, requests.get(public, timeout=10).json()):
        verified = jvreg_verify(registry, saved(certificate, tmp_path / "certificate.json"))
        assert verified.returncode == IN_FORCE, verified.stdout + verified.stderr
        assert f"key {certificate['kid']}" in verified.stdout

    # Offline, against a copy of the keys taken before the rotation: the new key is unknown.
    copy = tmp_path / "keys.json"
    copy.write_text(json.dumps({"keys": [key for key in keys["keys"] if key["kid"] != new_kid]}))
    new = requests.get(public, timeout=10).json()
    unknown = jvreg_verify(
        registry, saved(new, tmp_path / "new.json"), "--keys", str(copy), "--offline"
    )
    assert unknown.returncode == NOT_GENUINE
    assert "not among the published keys" in unknown.stdout
