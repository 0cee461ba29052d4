"""The web pages served by the gateway, in headless Chromium (tests/e2e/web_probe.py,
its own process) against the registry's real processes: an investor signs in and sees
their venture and the investment charts; a regulator, with the keyboard only, finds the
application in the workbench, is refused a grant without its decision reference (the
problem shown next to the field), grants it, and sees the decision arrive in the live
feed; the API then shows the licence granted. And, over plain HTTP: the session cookie,
CSRF refusals, a wrong key, sign-out.

The screenshots go to a temporary directory; with JVREG_SCREENSHOTS=docs/screenshots
they refresh the README's."""

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from investment_scenario import FLOWS_A, RATES, venture_a
from support import PLANT, Api, created, inspection_date

PROBE = Path(__file__).parent / "web_probe.py"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def raw_key(api: Api) -> str:
    return api.session.headers["Authorization"].removeprefix("Bearer ")


def move(regulator: Api, licence_id: str, to: str, **fields) -> None:
    response = regulator.post(
        f"/v1/licenses/{licence_id}/transitions",
        json={"to": to, "reason": "dossier complete", **fields},
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def investor(new_key) -> Api:
    """An investor of its own (its pages show its ventures only), named like one."""
    return new_key("investor", f"Indus Pharma Holdings {uuid.uuid4().hex[:4]}")


@pytest.fixture
def application(ops, investor, regulator) -> dict:
    """An investor's venture with flows in PKR, CNY and USD, a plant, a licence
    application the regulator has taken to its inspection (awaiting the decision) and
    another just submitted."""
    for currency, day, rate in RATES:
        answer = ops.put(f"/v1/fx-rates/{currency}/{day}", json={"usd_per_unit": rate})
        assert answer.status_code in (200, 201), answer.text
    venture = created(
        investor, "/v1/ventures", venture_a(f"Web Pages Pharma {uuid.uuid4().hex[:6]}")
    )
    for flow in FLOWS_A:
        created(investor, f"/v1/ventures/{venture['id']}/investments", flow)
    plant = created(investor, f"/v1/ventures/{venture['id']}/facilities", PLANT)
    licence = created(
        investor, "/v1/licenses", {"facility_id": plant["id"], "type": "dml_formulation"}
    )
    move(regulator, licence["id"], "under_review")
    move(regulator, licence["id"], "inspection_scheduled", inspection_date=inspection_date())
    product = {
        "type": "product_registration",
        "product_details": {
            "dosage_form": "capsule",
            "strength": {"value": "500", "unit": "mg"},
            "active_ingredients": [{"inn": "Amoxicillin"}],
        },
    }
    created(investor, "/v1/licenses", {"facility_id": plant["id"], **product})
    return {"venture": venture, "plant": plant, "licence": licence}


def test_an_investor_and_a_regulator_use_the_pages_in_a_browser(
    registry, investor, regulator, application, tmp_path
):
    url = registry["url"]
    screenshots = Path(os.environ.get("JVREG_SCREENSHOTS", tmp_path / "screenshots"))
    licence_id = application["licence"]["id"]
    scenario = {
        "url": url,
        "investor_key": raw_key(investor),
        "regulator_key": raw_key(regulator),
        "venture_name": application["venture"]["name"],
        "licence_id": licence_id,
        "screenshots": str(screenshots.resolve()),
    }
    run = subprocess.run(
        [sys.executable, str(PROBE), json.dumps(scenario)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-5000:]
    seen = json.loads(run.stdout)
    assert seen["errors"] == []
    # nothing but the gateway's own pages and files
    assert all(address.startswith(url) for address in seen["requested"]), seen["requested"]

    investor_saw = seen["investor"]
    assert {"/sign-in", "/register"} <= set(investor_saw["home_links"])
    assert investor_saw["wrong_key"] == {
        "status": 401,
        "error": "That API key is unknown, revoked or expired. Check it and try again.",
        "invalid": "true",
    }
    assert investor_saw["landed"] == "/ventures"
    assert investor_saw["ventures"] == [application["venture"]["name"]]
    [cookie] = investor_saw["cookies"]
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "jvreg_session",
        True,
        "Strict",
    )
    assert cookie["value"] != scenario["investor_key"] and "jvk_" not in cookie["value"]
    assert investor_saw["venture_heading"] == application["venture"]["name"]
    assert investor_saw["venture_chart"] == ["Investment by partner (USD)"]
    assert (investor_saw["plants"], investor_saw["licences"]) == (1, 2)
    assert investor_saw["charts"] == [
        "Investment by partner country (USD)",
        "Disbursements by month (USD)",
    ]
    # the figures of tests/investment_scenario.py, computed by hand
    by_country, by_month = investor_saw["chart_tables"]
    assert by_country == ["CN\t3,092,500.00\t1,362,000.75", "PK\t1,800,000.00\t605,094.44"]
    assert by_month == ["2025-02\t444,444.44", "2025-03\t1,272,650.00", "2025-04\t250,000.75"]
    assert investor_saw["chart_bars"] == 2 * 2 + 3
    assert investor_saw["signed_out_at"] == "/"
    assert investor_saw["after_sign_out"] == "/sign-in"

    regulator_saw = seen["regulator"]
    assert regulator_saw["landed"] == "/workbench"
    assert f"/licences/{licence_id}" in regulator_saw["awaiting"]
    assert regulator_saw["age_groups"][-1] == "Waiting less than a week"
    refused = regulator_saw["refused"]
    assert refused["status"] == 422
    assert refused["decision_ref_error"] == "required to move to granted"
    assert refused["invalid"] == "true"
    assert refused["kept_reason"] == "inspection of the plant found it GMP-compliant"
    granted = regulator_saw["granted"]
    assert (granted["status"], granted["at"]) == (200, f"/licences/{licence_id}")
    assert granted["licence_status"] == "granted"
    assert granted["history"] == ["submitted", "under review", "inspection scheduled", "granted"]
    assert licence_id in regulator_saw["feed"] and "DRAP/LIC/2026/0412" in regulator_saw["feed"]

    through_api = investor.get(f"/v1/licenses/{licence_id}").json()
    assert (through_api["status"], through_api["decision_ref"]) == ("granted", "DRAP/LIC/2026/0412")
    public = seen["public"]
    assert f"/register/licences/{licence_id}" in public["found"]
    assert public["licence"]["status"] == "granted" and public["licence"]["in_force"] == "yes"
    assert public["licence"]["qr_loaded"] is True
    assert public["licence"]["timeline"] == [
        "submitted",
        "under review",
        "inspection scheduled",
        "granted",
    ]
    # The public page names DRAP's decision, never who decided or their notes.
    assert "DRAP/LIC/2026/0412" in public["licence"]["text"]
    assert "GMP-compliant" not in public["licence"]["text"]
    assert "regulator" not in public["licence"]["text"].lower()
    assert public["venture"] == {
        "heading": application["venture"]["name"],
        "plants": 1,
        "licences": 2,
    }
    pages = ("home", "sign-in", "ventures", "venture", "plants", "licences", "investments")
    pages += ("workbench", "licence-refused", "licence")
    pages += ("register", "register-licence", "register-venture")
    assert sorted(seen["screenshots"]) == sorted(
        f"{name}-{width}.png" for name in pages for width in ("desktop", "phone")
    )


def signed_in(url: str, key: str) -> tuple[requests.Session, str]:
    """A browser-like session signed in with `key`, and its CSRF token."""
    browser = requests.Session()
    form = browser.get(f"{url}/sign-in", timeout=10)
    token = TOKEN.search(form.text).group(1)
    answer = browser.post(
        f"{url}/sign-in", data={"csrf_token": token, "api_key": key}, allow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    page = browser.get(f"{url}/ventures", timeout=10)
    assert page.status_code == 200
    return browser, TOKEN.search(page.text).group(1)


def test_the_session_cookie_holds_an_opaque_id_with_strict_flags(registry, investor):
    url = registry["url"]
    browser = requests.Session()
    form = browser.get(f"{url}/sign-in", timeout=10)
    token = TOKEN.search(form.text).group(1)
    answer = browser.post(
        f"{url}/sign-in",
        data={"csrf_token": token, "api_key": raw_key(investor)},
        allow_redirects=False,
    )
    assert (answer.status_code, answer.headers["Location"]) == (303, "/ventures")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; https (or JVREG_WEB_SECURE_COOKIES) adds it
    assert raw_key(investor) not in cookie
    # a new session once signed in: the id of the sign-in form's opens nothing
    assert browser.cookies["jvreg_session"] != form.cookies["jvreg_session"]
    stale = requests.get(f"{url}/ventures", cookies=form.cookies, allow_redirects=False)
    assert (stale.status_code, stale.headers["Location"]) == (303, "/sign-in")


def test_a_form_without_its_sessions_token_is_refused(registry, investor, regulator, application):
    url = registry["url"]
    browser = requests.Session()
    browser.get(f"{url}/sign-in", timeout=10)
    no_token = browser.post(f"{url}/sign-in", data={"api_key": raw_key(investor)})
    assert no_token.status_code == 403 and "jvreg_session" not in no_token.headers.get(
        "Set-Cookie", ""
    )

    deciding, token = signed_in(url, raw_key(regulator))
    licence_id = application["licence"]["id"]
    decision = {"to": "rejected", "reason": "forged", "decision_ref": "FORGED/1"}
    forged = deciding.post(f"{url}/licences/{licence_id}/decision", data=decision)
    assert forged.status_code == 403 and "did not come from your current session" in forged.text
    other_token = signed_in(url, raw_key(regulator))[1]
    forged = deciding.post(
        f"{url}/licences/{licence_id}/decision", data={**decision, "csrf_token": other_token}
    )
    assert forged.status_code == 403
    assert investor.get(f"/v1/licenses/{licence_id}").json()["status"] == "inspection_scheduled"

    # sign-out is a form too: without the token the session goes on
    assert deciding.post(f"{url}/sign-out", data={}).status_code == 403
    assert deciding.get(f"{url}/workbench", allow_redirects=False).status_code == 200
    out = deciding.post(f"{url}/sign-out", data={"csrf_token": token}, allow_redirects=False)
    assert (out.status_code, out.headers["Location"]) == (303, "/")
    after = deciding.get(f"{url}/workbench", allow_redirects=False)
    assert (after.status_code, after.headers["Location"]) == (303, "/sign-in")


def test_a_wrong_key_is_one_log_line_and_the_api_roles_hold(registry, investor):
    url = registry["url"]
    browser = requests.Session()
    token = TOKEN.search(browser.get(f"{url}/sign-in", timeout=10).text).group(1)
    marker = f"jvk_wrong{uuid.uuid4().hex}"
    wrong = browser.post(f"{url}/sign-in", data={"csrf_token": token, "api_key": marker})
    assert wrong.status_code == 401 and "unknown, revoked or expired" in wrong.text
    log = (registry["log_dir"] / "gateway.log").read_text()
    assert "refused POST /sign-in from 127.0.0.1: 401 unknown, revoked or expired API key" in log
    assert "Traceback" not in log and marker not in log

    # an investor's key opens no workbench (403), as the API refuses it a decision
    investing, _ = signed_in(url, raw_key(investor))
    assert investing.get(f"{url}/workbench").status_code == 403
    # nor another organisation's licence (404, as the API)
    assert investing.get(f"{url}/licences/lic_000000000000000000000000").status_code == 404
