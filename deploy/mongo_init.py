"""Compose's `mongo-init` step (docs/deploy.md): initiate the replica set of the MongoDB
members once, then create or update every registry process's database user, each with
roles on its own database only. Run with the root user the image's first start created
on the first member; safe to run again (an initiated set is left as it is, users and
roles are updated to what is declared here).

Who may do what (deploy/k8s's MongoDBCommunity declares the same users and roles, which
tests/unit/test_deploy_k8s.py checks against `users()` and `custom_roles()`):

- each service that owns a database (docs/architecture.md §2): `readWrite` on
  `<prefix>_<service>` — its transactions, outbox, change streams and indexes;
- `search`, which owns none: a role that may only read the event logs of the services
  it follows, which `jvreg search rebuild` reads in its container (§10);
- `ops` (`jvreg reconcile`, `jvreg keys`, `jvreg dlq`): `read` on every database,
  `readWrite` on the gateway's (API keys).
"""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import OperationFailure

from services.search import contract as search_contract
from shared import messaging
from shared.inbox import EventLog
from shared.settings import Settings

ADMIN = "admin"
SEARCH = "search"
GATEWAY = "gateway"
SEARCH_REBUILD_ROLE = "jvreg-search-rebuild"
NOT_YET_INITIALIZED = 94  # MongoDB's error code for replSetGetStatus before rs.initiate
PRIMARY_WAIT_SECONDS = 120


@dataclass(frozen=True)
class User:
    name: str
    password_variable: str
    roles: tuple[tuple[str, str], ...]  # (role, database)


def user_name(process: str) -> str:
    return f"jvreg-{process}"


def password_variable(process: str) -> str:
    """The environment variable (compose's .env, the Kubernetes Secret's key) holding the
    MongoDB password of `process` (a service or ops)."""
    return f"JVREG_MONGO_PASSWORD_{process.upper()}"


def users(settings: Settings) -> list[User]:
    """Every registry process's MongoDB user and its roles."""
    owners = [name for name in messaging.SERVICES if name != SEARCH]
    declared = [
        User(
            user_name(name), password_variable(name), (("readWrite", settings.database_name(name)),)
        )
        for name in owners
    ]
    declared.append(
        User(user_name(SEARCH), password_variable(SEARCH), ((SEARCH_REBUILD_ROLE, ADMIN),))
    )
    ops_roles = [("read", settings.database_name(name)) for name in owners if name != GATEWAY]
    ops_roles.append(("readWrite", settings.database_name(GATEWAY)))
    declared.append(
        User(user_name(messaging.OPS), password_variable(messaging.OPS), tuple(ops_roles))
    )
    return declared


def custom_roles(settings: Settings) -> dict[str, list[dict]]:
    """Roles of the registry's own, in the admin database: name -> privileges."""
    return {
        SEARCH_REBUILD_ROLE: [
            {
                "resource": {
                    "db": settings.database_name(subscription.source),
                    "collection": EventLog.COLLECTION,
                },
                "actions": ["find"],
            }
            for subscription in search_contract.SUBSCRIPTIONS
        ]
    }


def initiate(root_uri: str, replica_set: str, members: list[str]) -> None:
    """rs.initiate on the first member, unless the set already is."""
    with MongoClient(root_uri, directConnection=True, serverSelectionTimeoutMS=10_000) as client:
        try:
            client.admin.command("replSetGetStatus")
            print(f"replica set {replica_set}: already initiated")
            return
        except OperationFailure as error:
            if error.code != NOT_YET_INITIALIZED:
                raise
        config = {
            "_id": replica_set,
            "members": [{"_id": index, "host": host} for index, host in enumerate(members)],
        }
        client.admin.command("replSetInitiate", config)
        print(f"replica set {replica_set}: initiated with {', '.join(members)}")


def declare(admin, kind: str, name: str, **fields) -> None:
    """Create `name` (a "user" or a "role"), or update it when it exists."""
    exists = admin.command(f"{kind}sInfo", name)[f"{kind}s"]
    verb = "update" if exists else "create"
    admin.command(f"{verb}{kind.capitalize()}", name, **fields)
    print(f"{kind} {name}: {verb}d")


def main() -> None:
    settings = Settings()
    declared = users(settings)
    if missing := [
        u.password_variable for u in declared if not os.environ.get(u.password_variable)
    ]:
        sys.exit("set " + ", ".join(missing))
    replica_set = os.environ.get("JVREG_MONGO_REPLICA_SET", "rs0")
    members = os.environ["JVREG_MONGO_MEMBERS"].split(",")
    root = os.environ["JVREG_MONGO_ROOT_USER"]
    password = Path(os.environ["JVREG_MONGO_ROOT_PASSWORD_FILE"]).read_text().strip()
    credentials = f"{root}:{password}"
    initiate(f"mongodb://{credentials}@{members[0]}/?authSource={ADMIN}", replica_set, members)

    set_uri = (
        f"mongodb://{credentials}@{','.join(members)}/?replicaSet={replica_set}&authSource={ADMIN}"
    )
    # Every command waits (up to the bound) for the primary the new set elects.
    with MongoClient(set_uri, serverSelectionTimeoutMS=PRIMARY_WAIT_SECONDS * 1000) as client:
        for role, privileges in custom_roles(settings).items():
            declare(client.admin, "role", role, privileges=privileges, roles=[])
        for user in declared:
            declare(
                client.admin,
                "user",
                user.name,
                pwd=os.environ[user.password_variable],
                roles=[{"role": role, "db": db} for role, db in user.roles],
            )


if __name__ == "__main__":
    main()
