"""The registry's RabbitMQ users and what each may do, created through the broker's
management API (`jvreg dev`, the tests, compose's `broker-users` step,
`jvreg regulators add`).

A service may publish only on its own `<service>.events` exchange (and nameko's RPC
exchange, and the dead-letter path), read only its own queues, and declare only its
own queues plus the exchanges it binds them to. RabbitMQ refuses a message whose
`user_id` is not the publishing connection's user, so the `user_id` of an event on
`licensing.events` is always `jvreg-licensing` (shared.inbox checks it)."""

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from shared import messaging
from shared.settings import amqp_addresses, each_amqp_address

RPC_EXCHANGE = "nameko-rpc"  # nameko's default, which the registry keeps
# Publishing to the default exchange (a copy to the tail of one's own queue, ops
# sending a dead letter back) is checked as writing to `amq.default`.
DEFAULT_EXCHANGE = "amq.default"
ANY_EVENTS_EXCHANGE = r"[a-z_]+\.events"
DEAD_LETTER_EXCHANGE = re.escape(messaging.DEAD_LETTER_EXCHANGE)
DEAD_LETTERS = DEAD_LETTER_EXCHANGE + "|" + re.escape(messaging.DEAD_LETTER_QUEUE)


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


def _only(*alternatives: str) -> str:
    return "^(" + "|".join(alternatives) + ")$"


def service_permissions(service: str) -> Permissions:
    """`service`'s own queues are `<service>.*` (its consumers and event log),
    `rpc-<service>` and its RPC reply queues `rpc.reply-<service>-<uuid>`."""
    name = re.escape(service)
    own = (rf"{name}\..+", rf"rpc-{name}", rf"rpc\.reply-{name}-.+")
    return Permissions(
        # Declaring a queue declares the exchange it is bound to (same arguments).
        configure=_only(*own, ANY_EVENTS_EXCHANGE, RPC_EXCHANGE, DEAD_LETTERS),
        # Publishing: its own events exchange (in `own`), RPC, the dead letters and
        # copies to its own queues; binding a queue is writing to it.
        write=_only(*own, RPC_EXCHANGE, DEAD_LETTERS, re.escape(DEFAULT_EXCHANGE)),
        # Consuming its own queues; binding them reads the source exchange.
        read=_only(*own, ANY_EVENTS_EXCHANGE, RPC_EXCHANGE, DEAD_LETTER_EXCHANGE),
    )


def ops_permissions() -> Permissions:
    """`jvreg dlq`: read the dead letters and send them back to their queues."""
    return Permissions(
        configure=_only(DEAD_LETTERS),
        write=_only(DEAD_LETTERS, re.escape(DEFAULT_EXCHANGE)),
        read=_only(DEAD_LETTERS),
    )


def regulator_queue_prefix(regulator: str) -> str:
    return f"regulator.{regulator}."


def regulator_permissions(regulator: str, exchange: str = "licensing.events") -> Permissions:
    """A regulator's own queues `regulator.<name>.*`, bound to `exchange` only."""
    own = re.escape(regulator_queue_prefix(regulator)) + ".+"
    return Permissions(
        configure=_only(own),
        # A queue that dead-letters needs write on the dead-letter exchange.
        write=_only(own, DEAD_LETTER_EXCHANGE),
        read=_only(own, re.escape(exchange)),
    )


class RabbitAdmin:
    """The calls of RabbitMQ's management API the registry needs, as an administrator
    (`http://user:password@host:15672`)."""

    def __init__(self, url: str):
        parts = urlsplit(url.rstrip("/"))
        if not parts.hostname:
            raise ValueError("the management API URL names no host")
        self.auth = (parts.username or "guest", parts.password or "guest")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def call(self, method: str, path: str, **kwargs):
        response = requests.request(
            method, f"{self.url}/api/{path}", auth=self.auth, timeout=10, **kwargs
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def put_user(self, name: str, password: str, tags: str = "") -> None:
        self.call("PUT", f"users/{quote(name, safe='')}", json={"password": password, "tags": tags})

    def user_exists(self, name: str) -> bool:
        response = requests.get(
            f"{self.url}/api/users/{quote(name, safe='')}", auth=self.auth, timeout=10
        )
        return response.ok

    def permit(self, vhost: str, user: str, permissions: Permissions) -> None:
        self.call(
            "PUT",
            f"permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
            json={
                "configure": permissions.configure,
                "write": permissions.write,
                "read": permissions.read,
            },
        )


def vhost_of(amqp_uri: str) -> str:
    """The vhost an AMQP URI names (`/` when it names none); every address of a
    cluster's names the same."""
    path = urlsplit(amqp_addresses(amqp_uri)[0]).path
    return requests.utils.unquote(path[1:]) if len(path) > 1 else "/"


def with_credentials(amqp_uri: str, user: str, password: str) -> str:
    """`amqp_uri` (each of its addresses) logging in as `user`."""

    def as_user(address: str) -> str:
        parts = urlsplit(address)
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    return each_amqp_address(amqp_uri, as_user)


def registry_amqp_uris(amqp_uri: str, user_template: str, passwords: dict[str, str]) -> dict:
    """Each service's (and ops') `amqp_uri`, logging in as its own user."""
    return {
        name: with_credentials(amqp_uri, user_template.format(service=name), password)
        for name, password in passwords.items()
    }


def create_registry_users(
    admin: RabbitAdmin, vhost: str, user_template: str, passwords: dict[str, str]
) -> None:
    """Create (or update) the broker user of every service and of ops, with
    `passwords[service]`, and grant each its permissions on `vhost`."""
    for name in (*messaging.SERVICES, messaging.OPS):
        user = user_template.format(service=name)
        admin.put_user(user, passwords[name])
        permissions = ops_permissions() if name == messaging.OPS else service_permissions(name)
        admin.permit(vhost, user, permissions)


def create_users_for(settings, passwords: dict[str, str]) -> None:
    """Every registry user of `settings` (its broker, vhost, user template and
    administrator), with `passwords[service]`: what `jvreg dev` and `jvreg
    broker-users` do before any service starts."""
    create_registry_users(
        RabbitAdmin(settings.broker_admin_url),
        vhost_of(settings.amqp_uri),
        settings.broker_user,
        passwords,
    )
