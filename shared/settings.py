"""Runtime settings, read from JVREG_* environment variables (docs/architecture.md §3)."""

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import limits
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27027/?directConnection=true"
DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
# JVREG_AMQP_URI may list several nodes of one RabbitMQ cluster, separated by `;`:
# kombu's failover syntax, which nameko hands to kombu untouched. A connection tries
# them in turn and moves on to the next when its node goes away.
AMQP_ADDRESS_SEPARATOR = ";"
# 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h: about 16 hours in all.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800)


def amqp_addresses(amqp_uri: str) -> list[str]:
    """The broker addresses an AMQP URI lists, in the order connections try them."""
    return amqp_uri.split(AMQP_ADDRESS_SEPARATOR)


def each_amqp_address(amqp_uri: str, change: Callable[[str], str]) -> str:
    """`amqp_uri` with `change` applied to every address it lists."""
    return AMQP_ADDRESS_SEPARATOR.join(change(address) for address in amqp_addresses(amqp_uri))


def check_amqp_addresses(amqp_uri: str) -> str:
    """`amqp_uri` when every address it lists is an amqp(s) URL of a host, all on one
    vhost; else a ValueError saying which address is wrong."""
    vhosts = set()
    for address in amqp_addresses(amqp_uri):
        # nameko reads the setting raw from its config: kombu would take a space as
        # part of the next address.
        if address != address.strip() or not address:
            raise ValueError(f"separate the addresses with {AMQP_ADDRESS_SEPARATOR!r} alone")
        parts = urlsplit(address)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"{address!r} is not an amqp:// or amqps:// URL of a host")
        vhosts.add(parts.path or "/")
    if len(vhosts) > 1:
        raise ValueError("every address must name the same vhost")
    return amqp_uri


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JVREG_", extra="ignore")

    mongo_uri: str = DEFAULT_MONGO_URI
    # How every process logs (deploy/config.yaml): lines of text, or one JSON object
    # per line for a log collector; each line carries its request's correlation id.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    amqp_uri: str = DEFAULT_AMQP_URI
    gateway_port: int = 8000
    ops_key: str | None = None
    expiry_sweep_seconds: float = Field(60, gt=0)
    webhook_allow_private: bool = False
    # Caps that bound the work each licensing event costs the notifications service.
    webhook_max_event_types: int = Field(20, ge=1)
    webhook_max_subscriptions_per_owner: int = Field(20, ge=1)
    # The broker user each service connects as (`{service}` is its name, `ops` for
    # `jvreg dlq`): a consumer accepts a service's events only from this user.
    broker_user: str = "jvreg-{service}"
    # RabbitMQ's management API as an administrator: `jvreg dev` creates the services'
    # users through it, `jvreg regulators add` the regulators'.
    broker_admin_url: str = "http://guest:guest@127.0.0.1:15672"
    # The gateway's key ring for signing licence certificates (shared/signing.py),
    # written by `jvreg signing-keys`; `jvreg dev` keeps one beside its data.
    signing_keys_file: Path = Path("var/signing-keys.json")
    # Prefix of every database name, so that test runs can share one server.
    db_prefix: str = "jvreg"
    # How long a gateway process keeps an API key it verified (0: never): revoking or
    # rotating through another gateway instance, or `jvreg keys`, takes this long at most.
    api_key_cache_seconds: float = Field(5, ge=0)
    # How long the gateway waits for a service's RPC reply before answering 503.
    rpc_timeout_seconds: float = Field(10, gt=0)
    # The gateway's bounds on slow clients: the request line and headers, then the body,
    # must each arrive within these totals (however slowly they drip), and one client
    # address may hold at most this many connections at once.
    http_header_timeout_seconds: float = Field(10, gt=0)
    http_body_timeout_seconds: float = Field(10, gt=0)
    http_connections_per_client: int = Field(32, gt=0)
    # Whether the web pages' session cookie is marked Secure: unset, when the request
    # came over https; set true behind a proxy that ends TLS (the gateway sees http).
    web_secure_cookies: bool | None = None
    # How often an outbox relay looks for records a crashed relay left behind.
    relay_poll_seconds: float = Field(1.0, gt=0)
    # Waits before each webhook retry; a delivery is tried once more than this list is
    # long, then marked failed. JSON list or comma-separated, e.g. "5,30,120".
    webhook_retry_schedule_seconds: Annotated[list[Annotated[float, Field(gt=0)]], NoDecode] = list(
        DEFAULT_WEBHOOK_RETRY_SCHEDULE
    )

    # Rate limits of the gateway, in the notation of the `limits` library ("10/minute",
    # "100 per hour"): failed authentications per client address, and expensive reads
    # (lists, searches, summaries) per API key.
    auth_failure_limit: str = "10/minute"
    expensive_read_limit: str = "600/minute"

    @field_validator("auth_failure_limit", "expensive_read_limit")
    @classmethod
    def _a_rate_limit(cls, value: str) -> str:
        limits.parse(value)  # a ValueError names the setting
        return value

    @field_validator("amqp_uri")
    @classmethod
    def _amqp_addresses(cls, value: str) -> str:
        return check_amqp_addresses(value)

    @field_validator("webhook_retry_schedule_seconds", mode="before")
    @classmethod
    def _schedule_from_text(cls, value):
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else text.split(",")
        return value

    @classmethod
    def from_config(cls, config: Mapping) -> "Settings":
        """Settings for a nameko container: JVREG_* keys of its config win over the
        environment, which lets in-process tests run several configurations at once."""
        overrides = {
            key.removeprefix("JVREG_").lower(): value
            for key, value in config.items()
            if key.startswith("JVREG_")
        }
        return cls(**overrides)

    def broker_user_of(self, service: str) -> str:
        return self.broker_user.format(service=service)

    def database_name(self, service: str) -> str:
        return f"{self.db_prefix}_{service}"
