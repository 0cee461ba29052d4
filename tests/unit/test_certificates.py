"""Licence certificates without a broker or database: canonical JSON, Ed25519 signing
and verification with rotated keys (shared/signing.py), what a certificate says of a
licence's history (services/gateway/certificates.py) and `jvreg verify` offline."""

import json
import stat
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from ops.main import cli
from ops.verify import CANNOT_CHECK, IN_FORCE, NOT_GENUINE
from services.gateway.certificates import (
    Certificate,
    certificate_payload,
    in_force,
    qr_code_svg,
)
from services.licensing.contract import LICENCE_EXAMPLE
from shared.errors import Conflict
from shared.signing import (
    KeyRing,
    NoSigningKey,
    NotGenuine,
    SigningKey,
    b64url,
    canonical,
    from_b64url,
    read_key_ring,
    verify,
    write_key_ring,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PAYLOAD = {"license_number": "lic_1", "plant": {"name": "Rashakai Plant 1"}, "product": None}


def ring_from(moment: datetime = T0) -> KeyRing:
    return KeyRing().rotated(moment)[0]


def signed(ring: KeyRing, at: datetime, payload: dict = PAYLOAD) -> dict:
    return ring.signing_key(at).sign(payload, at)


def flipped(signature: str) -> str:
    """The signature with one bit of its first byte flipped: always another signature
    (rewriting its last characters may change only base64's padding bits)."""
    raw = bytearray(from_b64url(signature))
    raw[0] ^= 0x01
    return b64url(bytes(raw))


def test_canonical_json_is_the_same_whatever_the_order_and_escapes():
    written = '{"b": [1, 2], "a": "Indus\\u2013Yangtze", "c": {"y": null, "x": true}}'
    assert canonical(json.loads(written)) == canonical(
        {"c": {"x": True, "y": None}, "a": "Indus–Yangtze", "b": [1, 2]}
    )
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_a_signed_document_verifies_and_names_when_it_was_signed():
    ring = ring_from()
    document = signed(ring, T0 + DAY)
    assert verify(document, ring.published(), T0 + 2 * DAY) == {
        **PAYLOAD,
        "signed_at": "2026-11-02T09:00:00.000Z",
    }
    # Through JSON, members reordered, it is the same document.
    reordered = json.loads(json.dumps(document, sort_keys=True, indent=1))
    assert verify(reordered, ring.published(), T0 + 2 * DAY)["license_number"] == "lic_1"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda doc: doc["payload"].update(license_number="lic_2"),
        lambda doc: doc["payload"]["plant"].update(name="Rashakai Plant 2"),
        lambda doc: doc["payload"].update(valid_until="2040-01-01T00:00:00.000Z"),
        lambda doc: doc["payload"].update(signed_at="2026-11-02T09:00:00.001Z"),
        lambda doc: doc.update(signature=flipped(doc["signature"])),
    ],
)
def test_a_tampered_document_is_not_genuine(tamper):
    ring = ring_from()
    document = signed(ring, T0 + DAY)
    tamper(document)
    with pytest.raises(NotGenuine, match="altered"):
        verify(document, ring.published(), T0 + 2 * DAY)


def test_a_document_signed_by_another_key_under_a_published_kid_is_not_genuine():
    ring = ring_from()
    impostor = SigningKey.generate(T0).model_copy(update={"kid": ring.keys[0].kid})
    with pytest.raises(NotGenuine, match="altered"):
        verify(impostor.sign(PAYLOAD, T0 + DAY), ring.published(), T0 + DAY)


def test_a_document_signed_by_an_unknown_key_is_not_genuine():
    ring, other = ring_from(), ring_from()
    with pytest.raises(NotGenuine, match="not among the published keys"):
        verify(signed(other, T0 + DAY), ring.published(), T0 + DAY)


def test_a_signature_outside_its_keys_window_is_not_genuine():
    ring = ring_from(T0)
    key = ring.keys[0]
    with pytest.raises(NotGenuine, match="outside the window"):
        verify(key.sign(PAYLOAD, T0 - DAY), ring.published(), T0 + DAY)
    retired, _ = ring.rotated(T0 + 10 * DAY)
    old = retired.keys[0]
    with pytest.raises(NotGenuine, match="outside the window"):  # a retired key signing on
        verify(old.sign(PAYLOAD, T0 + 11 * DAY), retired.published(), T0 + 12 * DAY)
    with pytest.raises(NotGenuine, match="in the future"):
        verify(key.sign(PAYLOAD, T0 + 2 * DAY), ring.published(), T0 + DAY)


def test_rotation_signs_with_the_new_key_and_what_the_old_one_signed_still_verifies():
    ring = ring_from(T0)
    before = signed(ring, T0 + DAY)
    rotated, new = ring.rotated(T0 + 10 * DAY)
    old = rotated.keys[0]
    assert (old.not_after, new.not_before, new.not_after) == (T0 + 10 * DAY, T0 + 10 * DAY, None)
    assert rotated.signing_key(T0 + 9 * DAY).kid == old.kid
    assert rotated.signing_key(T0 + 10 * DAY).kid == new.kid
    after = signed(rotated, T0 + 11 * DAY)
    keys = rotated.published()
    assert [key.kid for key in keys.keys] == [old.kid, new.kid]
    assert {"kty", "crv", "x", "kid", "not_before", "not_after"} <= keys.keys[0].model_dump().keys()
    assert not any("d" in key for key in keys.model_dump()["keys"])  # no private key
    assert verify(before, keys, T0 + 20 * DAY)["signed_at"] == "2026-11-02T09:00:00.000Z"
    assert verify(after, keys, T0 + 20 * DAY)["signed_at"] == "2026-11-12T09:00:00.000Z"
    # Rotated again: the second key retires too, the first keeps its window.
    third_ring, third = rotated.rotated(T0 + 30 * DAY)
    assert [key.not_after for key in third_ring.keys] == [T0 + 10 * DAY, T0 + 30 * DAY, None]
    assert verify(before, third_ring.published(), T0 + 40 * DAY)
    # A compromised key withdrawn: nothing it signed verifies any more.
    with pytest.raises(NotGenuine, match="not among the published keys"):
        verify(after, third_ring.without(new.kid).published(), T0 + 40 * DAY)
    assert third_ring.signing_key(T0 + 31 * DAY).kid == third.kid


def test_a_key_published_ahead_signs_only_from_its_moment():
    ring = ring_from(T0)
    ahead, new = ring.rotated(T0 + 7 * DAY)
    assert new.kid in {key.kid for key in ahead.published().keys}
    assert ahead.signing_key(T0 + DAY).kid == ring.keys[0].kid
    with pytest.raises(NoSigningKey):
        KeyRing().signing_key(T0)


def test_the_key_ring_file_is_private_and_read_again_when_it_changes(tmp_path):
    path = tmp_path / "keys" / "signing-keys.json"
    assert read_key_ring(path) is None
    ring = ring_from()
    write_key_ring(path, ring)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_ring(path) == ring
    rotated, _ = ring.rotated(T0 + DAY)
    write_key_ring(path, rotated)
    assert read_key_ring(path) == rotated
    assert ring.keys[0].d not in repr(rotated)  # the private key is not in a log line


LICENCE = {
    **LICENCE_EXAMPLE,
    "facility_id": "fac_6651",
    "venture_id": "jv_6650",
    "type": "product_registration",
    "product": "Amoxicillin 500 mg capsules",
    "status": "granted",
    "valid_until": "2032-03-01T23:59:59.999Z",
}
FACILITY = {"id": "fac_6651", "name": "Rashakai Formulation Plant 1", "city": "Nowshera"}
VENTURE = {"id": "jv_6650", "name": "Indus-Yangtze API Works", "focal_points": ["private"]}


def entry(event: str, time: str, **fields) -> dict:
    return {"event": event, "time": time, "fields": fields}


HISTORY = [
    entry("license.submitted", "2026-11-02T06:40:00Z"),
    entry(
        "license.granted",
        "2026-12-14T08:15:00Z",
        decision_ref="DRAP/LIC/2026/0412",
        valid_until="2031-12-14T23:59:59.999Z",
    ),
    entry("license.suspended", "2027-01-10T08:00:00Z", decision_ref="DRAP/LIC/2027/0007"),
    entry("license.reinstated", "2027-02-10T08:00:00Z", decision_ref="DRAP/LIC/2027/0031"),
    entry(
        "license.renewed",
        "2027-03-01T10:00:00Z",
        decision_ref="DRAP/LIC/2027/0102",
        valid_until="2032-03-01T23:59:59.999Z",
    ),
]


def test_a_certificate_states_the_latest_issue_of_the_licence_and_nothing_private():
    payload = certificate_payload(LICENCE, HISTORY, FACILITY, VENTURE)
    assert payload == {
        "format": "jvreg-licence-certificate/1",
        "issuer": "JV Pharma Registry",
        "license_number": LICENCE["id"],
        "license_type": "product_registration",
        "product": "Amoxicillin 500 mg capsules",
        "plant": {"id": "fac_6651", "name": "Rashakai Formulation Plant 1"},
        "venture": {"id": "jv_6650", "name": "Indus-Yangtze API Works"},
        "valid_from": "2026-12-14T08:15:00.000Z",
        "valid_until": "2032-03-01T23:59:59.999Z",
        "decision_ref": "DRAP/LIC/2027/0102",
        "issued_at": "2027-03-01T10:00:00.000Z",
    }
    # Before the renewal: the grant's.
    payload = certificate_payload(LICENCE, HISTORY[:3], FACILITY, VENTURE)
    assert (payload["decision_ref"], payload["valid_until"]) == (
        "DRAP/LIC/2026/0412",
        "2031-12-14T23:59:59.999Z",
    )
    ring = ring_from()
    Certificate.model_validate(signed(ring, T0, payload))  # the documented shape


def test_a_licence_never_granted_has_no_certificate():
    with pytest.raises(Conflict, match="never been granted") as refused:
        certificate_payload({**LICENCE, "status": "submitted"}, HISTORY[:1], FACILITY, VENTURE)
    assert refused.value.extra == {"current": "submitted"}


@pytest.mark.parametrize(
    ("status", "valid_until", "expected"),
    [
        ("granted", "2032-03-01T23:59:59.999Z", True),
        ("granted", "2026-10-31T23:59:59.999Z", False),  # past, not yet swept
        ("suspended", "2032-03-01T23:59:59.999Z", False),
        ("revoked", "2032-03-01T23:59:59.999Z", False),
        ("expired", "2026-10-31T23:59:59.999Z", False),
    ],
)
def test_in_force_means_granted_and_within_its_validity(status, valid_until, expected):
    answer = in_force({**LICENCE, "status": status, "valid_until": valid_until}, T0)
    assert (answer.status, answer.in_force, answer.checked_at) == (status, expected, T0)


def test_the_qr_code_is_an_svg_naming_its_licence():
    ring = ring_from()
    certificate = signed(ring, T0, certificate_payload(LICENCE, HISTORY, FACILITY, VENTURE))
    svg = qr_code_svg(certificate, "Certificate of licence lic_6652").decode()
    assert svg.startswith("<svg") and "<title>Certificate of licence lic_6652</title>" in svg


def test_jvreg_verify_offline_says_genuine_or_not_with_its_exit_code(tmp_path):
    ring = ring_from(datetime.now(UTC) - DAY)
    keys = tmp_path / "keys.json"
    keys.write_text(ring.published().model_dump_json())
    now = datetime.now(UTC)
    document = signed(ring, now, certificate_payload(LICENCE, HISTORY, FACILITY, VENTURE))
    certificate = tmp_path / "certificate.json"
    certificate.write_text(json.dumps(document))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, ["verify", str(certificate), "--keys", str(keys), *args])

    result = run("--offline")
    assert result.exit_code == IN_FORCE, result.output
    assert result.output.startswith("GENUINE: signed by the registry's key jvreg-")
    assert "Indus-Yangtze API Works (jv_6650)" in result.output
    assert "not asked (--offline)" in result.output

    document["payload"]["valid_until"] = "2040-03-01T23:59:59.999Z"
    certificate.write_text(json.dumps(document))
    result = run("--offline")
    assert result.exit_code == NOT_GENUINE
    assert result.output.startswith("NOT GENUINE: the signature does not match")

    result = run("--offline", "--keys", str(tmp_path / "missing.json"))
    assert result.exit_code == CANNOT_CHECK and "CANNOT CHECK" in result.output
