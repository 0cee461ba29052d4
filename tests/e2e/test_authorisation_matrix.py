"""The authorisation matrix: every route of the gateway, read from its nameko
entrypoints, called by every kind of caller, against a policy table that is the
specification of who may do what. A route missing from the table fails the test, so no
route is added without deciding who may call it.

It runs on the end-to-end registry through a gateway instance of its own (the same
databases and broker, as a second gateway in production), whose failed-authentication
limit is raised: the matrix sends well over a hundred requests with bad keys on purpose,
which would otherwise lock 127.0.0.1 out of the shared gateway."""

import inspect
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import eventlet
import pytest
import requests
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from ops.processes import Stack, free_port, wait_until
from services.gateway.http import ApiEndpoint
from services.gateway.service import GatewayService
from services.gateway.web.pages import WebPage

from support import PLANT, venture_body

UNAUTHENTICATED = ("anonymous", "unknown key", "revoked key", "expired key")
AUTHENTICATED = ("owner investor", "other investor", "regulator", "other regulator", "ops")
PRINCIPALS = UNAUTHENTICATED + AUTHENTICATED

# Outcomes: "ok" is a 2xx answer (for a list: one that includes the owner's resource),
# "hidden" a 2xx list without it (filtered to the caller's own), "401" no valid key,
# "403" a role that may not do this, "404" not yours (nothing learnt of it).
ANYONE = ("ok",) * len(PRINCIPALS)

# The specification. Columns: owner investor, other investor, regulator, other
# regulator, ops; every /v1 route is 401 without a valid key. "Owner" is the
# organisation that registered the venture (and its plants, licences and flows), whose
# API key it is, or (subscriptions) the regulator whose webhook it is.
POLICY: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/health"): ANYONE,
    ("GET", "/openapi.json"): ANYONE,
    ("GET", "/asyncapi.json"): ANYONE,
    ("GET", "/docs"): ANYONE,
    ("GET", "/docs/events"): ANYONE,
    ("GET", "/docs/<asset>"): ANYONE,
    ("GET", "/metrics"): ("403", "403", "403", "403", "ok"),
    # API keys: ops manage every key; others their organisation's.
    ("POST", "/v1/api-keys"): ("403", "403", "403", "403", "ok"),
    ("GET", "/v1/api-keys"): ("ok", "hidden", "hidden", "hidden", "ok"),
    ("GET", "/v1/api-keys/<key_id>"): ("ok", "404", "404", "404", "ok"),
    ("DELETE", "/v1/api-keys/<key_id>"): ("ok", "404", "404", "404", "ok"),
    ("POST", "/v1/api-keys/<key_id>/rotate"): ("ok", "404", "404", "404", "ok"),
    # Ventures: investors register and change their own; regulators read every one and
    # decide its status; ops everything.
    ("POST", "/v1/ventures"): ("ok", "ok", "403", "403", "ok"),
    ("GET", "/v1/ventures"): ("ok", "hidden", "ok", "ok", "ok"),
    ("GET", "/v1/ventures/<venture_id>"): ("ok", "404", "ok", "ok", "ok"),
    ("PATCH", "/v1/ventures/<venture_id>"): ("ok", "404", "403", "403", "ok"),
    ("POST", "/v1/ventures/<venture_id>/status"): ("403", "403", "ok", "ok", "ok"),
    # Plants and licence applications: the venture's owner; licence decisions: DRAP.
    ("POST", "/v1/ventures/<venture_id>/facilities"): ("ok", "404", "403", "403", "ok"),
    ("GET", "/v1/facilities"): ("ok", "hidden", "ok", "ok", "ok"),
    ("GET", "/v1/facilities/<facility_id>"): ("ok", "404", "ok", "ok", "ok"),
    ("POST", "/v1/licenses"): ("ok", "404", "403", "403", "ok"),
    ("GET", "/v1/licenses"): ("ok", "hidden", "ok", "ok", "ok"),
    ("GET", "/v1/licenses/<license_id>"): ("ok", "404", "ok", "ok", "ok"),
    ("POST", "/v1/licenses/<license_id>/transitions"): ("403", "403", "ok", "ok", "ok"),
    ("POST", "/v1/licenses/<license_id>/renewal"): ("ok", "404", "403", "403", "ok"),
    ("GET", "/v1/licenses/<license_id>/history"): ("ok", "404", "ok", "ok", "ok"),
    # Webhooks: regulators (and ops); one regulator learns nothing of another's.
    ("POST", "/v1/subscriptions"): ("403", "403", "ok", "ok", "ok"),
    ("GET", "/v1/subscriptions"): ("403", "403", "ok", "hidden", "ok"),
    ("GET", "/v1/subscriptions/<subscription_id>"): ("403", "403", "ok", "404", "ok"),
    ("DELETE", "/v1/subscriptions/<subscription_id>"): ("403", "403", "ok", "404", "ok"),
    ("GET", "/v1/subscriptions/<subscription_id>/deliveries"): ("403", "403", "ok", "404", "ok"),
    # Investments: the owner records; everyone who may see the venture reads.
    ("POST", "/v1/ventures/<venture_id>/investments"): ("ok", "404", "403", "403", "ok"),
    ("GET", "/v1/ventures/<venture_id>/investments"): ("ok", "404", "ok", "ok", "ok"),
    ("GET", "/v1/ventures/<venture_id>/investments/summary"): ("ok", "404", "ok", "ok", "ok"),
    ("GET", "/v1/investments/summary"): ("ok", "ok", "ok", "ok", "ok"),
    ("GET", "/v1/ventures/<venture_id>/investments/export"): ("ok", "404", "ok", "ok", "ok"),
    ("GET", "/v1/investments/export"): ("ok", "ok", "ok", "ok", "ok"),
    ("PUT", "/v1/fx-rates/<currency>/<date>"): ("403", "403", "403", "403", "ok"),
    # The public register: anyone, with or without a key.
    ("GET", "/v1/public/ventures"): ANYONE,
    ("GET", "/v1/public/ventures/<venture_id>"): ANYONE,
    ("GET", "/v1/public/facilities"): ANYONE,
    ("GET", "/v1/public/facilities/<facility_id>"): ANYONE,
    ("GET", "/v1/public/licenses"): ANYONE,
    ("GET", "/v1/public/licenses/<license_id>"): ANYONE,
    # Certificates: the keyed one like the licence; the published keys and the public
    # certificate, its QR code and status, anyone.
    ("GET", "/.well-known/jvreg-keys.json"): ANYONE,
    ("GET", "/v1/licenses/<license_id>/certificate"): ("ok", "404", "ok", "ok", "ok"),
    ("GET", "/v1/public/licenses/<license_id>/certificate"): ANYONE,
    ("GET", "/v1/public/licenses/<license_id>/certificate.svg"): ANYONE,
    ("GET", "/v1/public/licenses/<license_id>/certificate/status"): ANYONE,
}


def expected(route: tuple[str, str], principal: str) -> str:
    outcomes = POLICY[route]
    if outcomes is ANYONE:
        return "ok"
    if principal in UNAUTHENTICATED:
        return "401"
    return outcomes[AUTHENTICATED.index(principal)]


def gateway_routes() -> list[tuple[str, str]]:
    """(method, URL rule) of every `api(...)` entrypoint of the gateway service. The web
    pages are signed in with a session cookie, not a key: their authorisation is
    tested in the browser and over HTTP by tests/e2e/test_web_pages.py."""
    routes = set()
    for _, function in inspect.getmembers(GatewayService, inspect.isfunction):
        for entrypoint in getattr(function, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, ApiEndpoint) and not isinstance(entrypoint, WebPage):
                routes.add((entrypoint.method, entrypoint.url))
    return sorted(routes, key=lambda route: (route[1], route[0]))


@dataclass
class Call:
    """How to call a route with real values. `fresh` names the path parameter that gets
    a resource of its own for each caller (the route changes it), so the order of the
    matrix does not matter; `probe` the resource a full list answer includes."""

    body: Callable[[dict], dict] | None = None
    query: Callable[[dict], dict] = lambda world: {}
    headers: dict = field(default_factory=dict)
    fresh: str | None = None
    probe: str | None = None
    # Path parameters taken from another resource of the world than their name's (a
    # fresh one too).
    resources: dict[str, str] = field(default_factory=dict)


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def registration(facility_id: str) -> dict:
    """An application each caller may make again: one product registration per product
    (a plant has one application per licence type, or per product, at a time): a
    strength of its own makes it another product."""
    return {
        "facility_id": facility_id,
        "type": "product_registration",
        "product_details": {
            "dosage_form": "tablet",
            "strength": {"value": str(uuid.uuid4().int % 10**9 + 1), "unit": "mcg"},
            "active_ingredients": [{"inn": "Matrixamide"}],
        },
    }


FLOW = {
    "type": "commitment",
    "partner": "Indus Pharma (Pvt) Ltd",
    "amount": "1000000.00",
    "currency": "PKR",
    "value_date": "2025-01-15",
}
WEBHOOK = {"url": "http://127.0.0.1:9/matrix", "event_types": ["license.revoked"]}

# Routes called without a body, query or fresh resource need no entry.
CALLS: dict[tuple[str, str], Call] = {
    ("POST", "/v1/api-keys"): Call(
        body=lambda world: {"role": "investor", "owner": unique("Matrix Created")}
    ),
    ("GET", "/v1/api-keys"): Call(probe="key_id"),
    ("DELETE", "/v1/api-keys/<key_id>"): Call(fresh="key_id"),
    ("POST", "/v1/api-keys/<key_id>/rotate"): Call(fresh="key_id"),
    ("POST", "/v1/ventures"): Call(body=lambda world: venture_body()),
    ("GET", "/v1/ventures"): Call(
        query=lambda world: {"q": world["venture_name"]}, probe="venture_id"
    ),
    ("PATCH", "/v1/ventures/<venture_id>"): Call(
        body=lambda world: {"description": "checked by the authorisation matrix"},
        headers={"If-Match": "*"},
        fresh="venture_id",
    ),
    ("POST", "/v1/ventures/<venture_id>/status"): Call(
        body=lambda world: {"to": "active", "reason": "DRAP site verification"},
        fresh="venture_id",
    ),
    ("POST", "/v1/ventures/<venture_id>/facilities"): Call(
        body=lambda world: {**PLANT, "name": unique("Matrix Plant")}
    ),
    ("GET", "/v1/facilities"): Call(
        query=lambda world: {"venture_id": world["venture_id"]}, probe="facility_id"
    ),
    ("POST", "/v1/licenses"): Call(body=lambda world: registration(world["facility_id"])),
    ("GET", "/v1/licenses"): Call(
        query=lambda world: {"facility_id": world["facility_id"]}, probe="license_id"
    ),
    ("POST", "/v1/licenses/<license_id>/transitions"): Call(
        body=lambda world: {"to": "under_review", "reason": "dossier complete"},
        fresh="license_id",
    ),
    ("POST", "/v1/licenses/<license_id>/renewal"): Call(
        fresh="license_id", resources={"license_id": "renewable_license_id"}
    ),
    ("POST", "/v1/subscriptions"): Call(body=lambda world: WEBHOOK),
    ("GET", "/v1/subscriptions"): Call(probe="subscription_id"),
    ("DELETE", "/v1/subscriptions/<subscription_id>"): Call(fresh="subscription_id"),
    ("POST", "/v1/ventures/<venture_id>/investments"): Call(body=lambda world: FLOW),
    ("GET", "/v1/ventures/<venture_id>/investments"): Call(probe="flow_id"),
    ("PUT", "/v1/fx-rates/<currency>/<date>"): Call(body=lambda world: {"usd_per_unit": "0.0036"}),
    **{
        ("GET", rule): Call(resources={"license_id": "granted_license_id"})
        for rule in (
            "/v1/licenses/<license_id>/certificate",
            "/v1/public/licenses/<license_id>/certificate",
            "/v1/public/licenses/<license_id>/certificate.svg",
            "/v1/public/licenses/<license_id>/certificate/status",
        )
    },
}

PATH_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


class Client:
    """One HTTP session for every caller (the key goes with each request), so the
    matrix holds few connections to the gateway."""

    def __init__(self, url: str, keys: dict[str, str | None]):
        self.url = url
        self.keys = keys
        self.session = requests.Session()

    def send(self, principal: str, method: str, path: str, **kwargs) -> requests.Response:
        key = self.keys[principal]
        headers = {
            **kwargs.pop("headers", {}),
            **({"Authorization": f"Bearer {key}"} if key else {}),
        }
        return self.session.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def created(self, principal: str, path: str, body: dict) -> dict:
        """POST until 201 while the registry answers 503 (a loaded machine: a service did
        not answer in time). Such a try may still have committed: a licence
        application's retry is then refused because that application is open, and the
        refusal names it."""
        deadline = time.monotonic() + 60
        answer = self.send(principal, "POST", path, json=body)
        while answer.status_code == 503 and time.monotonic() < deadline:
            eventlet.sleep(0.5)
            answer = self.send(principal, "POST", path, json=body)
            if answer.status_code == 409 and (earlier := answer.json().get("open_application")):
                return self.send(principal, "GET", f"{path}/{earlier}").json()
        assert answer.status_code == 201, answer.text
        return answer.json()

    def every_item(self, principal: str, path: str, params: dict, first: dict) -> list:
        items, cursor = list(first["items"]), first["next_cursor"]
        while cursor:
            page = self.send(principal, "GET", path, params={**params, "cursor": cursor}).json()
            items += page["items"]
            cursor = page["next_cursor"]
        return items


@pytest.fixture(scope="module")
def matrix_gateway(registry, tmp_path_factory):
    env = {
        **registry["env"],
        "JVREG_GATEWAY_PORT": str(free_port()),
        "JVREG_AUTH_FAILURE_LIMIT": "100000/minute",
    }
    stack = Stack(env, log_dir=tmp_path_factory.mktemp("matrix-gateway"), services=("gateway",))
    stack.start()
    try:
        stack.wait_healthy(60)
        yield stack.gateway_url
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def world(matrix_gateway, registry) -> tuple[Client, dict]:
    """The callers, and one of each resource owned by the owner investor's
    organisation (the subscription by the regulator's), with real ids."""
    client = Client(matrix_gateway, {"ops": registry["ops_key"], "anonymous": None})

    def new_key(role: str, owner: str, **expiry) -> dict:
        return client.created("ops", "/v1/api-keys", {"role": role, "owner": owner, **expiry})

    soon = datetime.now(UTC) + timedelta(seconds=2)
    expired = new_key("ops", unique("Matrix Ops"), expires_at=soon.isoformat())
    revoked = new_key("ops", unique("Matrix Ops"))
    assert client.send("ops", "DELETE", f"/v1/api-keys/{revoked['id']}").status_code == 200
    owner = unique("Matrix Owner")
    regulator_org = unique("Matrix Regulator")
    client.keys.update(
        {
            "unknown key": "jvk_" + secrets.token_urlsafe(32),
            "revoked key": revoked["key"],
            "expired key": expired["key"],
            "owner investor": new_key("investor", owner)["key"],
            "other investor": new_key("investor", unique("Matrix Other"))["key"],
            "regulator": new_key("regulator", regulator_org)["key"],
            "other regulator": new_key("regulator", unique("Matrix Other Regulator"))["key"],
        }
    )

    venture = client.created("owner investor", "/v1/ventures", venture_body())
    facility_path = f"/v1/ventures/{venture['id']}/facilities"
    facility = client.created("owner investor", facility_path, PLANT)
    application = {"facility_id": facility["id"], "type": "dml_formulation"}
    licence = client.created("owner investor", "/v1/licenses", application)
    in_two_weeks = (datetime.now(UTC) + timedelta(days=14)).date().isoformat()

    def granted_registration(**grant) -> str:
        """A product registration granted, with a registration number of its own."""
        granted = client.created("owner investor", "/v1/licenses", registration(facility["id"]))
        for step in (
            {"to": "under_review", "reason": "dossier complete"},
            {"to": "inspection_scheduled", "reason": "site visit", "inspection_date": in_two_weeks},
            {
                "to": "granted",
                "reason": "inspection satisfactory",
                "decision_ref": "DRAP/M/1",
                "registration_number": f"M{uuid.uuid4().hex[:12]}",
                **grant,
            },
        ):
            moved = client.send(
                "regulator", "POST", f"/v1/licenses/{granted['id']}/transitions", json=step
            )
            assert moved.status_code == 200, moved.text
        return granted["id"]

    def renewable() -> str:
        """A licence in the last 180 days of its validity (a renewal each caller may
        apply for)."""
        return granted_registration(
            valid_until=(datetime.now(UTC) + timedelta(days=100)).isoformat()
        )

    granted_id = granted_registration()
    flow = client.created("owner investor", f"/v1/ventures/{venture['id']}/investments", FLOW)
    subscription = client.created("regulator", "/v1/subscriptions", WEBHOOK)

    def fresh_venture() -> str:
        return client.created("owner investor", "/v1/ventures", venture_body())["id"]

    world = {
        "key_id": new_key("investor", owner)["id"],
        "venture_id": venture["id"],
        "venture_name": venture["name"],
        "facility_id": facility["id"],
        "license_id": licence["id"],
        "granted_license_id": granted_id,
        "renewable_license_id": granted_id,
        "flow_id": flow["id"],
        "subscription_id": subscription["id"],
        "currency": "PKR",
        "date": "2024-06-03",
        "asset": "swagger-ui.css",
        "fresh": {
            "key_id": lambda: new_key("investor", owner)["id"],
            "venture_id": fresh_venture,
            "license_id": lambda: client.created(
                "owner investor", "/v1/licenses", registration(facility["id"])
            )["id"],
            "renewable_license_id": renewable,
            "subscription_id": lambda: client.created("regulator", "/v1/subscriptions", WEBHOOK)[
                "id"
            ],
        },
    }

    def expired_yet() -> bool:
        return client.send("expired key", "GET", "/v1/ventures").status_code == 401

    wait_until(expired_yet, 10, "the short-lived key to expire")
    return client, world


def outcome_of(client: Client, route: tuple[str, str], principal: str, world: dict) -> str:
    method, rule = route
    call = CALLS.get(route, Call())
    values = {name: world[call.resources.get(name, name)] for name in PATH_PARAMETER.findall(rule)}
    if call.fresh:
        values[call.fresh] = world["fresh"][call.resources.get(call.fresh, call.fresh)]()
    path = PATH_PARAMETER.sub(lambda match: values[match.group(1)], rule)
    params = call.query(world)
    body = call.body(world) if call.body else None
    response = client.send(
        principal, method, path, params=params, json=body, headers=dict(call.headers)
    )
    if response.status_code in (401, 403, 404):
        return str(response.status_code)
    if not 200 <= response.status_code < 300:
        return f"{response.status_code}: {response.text[:200]}"
    if call.probe is None:
        return "ok"
    items = client.every_item(principal, path, params, response.json())
    return "ok" if any(item["id"] == world[call.probe] for item in items) else "hidden"


# Column headings of the printed matrix, ten characters at most.
COLUMN_LABELS = {
    **{principal: principal.removesuffix(" key") for principal in UNAUTHENTICATED},
    "owner investor": "owner",
    "other investor": "other inv",
    "regulator": "regulator",
    "other regulator": "other reg",
    "ops": "ops",
}


def matrix_text(routes, outcomes: dict, deviations: set) -> str:
    """Route × principal; a deviation reads `expected≠got`."""
    width = max(len(f"{method} {rule}") for method, rule in routes)
    header = " ".join(f"{COLUMN_LABELS[principal]:>10}" for principal in PRINCIPALS)
    lines = [f"{'route':<{width}} {header}"]
    for route in routes:
        cells = []
        for principal in PRINCIPALS:
            got = outcomes[route, principal]
            cell = (
                f"{expected(route, principal)}≠{got}" if (route, principal) in deviations else got
            )
            cells.append(f"{cell[:10]:>10}")
        lines.append(f"{route[0] + ' ' + route[1]:<{width}} " + " ".join(cells))
    details = [
        f"  {method} {rule} as {principal}: expected {expected((method, rule), principal)}, "
        f"got {outcomes[(method, rule), principal]}"
        for (method, rule), principal in sorted(deviations)
    ]
    return "\n".join(lines + [f"{len(deviations)} deviation(s):"] + details)


def test_every_route_has_a_policy_and_a_way_to_call_it():
    routes = set(gateway_routes())
    assert len(routes) > 20, routes  # the route table was read, not an empty guess
    assert routes - set(POLICY) == set(), "routes without an authorisation policy"
    assert set(POLICY) - routes == set(), "policies of routes the gateway no longer has"
    assert set(CALLS) - routes == set(), "calls of routes the gateway no longer has"


def test_every_route_answers_every_caller_as_the_policy_says(world):
    client, resources = world
    routes = [route for route in gateway_routes() if route in POLICY]
    cells = [(route, principal) for route in routes for principal in PRINCIPALS]
    pool = eventlet.GreenPool(8)
    got = pool.imap(lambda cell: outcome_of(client, *cell, resources), cells)
    outcomes = dict(zip(cells, got, strict=True))
    deviations = {cell for cell in cells if outcomes[cell] != expected(*cell)}
    assert not deviations, "\n" + matrix_text(routes, outcomes, deviations)


# Rotation is self-service for a key's organisation, but issues a new key: it must not
# give the caller more than ops gave it (found while building the matrix).


def test_rotation_gives_no_one_a_key_of_a_role_they_do_not_hold(world):
    client, _ = world
    owner = unique("Matrix Shared Name")
    investor = client.created("ops", "/v1/api-keys", {"role": "investor", "owner": owner})
    regulator = client.created("ops", "/v1/api-keys", {"role": "regulator", "owner": owner})
    client.keys[owner] = investor["key"]

    rotated = client.send(owner, "POST", f"/v1/api-keys/{regulator['id']}/rotate")
    assert rotated.status_code == 403, rotated.text
    assert "key" not in rotated.json()
    # Refused, it changed nothing: the regulator key still works.
    client.keys[f"{owner} regulator"] = regulator["key"]
    assert client.send(f"{owner} regulator", "GET", "/v1/subscriptions").status_code == 200


def test_an_organisation_cannot_revoke_its_keys_of_another_role(world):
    client, _ = world
    owner = unique("Matrix Shared Name")
    investor = client.created("ops", "/v1/api-keys", {"role": "investor", "owner": owner})
    regulator = client.created("ops", "/v1/api-keys", {"role": "regulator", "owner": owner})
    client.keys[owner] = investor["key"]
    client.keys[f"{owner} regulator"] = regulator["key"]

    revoked = client.send(owner, "DELETE", f"/v1/api-keys/{regulator['id']}")
    assert revoked.status_code == 403, revoked.text
    assert client.send(f"{owner} regulator", "GET", "/v1/subscriptions").status_code == 200


def test_rotation_by_its_organisation_does_not_outlive_the_key_ops_gave(world):
    client, _ = world
    body = {"role": "investor", "owner": unique("Matrix Expiring"), "expires_in_days": 30}
    old = client.created("ops", "/v1/api-keys", body)
    client.keys[old["id"]] = old["key"]

    longer = client.send(
        old["id"], "POST", f"/v1/api-keys/{old['id']}/rotate", json={"expires_in_days": 365}
    )
    assert longer.status_code == 403, longer.text
    assert [error["loc"] for error in longer.json()["errors"]] == [["body", "expires_in_days"]]
    assert client.send(old["id"], "GET", "/v1/ventures").status_code == 200

    rotated = client.send(old["id"], "POST", f"/v1/api-keys/{old['id']}/rotate")
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["expires_at"] == old["expires_at"]
    # Ops may give a rotated key a longer life.
    client.keys[rotated.json()["id"]] = rotated.json()["key"]
    by_ops = client.send(
        "ops",
        "POST",
        f"/v1/api-keys/{rotated.json()['id']}/rotate",
        json={"expires_in_days": 365},
    )
    assert by_ops.status_code == 201, by_ops.text
    assert by_ops.json()["expires_at"] > old["expires_at"]
