"""Runtime settings, read from JVREG_* environment variables (DESIGN.md §2)."""

from collections.abc import Mapping

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27027/?directConnection=true"
DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JVREG_", extra="ignore")

    mongo_uri: str = DEFAULT_MONGO_URI
    amqp_uri: str = DEFAULT_AMQP_URI
    gateway_port: int = 8000
    ops_key: str | None = None
    expiry_sweep_seconds: float = Field(60, gt=0)
    webhook_allow_private: bool = False
    # Prefix of every database name, so that test runs can share one server.
    db_prefix: str = "jvreg"
    # How long the gateway waits for a service's RPC reply before answering 503.
    rpc_timeout_seconds: float = Field(10, gt=0)
    # How often an outbox relay looks for records a crashed relay left behind.
    relay_poll_seconds: float = Field(1.0, gt=0)

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

    def database_name(self, service: str) -> str:
        return f"{self.db_prefix}_{service}"
