"""The search service's settings, beside the registry's (shared/settings.py):
`JVREG_SEARCH_INSTANCE` names the instance (its queues, its index directory) and
`JVREG_SEARCH_DATA_DIR` is where its index lives."""

import re
import socket
from pathlib import Path

from pydantic import Field, field_validator

from shared.settings import Settings

CURRENT = "CURRENT"  # the file naming the generation of the index in use
REBUILDING = "REBUILDING"  # a rebuild's start (epoch seconds), while one runs


def default_instance() -> str:
    return re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-") or "search"


class SearchSettings(Settings):
    search_instance: str = Field(default_factory=default_instance)
    search_data_dir: Path = Path("var/search")

    @field_validator("search_instance")
    @classmethod
    def _a_queue_name_part(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
            raise ValueError("lower-case letters, digits and '-', at most 63 characters")
        return value

    @classmethod
    def from_config(cls, config) -> "SearchSettings":
        settings = super().from_config(config)
        assert isinstance(settings, SearchSettings)
        return settings

    @property
    def index_root(self) -> Path:
        """This instance's directory: generations of its index and the CURRENT pointer.
        Named by the databases' prefix too: the index is a read model of those."""
        return self.search_data_dir / f"{self.db_prefix}-{self.search_instance}"
