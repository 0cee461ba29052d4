"""200,000 events of history, stored the fastest honest way.

One round of real work goes through the running registry first (a venture, its
plant, a licence application taken through review and inspection to a grant, which
makes the plant operational: 7 events). Once every service has applied all of it,
every document it left in every service's database — aggregates, projections,
licence history, event logs, command keys, sent outbox records,
notification streams — is the template. The history is that template bulk-inserted
again and again as raw BSON, each copy with ids of its own: aggregate ids (`jv_`,
`fac_`, `lic_`), event ids, command keys and the venture's name (and so its unique
name key), each replaced by a string of the same length, so the documents are exactly
what the services write. API keys are not copied: they are not history. The benchmark
stores it with the services stopped and starts them again afterwards, as after a
restore."""

import re
import time
from collections.abc import Callable

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from ops.processes import wait_until

from support import PLANT, Api, created, inspection_date, venture_body

TEMPLATE_NAME = "Seed Venture 00000000"
# (pattern, how many characters at its end make a copy's own), on the BSON bytes.
AGGREGATE_ID = re.compile(rb"\b(?:jv|fac|lic)_[0-9a-f]{24}\b")
EVENT_ID = re.compile(rb"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
COMMAND_KEY = re.compile(rb"\breq:[0-9a-f]{32}\b")
VENTURE_NAME = re.compile(rb"(?<=[Vv]enture )00000000")
# Not copied: what is one per registry (keys, the note that the report totals were
# built), not one per round of work.
NOT_HISTORY = {"api_keys", "idempotency_records", "report_meta"}
BATCH = 5_000


def template_round(investor: Api, regulator: Api) -> None:
    venture = created(investor, "/v1/ventures", venture_body(TEMPLATE_NAME))
    plant = created(investor, f"/v1/ventures/{venture['id']}/facilities", PLANT)
    licence = created(
        investor, "/v1/licenses", {"facility_id": plant["id"], "type": "dml_formulation"}
    )
    for step in (
        {"to": "under_review", "reason": "application complete"},
        {
            "to": "inspection_scheduled",
            "reason": "site visit",
            "inspection_date": inspection_date(),
        },
        {"to": "granted", "reason": "plant found GMP-compliant", "decision_ref": "DRAP/BENCH/1"},
    ):
        response = regulator.post(f"/v1/licenses/{licence['id']}/transitions", json=step)
        assert response.status_code == 200, response.text


def registry_databases(client: MongoClient, prefix: str) -> list[str]:
    return [name for name in client.list_database_names() if name.startswith(f"{prefix}_")]


def settled(client: MongoClient, prefix: str) -> Callable[[], bool]:
    """True once no outbox record is pending and two looks a moment apart see the same
    documents: every event published and applied."""
    last: list[dict] = [{}]

    def check() -> bool:
        counts = {}
        for name in registry_databases(client, prefix):
            db = client[name]
            if db.outbox.count_documents({"status": {"$ne": "sent"}}, limit=1):
                return False
            for collection in db.list_collection_names():
                counts[f"{name}.{collection}"] = db[collection].estimated_document_count()
        same, last[0] = counts == last[0], counts
        return same

    return check


def snapshot(client: MongoClient, prefix: str) -> dict[str, list[bytes]]:
    """Every history document of the registry's databases, as BSON, by collection."""
    wait_until(settled(client, prefix), 60, "the template round applied everywhere", pause=1)
    as_stored = CodecOptions(document_class=RawBSONDocument)
    return {
        f"{name}.{collection}": [
            doc.raw for doc in client[name].get_collection(collection, as_stored).find()
        ]
        for name in registry_databases(client, prefix)
        for collection in client[name].list_collection_names()
        if collection not in NOT_HISTORY
    }


def copy_of(document: bytes, copy: int) -> bytes:
    """The document with the ids of copy number `copy`: same lengths, so still BSON."""
    tail8, tail12 = b"%08x" % copy, b"%012x" % copy
    document = AGGREGATE_ID.sub(lambda m: m[0][:-8] + tail8, document)
    document = EVENT_ID.sub(lambda m: m[0][:-12] + tail12, document)
    document = COMMAND_KEY.sub(lambda m: m[0][:-8] + tail8, document)
    return VENTURE_NAME.sub(tail8, document)


def store_history(client: MongoClient, template: dict[str, list[bytes]], events: int) -> dict:
    """Copies of the template until it holds `events` events (sent outbox records)."""
    per_round = sum(len(docs) for name, docs in template.items() if name.endswith(".outbox"))
    rounds = -(-events // per_round)
    started = time.perf_counter()
    documents = 0
    for name, docs in template.items():
        database, _, collection = name.partition(".")
        target = client[database][collection]
        batch: list[RawBSONDocument] = []
        for copy in range(1, rounds + 1):
            batch.extend(RawBSONDocument(copy_of(doc, copy)) for doc in docs)
            if len(batch) >= BATCH:
                target.insert_many(batch, ordered=False)
                documents += len(batch)
                batch = []
        if batch:
            target.insert_many(batch, ordered=False)
            documents += len(batch)
    return {
        "events": rounds * per_round,
        "rounds": rounds,
        "documents": documents,
        "seconds": round(time.perf_counter() - started, 1),
    }
