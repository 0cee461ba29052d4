"""The registry's deployment secrets, generated: every one `docker compose` or the
Kubernetes manifests need, so the stack never starts with a well-known or empty secret.

    python deploy/compose_env.py [.env]       # add the missing ones to .env (make up)
    python deploy/compose_env.py --kubernetes # a Secret `jvreg-secrets` with fresh values

They are the bootstrap ops key, the RabbitMQ administrator's password, every broker
user's password (`jvreg broker-users`), the MongoDB root password and replica-set
keyfile, and every MongoDB user's password (deploy/mongo_init.py). A `.env` keeps the
values already there; the Secret is printed for `kubectl apply -f -` and kept nowhere."""

import base64
import secrets
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy import mongo_init  # noqa: E402
from ops.broker import password_variable  # noqa: E402
from shared import messaging  # noqa: E402
from shared.settings import Settings  # noqa: E402

KUBERNETES_SECRET = "jvreg-secrets"
# mongod reads a keyfile of 6 to 1024 characters of the base64 alphabet.
KEYFILE_BYTES = 96


def wanted() -> dict[str, str]:
    """Each secret's variable and a fresh value for it (used only when it is missing).
    Passwords are URL-safe: they go into AMQP and MongoDB URIs as they are."""
    fresh = {
        "JVREG_OPS_KEY": "jvk_ops_" + secrets.token_urlsafe(32),
        "JVREG_BROKER_ADMIN_PASSWORD": secrets.token_urlsafe(24),
        "JVREG_MONGO_ROOT_PASSWORD": secrets.token_urlsafe(24),
        "JVREG_MONGO_KEYFILE": base64.b64encode(secrets.token_bytes(KEYFILE_BYTES)).decode(),
    }
    for name in (*messaging.SERVICES, messaging.OPS):
        fresh[password_variable(name)] = secrets.token_urlsafe(24)
    for user in mongo_init.users(Settings()):
        fresh[user.password_variable] = secrets.token_urlsafe(24)
    return fresh


def write_env(path: Path) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    present = {line.split("=", 1)[0].strip() for line in lines if "=" in line}
    added = [f"{name}={value}" for name, value in wanted().items() if name not in present]
    if added:
        path.touch(mode=0o600)
        path.write_text("\n".join([*lines, *added]) + "\n")
        path.chmod(0o600)
        print(
            f"{path}: generated {len(added)} secret(s): "
            + ", ".join(line.split("=", 1)[0] for line in added)
        )


def kubernetes_secret() -> dict:
    """The Secret deploy/k8s refers to, its keys the variables of `.env`."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": KUBERNETES_SECRET},
        "type": "Opaque",
        "stringData": wanted(),
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--kubernetes"]:
        print(yaml.safe_dump(kubernetes_secret(), sort_keys=False), end="")
    else:
        write_env(Path(argv[0] if argv else ".env"))


if __name__ == "__main__":
    main(sys.argv[1:])
