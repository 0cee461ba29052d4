"""A SecantusDB of a benchmark's own, as `make dev` runs it (`--sync-on-commit`), in a
temporary directory removed afterwards."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymongo import MongoClient

from ops.processes import MongoServer, free_port
from shared.mongo import connect


@contextmanager
def scratch_server() -> Iterator[MongoServer]:
    with tempfile.TemporaryDirectory(prefix="jvreg-bench-") as tmp:
        server = MongoServer(Path(tmp) / "data", free_port(), log=Path(tmp) / "server.log")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def scratch_database() -> Iterator[MongoClient]:
    with scratch_server() as server:
        client = connect(server.uri)
        try:
            yield client
        finally:
            client.close()
