"""`jvreg seed`: fill a registry with realistic demo data through the gateway's HTTP API,
as its users would: Pakistan–China ventures in the sectors of the April 2025 health
accord (APIs, formulations, traditional Chinese medicine, telemedicine, devices,
vaccines), a plant each in a special economic zone, DRAP licences at every stage of
their lifecycle, and investment flows in PKR, CNY and USD with the FX rates to report
them.

Every request carries an Idempotency-Key named after what it does, and every body is
the same on every run (fixed dates, amounts drawn from the venture's number), so a
rerun with the same API keys gets the first answers replayed and duplicates nothing.
The gateway keeps those answers 24 hours (README, "Retries are safe"); later, the
services still refuse to apply a command twice (409), so reseed a fresh registry.
The investor's and regulator's keys are created through the API with the ops key on
the first run and kept in a keys file (idempotency is per API key)."""

import json
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import requests
from rich.progress import Progress

from ops.dev import VAR
from ops.status import default_ops_key
from services.licensing.domain import TRANSITIONS, required_fields
from shared.settings import Settings

INVESTOR_OWNER = "Pak-China Health Investment Group (demo)"
REGULATOR_OWNER = "DRAP Licensing Division (demo)"
KEY_PREFIX = "jvreg-seed"
# Answers worth waiting for and sending again with the same key: a service still
# learning of what was just created (read your writes), or the first try still running.
RETRY_STATUSES = {409, 503}
RETRIES = 10

# USD per unit on the first day of each half of 2025 (State Bank of Pakistan and PBoC
# reference rates, rounded): every flow below falls on or after one of them.
FX_RATES = {
    ("PKR", "2025-01-01"): "0.0036",
    ("PKR", "2025-07-01"): "0.00353",
    ("CNY", "2025-01-01"): "0.1370",
    ("CNY", "2025-07-01"): "0.1394",
}


@dataclass(frozen=True)
class Venture:
    """A venture of the demo, with its plant and what the plant makes."""

    name: str
    sector: str
    province: str
    sez: str
    city: str
    description: str
    pakistani: tuple[str, str, str]  # name, kind, equity
    chinese: tuple[str, str, str]
    focal_point: tuple[str, str]  # name, email
    plant: str
    plant_kind: str
    capacity: tuple[str, str]  # value, unit
    licences: tuple[str, ...]  # the types its plant applies for, as its kind allows
    product: dict | None  # what its product registration registers (product_details)


VENTURES = (
    Venture(
        "Indus-Yangtze API Works", "api_manufacturing", "khyber_pakhtunkhwa", "Rashakai SEZ",
        "Nowshera", "Local production of paracetamol and amoxicillin APIs for Pakistani "
        "formulators, replacing imported raw materials",
        ("Indus Pharma (Pvt) Ltd", "private_company", "51"),
        ("Zhejiang Yangtze Pharmaceutical Co.", "private_company", "49"),
        ("Ayesha Khan", "ayesha.khan@induspharma.example"),
        "Rashakai API Plant", "api_plant", ("1200", "tonnes API/year"),
        ("dml_basic", "gmp_certificate", "dml_experimental"),
        {
            "dosage_form": "tablet",
            "strength": {"value": "500", "unit": "mg"},
            "active_ingredients": [{"inn": "Paracetamol"}],
        },
    ),
    Venture(
        "Ravi-Huaxia Formulations", "finished_formulations", "punjab",
        "Allama Iqbal Industrial City", "Faisalabad",
        "Tablets and capsules of essential antibiotics and analgesics",
        ("Ravi Pharmaceuticals Ltd", "private_company", "60"),
        ("Huaxia Medicine Group", "private_company", "40"),
        ("Bilal Chaudhry", "bilal.chaudhry@ravipharma.example"),
        "Faisalabad Formulation Plant", "formulation_plant", ("250000000", "tablets/year"),
        ("dml_formulation", "product_registration", "gmp_certificate"),
        {
            "dosage_form": "capsule",
            "strength": {"value": "500", "unit": "mg"},
            "active_ingredients": [{"inn": "Amoxicillin"}],
        },
    ),
    Venture(
        "Karakoram Herbal TCM", "traditional_chinese_medicine", "gilgit_baltistan",
        "Moqpondass SEZ", "Gilgit",
        "Traditional Chinese medicine granules from herbs grown in Gilgit-Baltistan",
        ("Karakoram Herbal Co.", "private_company", "55"),
        ("Tongren Herbal Medicine Co.", "private_company", "45"),
        ("Sadia Baig", "sadia.baig@karakoramherbal.example"),
        "Moqpondass TCM Granule Plant", "tcm_plant", ("500", "tonnes granules/year"),
        ("dml_formulation", "product_registration", "gmp_certificate"),
        {
            "dosage_form": "granules",
            "strength": {"value": "10", "unit": "g"},
            "active_ingredients": [{"inn": "Astragalus root extract"}],
        },
    ),
    Venture(
        "Sehat-Link Telemedicine", "telemedicine", "islamabad_capital_territory",
        "ICT Model Industrial Zone", "Islamabad",
        "Telemedicine hub linking district hospitals to specialists, with remote ECG",
        ("Sehat Digital (Pvt) Ltd", "private_company", "50"),
        ("Shenzhen Yunyi Health Technology Co.", "private_company", "50"),
        ("Omar Farooq", "omar.farooq@sehatdigital.example"),
        "Islamabad Telemedicine Hub", "telemedicine_hub", ("400", "consultations/day"),
        (), None,  # DRAP licenses no telemedicine hub
    ),
    Venture(
        "Dhabeji Biologicals", "biologics_vaccines", "sindh", "Dhabeji SEZ", "Thatta",
        "Fill and finish of vaccines, with technology transfer for local antigen production",
        ("Sindh Vaccine Development Authority", "government_body", "51"),
        ("Hubei Changjiang Biologicals Co.", "state_owned_enterprise", "49"),
        ("Zainab Memon", "zainab.memon@svda.example"),
        "Dhabeji Vaccine Plant", "vaccine_plant", ("20000000", "doses/year"),
        ("dml_formulation", "product_registration", "gmp_certificate"),
        {
            "dosage_form": "injection",
            "strength": {"value": "40", "unit": "U"},
            "active_ingredients": [{"inn": "Inactivated poliomyelitis vaccine"}],
        },
    ),
    Venture(
        "Bostan-Pengcheng Medical Devices", "medical_devices", "balochistan", "Bostan SEZ",
        "Quetta", "Infusion pumps and patient monitors for public hospitals",
        ("Bolan Medical Devices (Pvt) Ltd", "private_company", "52"),
        ("Shenzhen Pengcheng Medical Devices Co.", "private_company", "48"),
        ("Naseebullah Kakar", "naseebullah.kakar@bolanmed.example"),
        "Bostan Device Assembly Plant", "device_plant", ("30000", "devices/year"),
        (), None,  # nor device plants under these rules
    ),
    Venture(
        "Hattar-Taishan Antibiotics", "api_manufacturing", "khyber_pakhtunkhwa", "Hattar SEZ",
        "Haripur", "Semi-synthesis of cephalosporin APIs from imported intermediates",
        ("Hazara Pharma Ltd", "private_company", "51"),
        ("Shandong Taishan Antibiotics Co.", "private_company", "49"),
        ("Imran Jadoon", "imran.jadoon@hazarapharma.example"),
        "Hattar Cephalosporin Plant", "api_plant", ("300", "tonnes API/year"),
        ("dml_semi_basic", "gmp_certificate"), None,
    ),
    Venture(
        "Mirpur-Jinhe Formulations", "finished_formulations", "azad_jammu_and_kashmir",
        "Mirpur Industrial Zone", "Mirpur", "Oral rehydration salts, syrups and insulin pens",
        ("Kashmir Pharma (Pvt) Ltd", "private_company", "65"),
        ("Tianjin Jinhe Pharmaceutical Co.", "private_company", "35"),
        ("Hina Rathore", "hina.rathore@kashmirpharma.example"),
        "Mirpur Liquids Plant", "formulation_plant", ("40000000", "bottles/year"),
        ("dml_formulation", "product_registration", "dml_repacking"),
        {
            "dosage_form": "sachet",
            "strength": {"value": "20.5", "unit": "g"},
            "active_ingredients": [
                {"inn": "Glucose", "strength": {"value": "13.5", "unit": "g"}},
                {"inn": "Sodium chloride", "strength": {"value": "2.6", "unit": "g"}},
                {"inn": "Sodium citrate", "strength": {"value": "2.9", "unit": "g"}},
                {"inn": "Potassium chloride", "strength": {"value": "1.5", "unit": "g"}},
            ],
        },
    ),
)  # fmt: skip

# The steps that bring a licence to each stage of DRAP's lifecycle (docs/licensing.md).
REVIEW = {"to": "under_review", "reason": "dossier complete"}
INSPECTION = {"to": "inspection_scheduled", "reason": "site inspection"}
STAGES: dict[str, tuple[dict, ...]] = {
    "granted": (REVIEW, INSPECTION, {"to": "granted", "reason": "inspection satisfactory"}),
    "under_review": (REVIEW,),
    "submitted": (),
    "inspection_scheduled": (REVIEW, INSPECTION),
    "suspended": (
        REVIEW,
        INSPECTION,
        {"to": "granted", "reason": "inspection satisfactory"},
        {"to": "suspended", "reason": "stability data of two batches out of specification"},
    ),
    "rejected": (
        REVIEW,
        INSPECTION,
        {"to": "rejected", "reason": "clean-room classification not met"},
    ),
    "deferred": (REVIEW, {"to": "deferred", "reason": "awaiting the partner's GMP audit report"}),
}


def venture_of(number: int) -> Venture:
    """The `number`th venture of the demo: the list over and over, each round's names
    numbered (names are unique)."""
    template = VENTURES[number % len(VENTURES)]
    round_ = number // len(VENTURES) + 1
    if round_ == 1:
        return template
    return replace(template, name=f"{template.name} {round_}", plant=f"{template.plant} {round_}")


def venture_body(venture: Venture) -> dict:
    def partner(party: tuple[str, str, str], country: str) -> dict:
        return {"name": party[0], "country": country, "kind": party[1], "equity_pct": party[2]}

    return {
        "name": venture.name,
        "sector": venture.sector,
        "province": venture.province,
        "sez": venture.sez,
        "description": venture.description,
        "partners": [partner(venture.pakistani, "PK"), partner(venture.chinese, "CN")],
        "focal_points": [
            {"name": venture.focal_point[0], "email": venture.focal_point[1], "country": "PK"}
        ],
    }


def plant_body(venture: Venture, number: int) -> dict:
    return {
        "name": venture.plant,
        "kind": venture.plant_kind,
        "address": f"Plot {14 + number}, {venture.sez}",
        "city": venture.city,
        "province": venture.province,
        "sez": venture.sez,
        "capacity": {"value": venture.capacity[0], "unit": venture.capacity[1]},
    }


def licence_body(venture: Venture, facility_id: str, licence_type: str) -> dict:
    body = {"facility_id": facility_id, "type": licence_type}
    if licence_type != "product_registration":
        return body
    return body | {"product_details": venture.product}


def first_licence(number: int) -> int:
    """How many licences the ventures before the `number`th have: its first licence's
    number, which fixes the stage of each (they take the stages in turn)."""
    return sum(len(venture_of(before).licences) for before in range(number))


# The transition of each step's target (the licensing rules'): the seed's steps to
# `granted` are grants after an inspection, never reinstatements.
STEP_TRANSITIONS = {t.to: t for t in TRANSITIONS if not t.automatic and t.event != "reinstated"}


def transition_body(
    step: dict, licence_number: int, step_number: int, licence_type: str = "dml_basic"
) -> dict:
    """A step with the fields its transition needs, fixed by the licence's number."""
    fields = {
        "inspection_date": f"2026-{1 + licence_number % 12:02d}-{10 + step_number:02d}",
        "decision_ref": f"DRAP/LIC/2026/{1000 + licence_number * 10 + step_number:04d}",
        "registration_number": f"{100000 + licence_number:06d}",
    }
    needed = required_fields(licence_type, STEP_TRANSITIONS[step["to"]])
    return {**step, **{name: fields[name] for name in needed}}


def flow_bodies(venture: Venture, number: int) -> list[tuple[str, dict]]:
    """Commitments and part disbursed of each partner: the Pakistani one's in rupees, the
    Chinese one's in yuan and in dollars."""
    pakistani, chinese = venture.pakistani[0], venture.chinese[0]
    flows = []
    for currency, partner, committed, share in (
        ("PKR", pakistani, Decimal(500_000_000 + 25_000_000 * number), Decimal("0.4")),
        ("CNY", chinese, Decimal(12_000_000 + 500_000 * number), Decimal("0.3")),
        ("USD", chinese, Decimal(2_000_000 + 100_000 * number), Decimal("0.25")),
    ):
        for kind, amount, day in (
            ("commitment", committed, "2025-02-10"),
            ("disbursement", (committed * share).quantize(Decimal("0.01")), "2025-08-20"),
        ):
            body = {
                "type": kind,
                "partner": partner,
                "amount": f"{amount:.2f}",
                "currency": currency,
                "value_date": day,
                "reference": f"{venture.name[:40]} {kind} {currency} {day}",
            }
            flows.append((f"{kind}-{currency}", body))
    return flows


class Gateway:
    """The gateway's HTTP API, each request as one of the seed's callers."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.http = requests.Session()

    def send(self, key: str, method: str, path: str, body: dict | None, name: str) -> Any:
        """Send a command under the Idempotency-Key `name`, again after a 503 or a 409
        in use; any other refusal stops the seed, naming the step."""
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"{KEY_PREFIX}:{name}"}
        for _ in range(RETRIES):
            response = self.http.request(
                method, self.url + path, json=body, headers=headers, timeout=30
            )
            if response.status_code < 300:
                return response.json() if response.content else None
            if response.status_code not in RETRY_STATUSES or "Retry-After" not in response.headers:
                break
            time.sleep(float(response.headers["Retry-After"]))
        raise click.ClickException(
            f"{method} {path} ({name}) answered {response.status_code}: {response.text[:500]}"
        )

    def new_key(self, ops_key: str, role: str, owner: str) -> str:
        """A key made once (its answer's secret is never replayed: no Idempotency-Key)."""
        response = self.http.post(
            f"{self.url}/v1/api-keys",
            json={"role": role, "owner": owner},
            headers={"Authorization": f"Bearer {ops_key}"},
            timeout=30,
        )
        if response.status_code != 201:
            raise click.ClickException(
                f"could not create the {role}'s key: {response.status_code} {response.text[:300]}"
            )
        return response.json()["key"]


def seed_keys(gateway: Gateway, ops_key: str, keys_file: Path) -> dict[str, str]:
    """The investor's and regulator's keys of the seed: those kept in `keys_file`,
    else new ones, kept there for the next run."""
    if keys_file.exists():
        return json.loads(keys_file.read_text())
    keys = {
        "investor": gateway.new_key(ops_key, "investor", INVESTOR_OWNER),
        "regulator": gateway.new_key(ops_key, "regulator", REGULATOR_OWNER),
    }
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text(json.dumps(keys, indent=2) + "\n")
    keys_file.chmod(0o600)
    return keys


def seed_venture(gateway: Gateway, keys: dict[str, str], number: int) -> None:
    """One venture with its plant, its licences at their stages and six flows; the
    regulator activates three ventures of four (the fourth stays registered)."""
    investor, regulator = keys["investor"], keys["regulator"]
    venture = venture_of(number)
    step = f"venture-{number}"
    created = gateway.send(investor, "POST", "/v1/ventures", venture_body(venture), step)
    venture_id = created["id"]
    plant = gateway.send(
        investor,
        "POST",
        f"/v1/ventures/{venture_id}/facilities",
        plant_body(venture, number),
        f"{step}/plant",
    )
    stages = list(STAGES)
    for licence_number, licence_type in enumerate(venture.licences, first_licence(number)):
        body = licence_body(venture, plant["id"], licence_type)
        licence = gateway.send(investor, "POST", "/v1/licenses", body, f"{step}/{licence_type}")
        stage = stages[licence_number % len(stages)]
        for step_number, transition in enumerate(STAGES[stage]):
            gateway.send(
                regulator,
                "POST",
                f"/v1/licenses/{licence['id']}/transitions",
                transition_body(transition, licence_number, step_number, licence_type),
                f"{step}/{licence_type}/{step_number}-{transition['to']}",
            )
    for name, body in flow_bodies(venture, number):
        path = f"/v1/ventures/{venture_id}/investments"
        gateway.send(investor, "POST", path, body, f"{step}/{name}")
    if number % 4 != 3:
        activation = {"to": "active", "reason": "DRAP site verification completed"}
        path = f"/v1/ventures/{venture_id}/status"
        gateway.send(regulator, "POST", path, activation, f"{step}/active")


@click.command()
@click.option(
    "--ventures",
    "count",
    type=click.IntRange(1, 10_000),
    default=8,
    show_default=True,
    help="how many ventures (the first N of the same list on every run)",
)
@click.option("--url", default=None, help="the gateway (default: 127.0.0.1:JVREG_GATEWAY_PORT)")
@click.option("--ops-key", default=None, help="ops API key (default: JVREG_OPS_KEY, var/ops-key)")
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=VAR / "seed-keys.json",
    show_default=True,
    help="the seed's investor and regulator keys, made on the first run",
)
def seed(count: int, url: str | None, ops_key: str | None, keys_file: Path):
    """Fill the registry with demo ventures, plants, licences at every stage and flows
    in PKR, CNY and USD, through the HTTP API; a rerun duplicates nothing."""
    url = url or f"http://127.0.0.1:{Settings().gateway_port}"
    ops_key = ops_key or default_ops_key()
    if not ops_key:
        raise click.UsageError("give an ops API key with --ops-key or JVREG_OPS_KEY")
    gateway = Gateway(url)
    keys = seed_keys(gateway, ops_key, keys_file)
    with Progress() as progress:
        rates = progress.add_task("FX rates", total=len(FX_RATES))
        for (currency, day), rate in FX_RATES.items():
            path = f"/v1/fx-rates/{currency}/{day}"
            gateway.send(ops_key, "PUT", path, {"usd_per_unit": rate}, f"fx-{currency}-{day}")
            progress.advance(rates)
        ventures = progress.add_task("ventures", total=count)
        for number in range(count):
            seed_venture(gateway, keys, number)
            progress.advance(ventures)
    click.echo(
        f"seeded {count} venture(s) with a plant each, {first_licence(count)} licences and "
        f"{6 * count} flows; investor {INVESTOR_OWNER!r}, regulator {REGULATOR_OWNER!r} "
        f"(keys in {keys_file})"
    )
