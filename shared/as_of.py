"""Reads "as of" a past instant (docs/architecture.md §6.6): an aggregate's state at an
instant, rebuilt from its publisher's own history. Every event carries the aggregate
after the change (§4.3), so the state at T is the aggregate of its latest event whose
change (the aggregate's `updated_at`, at the millisecond the store keeps) is at or
before T. The events are read by subject, by equality and `$in` on an index (never a
range: SecantusDB answers one by scanning every document), from the event log (§2)
and, for events the log has not consumed yet, from the outbox, which holds every event
in the transaction of its change (sent ones for 24 hours)."""

import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import bson
from bson.codec_options import CodecOptions, TypeRegistry
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from shared.clock import utcnow
from shared.contract import Strict
from shared.errors import ServiceUnavailable, validated
from shared.inbox import EventLog
from shared.mongo import DecimalCodec
from shared.outbox import Outbox, _event_of

# RFC 3339's date-time, offset required ("Z" or ±hh:mm): what `as_of` takes.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# Candidates read (and their histories looked up) at a time while filling a list's page.
BATCH = 500
# How the store keeps an aggregate (BSON: datetimes to the millisecond, decimals exact).
STORED: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True, type_registry=TypeRegistry([DecimalCodec()])
)


def rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-03-01T00:00:00Z")
    return value


def not_in_future(value: datetime) -> datetime:
    if value > utcnow():
        raise ValueError("must not be in the future")
    return value


AsOfInstant = Annotated[
    datetime,
    BeforeValidator(rfc3339_text),
    AfterValidator(not_in_future),
    Field(json_schema_extra={"format": "date-time"}),
]


class AsOfQuery(Strict):
    """The `as_of` query parameter of the reads and lists of ventures, facilities and
    licences."""

    as_of: AsOfInstant | None = Field(
        None,
        description="answer as the registry stood at this instant (RFC 3339 with an offset, "
        "not in the future), rebuilt from the owner's history; a list then takes only "
        "its filters and paging",
    )


def stored(resource: BaseModel) -> dict[str, Any]:
    """`resource` as its store would give it back: through BSON, so its times are at the
    millisecond like a current read's, and its decimals exact."""
    return bson.decode(bson.encode(resource.model_dump(), codec_options=STORED), STORED)


def changed_at(aggregate: dict[str, Any]) -> datetime:
    """When a version came to be: its `updated_at`, at the millisecond the store keeps
    and a current read shows, so that `as_of` a read's `updated_at` answers that read."""
    moment = datetime.fromisoformat(aggregate["updated_at"])
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class History:
    """The versions of one publisher's aggregates (`aggregate`: the key of the aggregate
    in its events' data, e.g. "venture"), read from its event log and outbox."""

    def __init__(self, db: Database, aggregate: str, resource: type[BaseModel]):
        self.log = db[EventLog.COLLECTION]
        self.outbox = db[Outbox.COLLECTION]
        self.aggregate = aggregate
        self.resource = resource

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[EventLog.COLLECTION].create_index("subject")
        db[Outbox.COLLECTION].create_index("subject")

    def versions(self, current: dict[str, int]) -> dict[str, dict[int, dict]]:
        """Every version of each aggregate of `current` ({id: current version}): its
        aggregate as each event carried it, by sequence. The outbox is read only for
        aggregates whose logged versions fall short of the current one."""
        found: dict[str, dict[int, dict]] = defaultdict(dict)
        logged = self.log.find(
            {"subject": {"$in": list(current)}}, {"data": 1, "sequence": 1, "subject": 1}
        )
        for record in logged:
            found[record["subject"]][record["sequence"]] = record["data"][self.aggregate]
        behind = [key for key, version in current.items() if len(found[key]) < version]
        if behind:
            for record in self.outbox.find({"subject": {"$in": behind}}, {"envelope": 1}):
                event = _event_of(record)
                found[event.subject].setdefault(event.sequence, event.data[self.aggregate])
        for key, version in current.items():
            if len(found[key]) < version:
                raise ServiceUnavailable(
                    f"the history of {key} is not complete here (versions "
                    f"{sorted(found[key])} of {version}): its event log is behind by more "
                    "than the outbox keeps"
                )
        return found

    def state_at(self, versions: dict[int, dict], instant: datetime) -> dict[str, Any] | None:
        """The aggregate as it stood at `instant`, as a current read answers it; None when
        it did not exist yet."""
        at_or_before = [
            sequence for sequence, aggregate in versions.items() if changed_at(aggregate) <= instant
        ]
        if not at_or_before:
            return None
        state = self.resource.model_validate(versions[max(at_or_before)])
        return self.resource.model_validate(stored(state)).model_dump(mode="json")

    def one_at(self, key: str, version: int, instant: datetime) -> dict[str, Any] | None:
        """Aggregate `key`, now at `version`, as it stood at `instant`."""
        return self.state_at(self.versions({key: version})[key], instant)

    def list_at(
        self,
        collection: Collection,
        scope: dict[str, Any],
        instant: datetime,
        matches: Callable[[dict[str, Any]], bool],
        after: str | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Up to `limit` aggregates as they stood at `instant`, in id order after
        `after`, of those now in `collection` matching `scope` (equality on fields an
        aggregate never changes: its owner, what it belongs to, its kind), and whose
        state then `matches` the list's other filters."""
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            query = {**scope, **({"_id": {"$gt": after}} if after else {})}
            batch = list(collection.find(query, {"version": 1}).sort("_id", ASCENDING).limit(BATCH))
            if not batch:
                return found
            current = {doc["_id"]: doc["version"] for doc in batch}
            versions = self.versions(current)
            for key in current:
                state = self.state_at(versions[key], instant)
                if state is not None and matches(state):
                    found.append(state)
                    if len(found) == limit:
                        return found
            after = batch[-1]["_id"]
        return found


def values_at(document: Any, path: str) -> list[Any]:
    """The values at a dotted `path` of a JSON document, through lists as MongoDB reads
    them (`partners.country`: each partner's country)."""
    found = [document]
    for part in path.split("."):
        found = [
            item.get(part)
            for value in found
            for item in (value if isinstance(value, list) else [value])
            if isinstance(item, dict)
        ]
    return found


def equal_to(
    filters: dict[str, Any], paths: dict[str, str] | None = None
) -> Callable[[dict], bool]:
    """Whether a state has each filter's value (at the filter's path in `paths`, else
    the field of its name), as the list's query would select it."""

    def matches(state: dict[str, Any]) -> bool:
        return all(
            value in values_at(state, (paths or {}).get(name, name))
            for name, value in filters.items()
        )

    return matches


def instant_of(as_of: str | None) -> datetime | None:
    """The instant an RPC's `as_of` names, validated as the gateway's query parameter
    (invalid input naming `as_of`); None for a read of the present."""
    return None if as_of is None else validated(AsOfQuery, {"as_of": as_of}).as_of
