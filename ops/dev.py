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
    wait_until,
)
from ops.search import rebuild_index
from ops.signing_keys import ensure_key_ring
from services.gateway.keys import weak_bootstrap_key
from services.search.settings import CURRENT, REBUILDING, SearchSettings
from shared import messaging
from shared.broker_users import create_users_for, registry_amqp_uris
from shared.mongo import connect
from shared.settings import Settings

VAR = ROOT / "var"
LOCAL_MONGO_PORT = 27027
# With several instances of each, one that exits is started again, as a process
# manager would; one that exits this soon after its start again is broken, not
# unlucky, and stops the registry as a single instance's exit does.
CRASH_LOOP_SECONDS = 10


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


def search_indexes(stack: Stack) -> list[SearchSettings]:
    """The settings of each search instance of `stack`: where its index lives."""
    return [
        SearchSettings(
            mongo_uri=process.env["JVREG_MONGO_URI"],
            search_instance=process.env["JVREG_SEARCH_INSTANCE"],
            search_data_dir=Path(process.env["JVREG_SEARCH_DATA_DIR"]),
        )
        for name, process in stack.processes.items()
        if stack.services[name] == "search"
    ]


def index_exists(index: SearchSettings) -> bool:
    return (index.index_root / CURRENT).exists()


def build_indexes(indexes: list[SearchSettings], timeout: float = 60) -> None:
    """Build each (new) search instance's index from the event logs, while the instance
    runs: it takes the index up and replays into it what it applied meanwhile; until it
    has (it removes the rebuild's mark), it answers from the empty one."""
    for index in indexes:
        mongo = connect(index.mongo_uri)
        try:
            built = rebuild_index(index, mongo)
        finally:
            mongo.close()
        mark = index.index_root / REBUILDING
        wait_until(
            lambda: not mark.exists(),  # noqa: B023 - waited for before the loop goes on
            timeout,
            f"search instance {index.search_instance} answering from its built index",
        )
        click.echo(
            f"search instance {built['instance']}: its index built from "
            f"{built['events']} logged events ({built['documents']} documents)"
        )


def restart_instances(stack: Stack, dead: list[str]) -> str | None:
    """Start again each instance in `dead` (they exited), saying so; or, with one
    instance of each service, or an instance that exited again right after its start,
    why the registry stops instead."""
    if stack.scale == 1:
        return f"{', '.join(dead)} exited"
    for name in dead:
        process = stack.processes[name]
        ended = process.process.returncode if process.process else None
        how = f"signal {-ended}" if ended is not None and ended < 0 else f"code {ended}"
        if time.monotonic() - process.started_at < CRASH_LOOP_SECONDS:
            return f"{name} exited ({how}) within {CRASH_LOOP_SECONDS} s of its start"
        click.echo(f"{name} exited ({how}); started it again (pid {stack.restart(name)})")
    return None


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
@click.option(
    "--scale",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="instances of every service, behind the same queues (the gateways share one port)",
)
def dev(health_timeout: int, data_dir: Path, mongo_port: int, scale: int):
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
    # The gateways bind with SO_REUSEPORT (to share their port): a gateway already on
    # it, another `make dev`'s, would silently share it with ours.
    if port_open("127.0.0.1", settings.gateway_port):
        click.echo(
            f"port {settings.gateway_port} is taken: is another `make dev` running? "
            "Stop it, or set JVREG_GATEWAY_PORT.",
            err=True,
        )
        sys.exit(2)
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
        env,
        amqp_uris=registry_amqp_uris(settings.amqp_uri, settings.broker_user, passwords),
        scale=scale,
    )
    new_indexes = [index for index in search_indexes(stack) if not index_exists(index)]
    exit_code = 0
    try:
        stack.start()
        stack.wait_healthy(health_timeout)
        build_indexes(new_indexes)
        instances = (
            f"  {scale} instances of every service (their lines prefixed [licensing.1] …), "
            "the gateways sharing the port\n"
            if scale > 1
            else ""
        )
        click.echo(
            f"\nJV Pharma Registry is up at {stack.gateway_url}\n"
            f"{instances}"
            f"  bootstrap ops key: {env['JVREG_OPS_KEY']}\n"
            f"  try: curl -H 'Authorization: Bearer {env['JVREG_OPS_KEY']}' "
            f"{stack.gateway_url}/v1/ventures\n"
            "Ctrl-C stops everything.\n"
        )
        while not stopping:
            if (dead := stack.exited()) and (problem := restart_instances(stack, dead)):
                click.echo(f"stopping: {problem}", err=True)
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
