"""Reads "as of" a past instant (docs/architecture.md §6.6): an aggregate's state at an
instant, rebuilt from its publisher's own history. Every event carries the aggregate
after the change (§4.3); a repository that `KeepsVersions` keeps each event's aggregate
in one document per aggregate, in the transaction of the change, so the state at T is
its latest version whose change (the aggregate's `updated_at`, at the millisecond the
store keeps) is at or before T: one read by `_id`, never a range over the events
(SecantusDB answers a range by scanning every document). Aggregates changed before
versions were kept are filled in from the event log (§2) and the outbox, by subject
on an index."""

import contextlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, ClassVar

import bson
from bson.codec_options import CodecOptions, TypeRegistry
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pymongo import ASCENDING
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.codec import rfc3339
from shared.contract import Strict
from shared.envelope import CloudEvent
from shared.errors import NotFound, ServiceUnavailable, validated
from shared.inbox import EventLog
from shared.mongo import DecimalCodec, Repository
from shared.outbox import Outbox, _event_of

# RFC 3339's date-time, offset required ("Z" or ±hh:mm): what `as_of` takes.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# The most aggregates a list reads at a time (its batches grow from the page's size).
BATCH = 1000
# Aggregates whose events a backfill looks up at a time ($in grows worse than linearly).
BACKFILL_BATCH = 100
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


class Versions:
    """Each aggregate's versions, one document per aggregate in the `versions`
    collection: `{_id, <its fixed fields>, versions: [{sequence, state}]}`, each state
    the aggregate as its event carried it. Written in the transaction of each change
    (`KeepsVersions`), so as complete as the aggregates themselves; one read by `_id`
    answers a read as of any instant, and a list reads the documents in id order."""

    COLLECTION = "versions"

    def __init__(
        self, db: Database, aggregate: str, resource: type[BaseModel], fixed: tuple[str, ...]
    ):
        self.db = db
        self.documents = db[self.COLLECTION]
        self.aggregate = aggregate
        self.resource = resource
        self.fixed = fixed

    def keep(self, events: list[CloudEvent], session: ClientSession) -> None:
        for event in events:
            state = event.data.get(self.aggregate)
            if state is None:
                continue
            self.documents.update_one(
                {"_id": event.subject},
                {
                    "$set": {name: state.get(name) for name in self.fixed},
                    "$push": {"versions": {"sequence": event.sequence, "state": state}},
                },
                upsert=True,
                session=session,
            )

    def backfill(self, aggregates: Collection) -> int:
        """Keep the versions of aggregates changed before versions were kept, from the
        event log and the outbox (once: when some aggregates have no document here)."""
        if self.documents.estimated_document_count() >= aggregates.estimated_document_count():
            return 0
        kept = set(self.documents.distinct("_id"))
        missing = [doc["_id"] for doc in aggregates.find({}, {"_id": 1}) if doc["_id"] not in kept]
        for start in range(0, len(missing), BACKFILL_BATCH):
            keys = missing[start : start + BACKFILL_BATCH]
            for key, versions in self._logged(keys).items():
                latest = versions[max(versions)]
                document = {
                    "_id": key,
                    **{name: latest.get(name) for name in self.fixed},
                    "versions": [
                        {"sequence": sequence, "state": state}
                        for sequence, state in sorted(versions.items())
                    ],
                }
                # Changed meanwhile: its document exists, completed when it is read.
                with contextlib.suppress(DuplicateKeyError):
                    self.documents.insert_one(document)
        return len(missing)

    def _logged(self, keys: list[str]) -> dict[str, dict[int, dict]]:
        """The versions of `keys` in the event log and the outbox, by sequence."""
        found: dict[str, dict[int, dict]] = defaultdict(dict)
        for record in self.db[EventLog.COLLECTION].find({"subject": {"$in": keys}}):
            if self.aggregate in record["data"]:
                found[record["subject"]][record["sequence"]] = record["data"][self.aggregate]
        for record in self.db[Outbox.COLLECTION].find({"subject": {"$in": keys}}):
            event = _event_of(record)
            if self.aggregate in event.data:
                found[event.subject].setdefault(event.sequence, event.data[self.aggregate])
        return found

    def _versions_of(self, document: dict) -> dict[int, dict]:
        """A document's versions by sequence; one whose first versions were made before
        versions were kept (a gap) completed from the event log and the outbox."""
        versions = {version["sequence"]: version["state"] for version in document["versions"]}
        if len(versions) < max(versions):
            versions = {**self._logged([document["_id"]])[document["_id"]], **versions}
            if len(versions) < max(versions):
                raise ServiceUnavailable(
                    f"the history of {document['_id']} is not complete here (versions "
                    f"{sorted(versions)}): its event log is behind by more than the outbox keeps"
                )
        return versions

    def state_at(self, versions: dict[int, dict], instant: datetime) -> dict[str, Any] | None:
        """The aggregate as it stood at `instant`, as a current read answers it; None when
        it did not exist yet."""
        at_or_before = [
            sequence for sequence, state in versions.items() if changed_at(state) <= instant
        ]
        if not at_or_before:
            return None
        state = self.resource.model_validate(versions[max(at_or_before)])
        return self.resource.model_validate(stored(state)).model_dump(mode="json")

    def one_at(self, key: str, instant: datetime) -> dict[str, Any] | None:
        """Aggregate `key` as it stood at `instant`; None when it did not exist then."""
        document = self.documents.find_one({"_id": key})
        return self.state_at(self._versions_of(document), instant) if document else None

    def list_at(
        self,
        scope: dict[str, Any],
        instant: datetime,
        matches: Callable[[dict[str, Any]], bool],
        after: str | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Up to `limit` aggregates as they stood at `instant`, in id order after
        `after`, of those matching `scope` (equality on fixed fields: the owner, what
        an aggregate belongs to, its type), and whose state then `matches` the list's
        other filters."""
        found: list[dict[str, Any]] = []
        for document in self._in_id_order(scope, after, limit):
            state = self.state_at(self._versions_of(document), instant)
            if state is not None and matches(state):
                found.append(state)
                if len(found) == limit:
                    break
        return found

    def _in_id_order(self, scope: dict[str, Any], after: str | None, limit: int) -> Iterator[dict]:
        """The documents of `scope` after `after`, in id order. A scope is selected by
        equality on an index and sorted here (it grows with the scope, not the
        registry); without one, a range sorted by id is read in batches, growing from
        the page's size, since SecantusDB scans the whole collection for each."""
        if scope:
            documents = sorted(self.documents.find(scope), key=lambda document: document["_id"])
            yield from (
                document for document in documents if after is None or document["_id"] > after
            )
            return
        size = limit
        while True:
            query = {"_id": {"$gt": after}} if after else {}
            batch = list(self.documents.find(query).sort("_id", ASCENDING).limit(size))
            yield from batch
            if len(batch) < size:
                return
            after, size = batch[-1]["_id"], min(size * 2, BATCH)


class KeepsVersions(Repository):
    """A repository that keeps its aggregates' versions (`Versions`) in the transaction
    of each change. `AGGREGATE`: the aggregate's key in its events' data; `RESOURCE`:
    its model; `FIXED`: its fields that never change, by which lists are scoped;
    `AGGREGATES`: the collection of the aggregates as they are now."""

    AGGREGATE: ClassVar[str]
    RESOURCE: ClassVar[type[BaseModel]]
    FIXED: ClassVar[tuple[str, ...]]
    AGGREGATES: ClassVar[str]
    NOUN: ClassVar[str]  # how a refusal names one: "venture", "facility", "licence"

    @classmethod
    def versions_in(cls, db: Database) -> Versions:
        return Versions(db, cls.AGGREGATE, cls.RESOURCE, cls.FIXED)

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        super().ensure_indexes(db)
        db[EventLog.COLLECTION].create_index("subject")
        db[Outbox.COLLECTION].create_index("subject")
        for name in cls.FIXED:
            db[Versions.COLLECTION].create_index(name)
        cls.versions_in(db).backfill(db[cls.AGGREGATES])

    @property
    def versions(self) -> Versions:
        return self.versions_in(self.db)

    def keep_versions(self, events: list[CloudEvent], session: ClientSession) -> None:
        self.versions.keep(events, session)

    def get_as_of(self, key: str, instant: datetime) -> dict:
        """The aggregate as it stood at `instant`; 404 before its first version."""
        state = self.versions.one_at(key, instant)
        if state is None:
            raise NotFound(f"no {self.NOUN} {key} at {rfc3339(instant)}")
        return state


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
