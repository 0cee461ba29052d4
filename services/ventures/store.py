"""The ventures service's repository over its own database."""

import logging
import re
from collections.abc import Callable
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from services.ventures.contract import Venture, VentureEvent
from services.ventures.domain import name_key
from shared.as_of import KeepsVersions, equal_to
from shared.errors import Conflict, NotFound, PreconditionFailed, field_error
from shared.mongo import UnitOfWork

log = logging.getLogger(__name__)


def new_venture_id() -> str:
    # ObjectIds grow with time, so ids sort in registration order (stable pagination).
    return f"jv_{ObjectId()}"


def rekey_names(ventures) -> None:
    """Bring name keys written by an earlier rule (case and spaces only) to the current
    one. Two ventures registered before as look-alikes keep their old keys: the second
    one found is logged, as one name must then be changed by hand."""
    for doc in ventures.find({}, {"name": 1, "name_key": 1}):
        key = name_key(doc["name"])
        if doc.get("name_key") == key:
            continue
        try:
            ventures.update_one({"_id": doc["_id"]}, {"$set": {"name_key": key}})
        except DuplicateKeyError:
            log.warning("venture %s (%r) looks like another's name", doc["_id"], doc["name"])


class VentureStore(KeepsVersions):
    AGGREGATE, RESOURCE, FIXED, AGGREGATES = "venture", Venture, ("owner",), "ventures"
    NOUN = "venture"

    @classmethod
    def ensure_indexes(cls, db):
        super().ensure_indexes(db)
        ventures = db.ventures
        rekey_names(ventures)
        ventures.create_index("name_key", unique=True)
        for field in ("owner", "sector", "province", "status", "partners.country"):
            ventures.create_index([(field, ASCENDING), ("_id", ASCENDING)])

    @property
    def ventures(self):
        return self.db.ventures

    def _commit(self, work: Callable[[UnitOfWork], None], venture: Venture) -> None:
        try:
            self.unit_of_work(work)
        except DuplicateKeyError as error:
            if "name_key" in str(error):
                raise self._name_taken(venture) from None
            raise

    def _name_taken(self, venture: Venture) -> Conflict:
        """The unique index refused the name: name the venture that holds it."""
        existing = self.ventures.find_one(
            {"name_key": name_key(venture.name), "_id": {"$ne": venture.id}}, {"name": 1}
        )
        holder = f" by venture {existing['_id']} ({existing['name']!r})" if existing else ""
        return Conflict(
            f"a venture with this name is already registered{holder}; names are compared "
            "ignoring case, runs of spaces and look-alike characters",
            errors=[
                {
                    "loc": ["name"],
                    "msg": "looks like the name of a registered venture",
                    "type": "duplicate",
                }
            ],
            extra=(
                {"existing_venture": {"id": existing["_id"], "name": existing["name"]}}
                if existing
                else {}
            ),
        )

    def add(self, venture: Venture, event: VentureEvent) -> None:
        """Insert a new venture, with its event."""

        def work(unit: UnitOfWork) -> None:
            self.ventures.insert_one(self._document(venture), session=unit.session)
            unit.publish(event)

        self._commit(work, venture)

    def replace(self, venture: Venture, event: VentureEvent, expected_version: int) -> None:
        """Store a new version of the venture, with its event, if nobody changed it since
        `expected_version`."""

        def work(unit: UnitOfWork) -> None:
            result = self.ventures.replace_one(
                {"_id": venture.id, "version": expected_version},
                self._document(venture),
                session=unit.session,
            )
            if result.matched_count == 0:
                raise PreconditionFailed(
                    f"venture {venture.id} changed since version {expected_version}; "
                    "fetch it again and retry with its current ETag"
                )
            unit.publish(event)

        self._commit(work, venture)

    def get(self, venture_id: str) -> Venture:
        doc = self.ventures.find_one({"_id": venture_id})
        if doc is None:
            raise NotFound(f"no venture {venture_id}")
        return self._venture(doc)

    def find(self, filters: dict, after: str | None, limit: int) -> list[Venture]:
        query: dict = {}
        for field in ("owner", "sector", "province", "status"):
            if filters.get(field):
                query[field] = filters[field]
        if filters.get("partner_country"):
            query["partners.country"] = filters["partner_country"]
        if filters.get("q"):
            query["name"] = {"$regex": re.escape(filters["q"]), "$options": "i"}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.ventures.find(query).sort("_id", ASCENDING).limit(limit)
        return [self._venture(doc) for doc in cursor]

    def find_as_of(
        self, filters: dict, instant: datetime, after: str | None, limit: int
    ) -> list[dict]:
        """The ventures as they stood at `instant` that matched `filters` then; only the
        owner never changes, so the others are matched on each venture's state then."""
        if "q" in filters:
            raise field_error(["q"], "words are not searched as of an instant")
        scope = {"owner": filters.pop("owner")} if "owner" in filters else {}
        matches = equal_to(filters, {"partner_country": "partners.country"})
        return self.versions.list_at(scope, instant, matches, after, limit)

    @staticmethod
    def _document(venture: Venture) -> dict:
        doc = venture.model_dump(exclude={"id"})
        doc["_id"] = venture.id
        doc["name_key"] = name_key(venture.name)
        return doc

    @staticmethod
    def _venture(doc: dict) -> Venture:
        return Venture.model_validate({**doc, "id": doc["_id"]})
