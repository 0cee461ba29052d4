"""Transactions that write the same document at once, against the real wire server:
each commits once, and the ones that met a write conflict backed off before trying
again (shared.mongo.transaction_backoff) instead of retrying in a storm."""

import uuid

import eventlet
import pytest

from shared import mongo
from shared.mongo import Repository, connect

WRITERS = 8


@pytest.fixture
def repository(backends):
    client = connect(backends["mongo_uri"])
    db = client[f"transactions_test_{uuid.uuid4().hex[:10]}"]
    Repository.ensure_indexes(db)
    db.counters.insert_one({"_id": "applications", "count": 0})
    yield Repository(client, db)
    client.drop_database(db.name)
    client.close()


def test_conflicting_transactions_each_commit_once_backing_off_between_tries(
    repository, monkeypatch
):
    backoffs: list[int] = []
    backoff = mongo.transaction_backoff
    monkeypatch.setattr(
        mongo, "transaction_backoff", lambda retry: backoffs.append(retry) or backoff(retry)
    )

    def apply(number: int) -> None:
        def work(session) -> None:
            repository.db.counters.update_one(
                {"_id": "applications"}, {"$inc": {"count": 1}}, session=session
            )
            eventlet.sleep(0.02)  # holds the counter while the others try
            repository.db.applications.insert_one({"_id": number}, session=session)

        repository.transaction(work)

    list(eventlet.GreenPool(WRITERS).imap(apply, range(WRITERS)))

    assert repository.db.counters.find_one({"_id": "applications"})["count"] == WRITERS
    assert sorted(doc["_id"] for doc in repository.db.applications.find()) == list(range(WRITERS))
    assert backoffs, "the writers met no write conflict: nothing was tested"
    assert min(backoffs) == 1
