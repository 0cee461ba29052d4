"""Bookkeeping is deleted by the hour it falls due in (shared.pruning), not by a TTL
index, which the embedded database serves by walking the whole collection every minute."""

import uuid
from datetime import timedelta

import pytest
from nameko.rpc import rpc

from ops.processes import wait_until
from shared.clock import utcnow
from shared.mongo import COMMAND_KEY_LIFETIME, COMMANDS, MongoStore, Repository, connect
from shared.pruning import PRUNE_HOUR, Pruning, due_hour
from shared.settings import Settings


@pytest.fixture
def db(backends):
    client = connect(backends["mongo_uri"])
    db = client[f"pruning_test_{uuid.uuid4().hex[:10]}"]
    yield db
    client.drop_database(db.name)
    client.close()


def test_a_record_is_due_in_the_first_whole_hour_after_it_expires():
    expires = utcnow().replace(hour=10, minute=30, second=5)
    assert due_hour(expires) == expires.replace(hour=11, minute=0, second=0, microsecond=0)


def test_command_keys_carry_their_prune_hour_and_no_ttl_index(db):
    # A database from before: command keys expired by a TTL index on `at`.
    db[COMMANDS].create_index("at", expireAfterSeconds=60)
    Repository.ensure_indexes(db)
    assert "at_1" not in db[COMMANDS].index_information()

    Repository(db.client, db, command_key="register:abc").transaction(lambda session: None)
    key = db[COMMANDS].find_one({"_id": "register:abc"})
    assert key[PRUNE_HOUR] == due_hour(key["at"] + COMMAND_KEY_LIFETIME)

    pruning = Pruning(db[COMMANDS])
    assert pruning.prune_all(key["at"] + COMMAND_KEY_LIFETIME - timedelta(minutes=1)) == 0
    assert pruning.prune_all(key["at"] + COMMAND_KEY_LIFETIME + timedelta(hours=1)) == 1
    assert db[COMMANDS].count_documents({}) == 0


def test_pruning_goes_a_batch_at_a_time_and_leaves_what_is_not_due(db):
    Pruning.ensure_index(db.things)
    now = utcnow()
    db.things.insert_many(
        [{"_id": n, PRUNE_HOUR: due_hour(now - timedelta(hours=2))} for n in range(450)]
        + [{"_id": "later", PRUNE_HOUR: due_hour(now + timedelta(hours=1))}, {"_id": "kept"}]
    )
    pruning = Pruning(db.things)
    assert pruning.prune() == 200
    assert pruning.prune_all() == 250
    assert sorted(doc["_id"] for doc in db.things.find()) == ["kept", "later"]


class PrunedService:
    name = "pruned"
    store = MongoStore(Repository)

    @rpc
    def ping(self):
        return True


def test_a_service_store_prunes_its_bookkeeping_when_it_starts(
    service_config, container_factory, backends
):
    client = connect(backends["mongo_uri"])
    db = client[Settings.from_config(service_config).database_name(PrunedService.name)]
    expired = due_hour(utcnow() - timedelta(hours=3))
    db[COMMANDS].insert_one({"_id": "old", "at": utcnow(), PRUNE_HOUR: expired})
    db.outbox.insert_one({"_id": "sent long ago", "status": "sent", PRUNE_HOUR: expired})
    db.outbox.insert_one({"_id": "pending", "status": "pending"})
    try:
        container_factory(PrunedService, service_config).start()
        wait_until(
            lambda: db[COMMANDS].count_documents({}) == 0 and db.outbox.count_documents({}) == 1,
            20,
            "the expired bookkeeping pruned",
        )
    finally:
        client.drop_database(db.name)
        client.close()
