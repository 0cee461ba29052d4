"""`jvreg dev` (what `make dev` runs): the whole registry on this machine."""

import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import click
import requests

from ops.processes import (
    ROOT,
    MongoServer,
    Stack,
    broker_reachable,
    ensure_management_api,
    port_open,
)
from ops.signing_keys import ensure_key_ring
from services.gateway.keys import weak_bootstrap_key
from shared import messaging
from shared.broker_users import create_users_for, registry_amqp_uris
from shared.settings import Settings

VAR = ROOT / "var"
LOCAL_MONGO_PORT = 27027


def bootstrap_ops_key(data_dir: Path) -> str:
    """JVREG_OPS_KEY, or one generated on first start and kept beside the data so the
    key (like the data) survives restarts."""
    if key := os.environ.get("JVREG_OPS_KEY"):
        return key
    path = data_dir / "ops-key"
    if path.exists():
        return path.read_text().strip()
    key = "jvk_ops_" + secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def broker_passwords(data_dir: Path) -> dict[str, str]:
    """The password of each service's broker user (and ops'), generated on first start
    and kept beside the data, readable by this user only."""
    path = data_dir / "broker-passwords.json"
    passwords = json.loads(path.read_text()) if path.exists() else {}
    names = (*messaging.SERVICES, messaging.OPS)
    if missing := [name for name in names if name not in passwords]:
        passwords.update({name: secrets.token_urlsafe(24) for name in missing})
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(passwords, indent=2) + "\n")
        path.chmod(0o600)
    return passwords


@click.command()
@click.option(
    "--health-timeout",
    default=90,
    show_default=True,
    help="seconds to wait for GET /health to be ok",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=VAR,
    show_default=True,
    help="where SecantusDB keeps its data, the logs and the generated ops key",
)
@click.option(
    "--mongo-port",
    default=LOCAL_MONGO_PORT,
    show_default=True,
    help="port of the local SecantusDB (when JVREG_MONGO_URI is not set)",
)
def dev(health_timeout: int, data_dir: Path, mongo_port: int):
    """Run every service locally, on SecantusDB and the local RabbitMQ, until Ctrl-C."""
    settings = Settings()
    ops_key = bootstrap_ops_key(data_dir)
    if problem := weak_bootstrap_key(ops_key):
        click.echo(problem, err=True)
        sys.exit(2)
    if problem := broker_reachable(settings.amqp_uri):
        click.echo(
            f"RabbitMQ is not reachable at {settings.amqp_uri} ({problem}).\n"
            "Start one with `rabbitmq-server -detached` (or `docker compose up -d rabbitmq`),"
            "\nor point JVREG_AMQP_URI at a running broker, then run `make dev` again.",
            err=True,
        )
        sys.exit(2)

    if problem := ensure_management_api(settings.broker_admin_url):
        click.echo(
            f"cannot create the services' broker users: {problem}, or point "
            "JVREG_BROKER_ADMIN_URL at it (http://admin:password@host:15672).",
            err=True,
        )
        sys.exit(2)
    passwords = broker_passwords(data_dir)
    try:
        create_users_for(settings, passwords)
    except requests.RequestException as error:
        click.echo(
            f"cannot create the services' broker users through RabbitMQ's management API "
            f"({error}).\nEnable it with `rabbitmq-plugins enable rabbitmq_management`, or "
            "point JVREG_BROKER_ADMIN_URL at it (http://admin:password@host:15672).",
            err=True,
        )
        sys.exit(2)

    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    env = {"JVREG_OPS_KEY": ops_key, "JVREG_AMQP_URI": settings.amqp_uri}
    # The certificates' signing keys, kept beside the data unless set (never committed).
    signing_keys = Path(os.environ.get("JVREG_SIGNING_KEYS_FILE", data_dir / "signing-keys.json"))
    ensure_key_ring(signing_keys)
    env["JVREG_SIGNING_KEYS_FILE"] = str(signing_keys)
    # The search service's index lives beside the data (`jvreg search rebuild` finds it
    # there with the same JVREG_SEARCH_DATA_DIR, or its default var/search).
    env.setdefault(
        "JVREG_SEARCH_DATA_DIR", os.environ.get("JVREG_SEARCH_DATA_DIR", str(data_dir / "search"))
    )
    mongo = None
    if "JVREG_MONGO_URI" not in os.environ:
        if port_open("127.0.0.1", mongo_port):
            click.echo(
                f"port {mongo_port} is taken: is another `make dev` running? "
                "Stop it, or set JVREG_MONGO_URI.",
                err=True,
            )
            sys.exit(2)
        mongo = MongoServer(data_dir / "mongo", mongo_port, log=data_dir / "log" / "mongo.log")
        mongo.start()
        env["JVREG_MONGO_URI"] = mongo.uri
        click.echo(f"SecantusDB on {mongo.uri} (data in {data_dir / 'mongo'})")

    # Every service logs in as its own user (shared.broker_users).
    stack = Stack(
        env, amqp_uris=registry_amqp_uris(settings.amqp_uri, settings.broker_user, passwords)
    )
    exit_code = 0
    try:
        stack.start()
        stack.wait_healthy(health_timeout)
        click.echo(
            f"\nJV Pharma Registry is up at {stack.gateway_url}\n"
            f"  bootstrap ops key: {env['JVREG_OPS_KEY']}\n"
            f"  try: curl -H 'Authorization: Bearer {env['JVREG_OPS_KEY']}' "
            f"{stack.gateway_url}/v1/ventures\n"
            "Ctrl-C stops everything.\n"
        )
        while not stopping:
            if dead := stack.exited():
                click.echo(f"stopping: {', '.join(dead)} exited", err=True)
                exit_code = 1
                break
            time.sleep(0.5)
    except (TimeoutError, RuntimeError) as error:
        click.echo(f"the registry did not come up: {error}", err=True)
        exit_code = 1
    finally:
        click.echo("stopping the registry…")
        stack.stop()
        if mongo:
            mongo.stop()
    sys.exit(exit_code)
