"""`jvreg reconcile`: compare every projection with the service it was built from, and
every derived state with its source of truth, straight from the databases (read only).
Drift means an event was lost, applied twice or applied out of order: exit code 1."""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import click
from pymongo.database import Database

from services.facilities.domain import is_manufacturing_licence, status_from_licences
from shared.mongo import connect
from shared.settings import Settings

# Bookkeeping of a projection that is not part of what it mirrors.
PROJECTION_ONLY = {"_id", "sequence", "facility_count", "application_count"}


@dataclass
class Check:
    name: str
    compared: int = 0
    drift: list[dict] = field(default_factory=list)

    def differs(self, subject: str, what: str, projected, source) -> None:
        self.drift.append(
            {"subject": subject, "field": what, "projected": projected, "source": source}
        )


def mirrors(copy, original) -> bool:
    """Whether `copy` keeps `original` faithfully: every key it kept (at any depth)
    has the source's value; a projection may leave out what it does not need."""
    if isinstance(copy, dict) and isinstance(original, dict):
        return all(key in original and mirrors(value, original[key]) for key, value in copy.items())
    if isinstance(copy, list) and isinstance(original, list):
        return len(copy) == len(original) and all(map(mirrors, copy, original))
    return copy == original


def compare_projection(name: str, projection, source) -> Check:
    """Each document of `projection` mirrors the same-id document of `source` (the fields
    it keeps, and `sequence` = the source's `version`), and every source has one."""
    check = Check(name)
    mirrored = {doc["_id"]: doc for doc in projection.find()}
    for original in source.find():
        check.compared += 1
        subject = original["_id"]
        copy = mirrored.pop(subject, None)
        if copy is None:
            check.differs(subject, "*", None, "present")
            continue
        if copy.get("sequence") != original["version"]:
            check.differs(subject, "sequence", copy.get("sequence"), original["version"])
        for key in copy.keys() - PROJECTION_ONLY:
            if key in original and not mirrors(copy[key], original[key]):
                check.differs(subject, key, copy[key], original[key])
    for subject in mirrored:
        check.differs(subject, "*", "present", None)
    return check


def facility_status_follows_licences(facilities: Database, licensing: Database) -> Check:
    """A facility operates exactly while one of its manufacturing licences is granted;
    halted once it had one and has none; planned if it never had one."""
    check = Check("facility status follows its manufacturing licences")
    granted: dict[str, list[str]] = {}
    ever_granted: set[str] = set()
    for licence in licensing.licences.find():
        if not is_manufacturing_licence(licence["type"]):
            continue
        if licence["status"] == "granted":
            granted.setdefault(licence["facility_id"], []).append(licence["_id"])
        if licence["status"] in ("granted", "suspended", "revoked", "expired"):
            ever_granted.add(licence["facility_id"])
    for facility in facilities.facilities.find():
        check.compared += 1
        subject = facility["_id"]
        in_force = sorted(granted.get(subject, []))
        if sorted(facility.get("licenses_in_force", [])) != in_force:
            check.differs(subject, "licenses_in_force", facility.get("licenses_in_force"), in_force)
        if facility["status"] == "decommissioned":
            continue
        expected = status_from_licences(
            "halted" if subject in ever_granted else "planned", in_force
        )
        if facility["status"] != expected:
            check.differs(subject, "status", facility["status"], expected)
    return check


def licence_sequences_applied(facilities: Database, licensing: Database) -> Check:
    """The facilities service applied every manufacturing licence up to its last change."""
    check = Check("facilities applied every licence change")
    applied = {doc["_id"]: doc["sequence"] for doc in facilities.licence_sequences.find()}
    for licence in licensing.licences.find({"type": {"$regex": "^dml_"}}):
        check.compared += 1
        if applied.get(licence["_id"]) != licence["version"]:
            check.differs(
                licence["_id"], "sequence", applied.get(licence["_id"]), licence["version"]
            )
    return check


def reconcile(settings: Settings) -> list[Check]:
    client = connect(settings.mongo_uri)
    try:
        db = {
            name: client[settings.database_name(name)]
            for name in ("ventures", "facilities", "licensing", "investments")
        }
        return [
            compare_projection(
                "facilities' projection of ventures",
                db["facilities"].ventures,
                db["ventures"].ventures,
            ),
            compare_projection(
                "investments' projection of ventures",
                db["investments"].ventures,
                db["ventures"].ventures,
            ),
            compare_projection(
                "licensing's projection of facilities",
                db["licensing"].facilities,
                db["facilities"].facilities,
            ),
            facility_status_follows_licences(db["facilities"], db["licensing"]),
            licence_sequences_applied(db["facilities"], db["licensing"]),
        ]
    finally:
        client.close()


def report(checks: list[Check]) -> Iterator[str]:
    for check in checks:
        verdict = "ok" if not check.drift else f"DRIFT ({len(check.drift)})"
        yield f"{verdict:12} {check.name}: {check.compared} compared"
        for item in check.drift[:20]:
            yield (
                f"             {item['subject']}.{item['field']}: projected "
                f"{item['projected']!r}, source {item['source']!r}"
            )
        if len(check.drift) > 20:
            yield f"             … and {len(check.drift) - 20} more"


@click.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="the checks as one JSON document")
def reconcile_command(as_json: bool):
    """Compare projections with their sources; exit 1 on drift."""
    checks = reconcile(Settings())
    if as_json:
        click.echo(
            json.dumps(
                [{"check": c.name, "compared": c.compared, "drift": c.drift} for c in checks],
                default=str,
            )
        )
    else:
        for line in report(checks):
            click.echo(line)
    if any(check.drift for check in checks):
        raise SystemExit(1)
