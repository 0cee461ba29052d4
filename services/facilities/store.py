"""The facilities service's repository over its own database: its facilities, and its
projections of the ventures and licences it hears of through events."""

from collections.abc import Callable
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.client_session import ClientSession

from services.facilities.contract import Facility
from services.facilities.domain import FacilityChange, VentureView
from shared.as_of import KeepsVersions, equal_to
from shared.envelope import CloudEvent
from shared.errors import NotFound
from shared.inbox import Projection
from shared.mongo import UnitOfWork

# The projections' collections (their documents keep the last applied `sequence`).
VENTURE_VIEWS = "ventures"
LICENCE_SEQUENCES = "licence_sequences"


def new_facility_id() -> str:
    # ObjectIds grow with time, so ids sort in registration order (stable pagination).
    return f"fac_{ObjectId()}"


class FacilityStore(KeepsVersions):
    AGGREGATE, RESOURCE, AGGREGATES = "facility", Facility, "facilities"
    NOUN = "facility"
    FIXED = ("owner", "venture_id")

    @classmethod
    def ensure_indexes(cls, db):
        super().ensure_indexes(db)
        for field in ("venture_id", "owner", "province", "kind", "status"):
            db.facilities.create_index([(field, ASCENDING), ("_id", ASCENDING)])

    @property
    def facilities(self):
        return self.db.facilities

    @property
    def venture_views(self):
        """The projection of `ventures.events`: one document per venture."""
        return self.db[VENTURE_VIEWS]

    @property
    def licence_sequences(self):
        """The last applied event of each manufacturing licence (their order matters)."""
        return self.db[LICENCE_SEQUENCES]

    def register(
        self, venture_id: str, decide: Callable[[VentureView | None], FacilityChange]
    ) -> Facility:
        """Insert the facility `decide` makes for the venture as projected now. The
        projection is written too (a counter), so a dissolution applied at the same
        time conflicts with this transaction instead of missing the new facility."""

        def work(unit: UnitOfWork) -> Facility:
            doc = self.venture_views.find_one_and_update(
                {"_id": venture_id},
                {"$inc": {"facility_count": 1}},
                return_document=ReturnDocument.AFTER,
                session=unit.session,
            )
            facility, event = decide(self._venture(doc) if doc else None)
            self.facilities.insert_one(self._document(facility), session=unit.session)
            unit.publish(event)
            return facility

        return self.unit_of_work(work)

    def get(self, facility_id: str, session: ClientSession | None = None) -> Facility:
        doc = self.facilities.find_one({"_id": facility_id}, session=session)
        if doc is None:
            raise NotFound(f"no facility {facility_id}")
        return self._facility(doc)

    def find(self, filters: dict, after: str | None, limit: int) -> list[Facility]:
        query = dict(filters)
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.facilities.find(query).sort("_id", ASCENDING).limit(limit)
        return [self._facility(doc) for doc in cursor]

    def find_as_of(
        self, filters: dict, instant: datetime, after: str | None, limit: int
    ) -> list[dict]:
        """The facilities as they stood at `instant` that matched `filters` then: the
        owner and venture never change; the others are matched on each one's state then."""
        scope = {name: filters.pop(name) for name in self.FIXED if name in filters}
        return self.versions.list_at(scope, instant, equal_to(filters), after, limit)

    def venture(self, venture_id: str) -> VentureView | None:
        doc = self.venture_views.find_one({"_id": venture_id})
        return self._venture(doc) if doc else None

    def apply_venture_event(
        self,
        event: CloudEvent,
        venture: dict,
        follow: Callable[[Facility], FacilityChange],
    ) -> bool:
        """Project the venture as `event` left it, in order and once, and let each of its
        facilities follow (e.g. be decommissioned when it is dissolved)."""

        def facilities_follow(unit: UnitOfWork) -> None:
            for doc in self.facilities.find({"venture_id": event.subject}, session=unit.session):
                facility = self._facility(doc)
                self._save(facility, follow(facility), unit)

        return Projection(self.venture_views).apply(self, event, venture, facilities_follow)

    def apply_licence_event(
        self,
        event: CloudEvent,
        facility_id: str,
        follow: Callable[[Facility], FacilityChange],
    ) -> bool:
        """Let the facility follow one of its manufacturing licences, per licence in
        `sequence` order and once."""

        def facility_follows(unit: UnitOfWork) -> None:
            facility = self.get(facility_id, unit.session)
            self._save(facility, follow(facility), unit)

        return Projection(self.licence_sequences).apply(
            self, event, {"facility_id": facility_id}, facility_follows
        )

    def _save(self, before: Facility, change: FacilityChange, unit: UnitOfWork) -> None:
        facility, event = change
        if facility != before:
            self.facilities.replace_one(
                {"_id": facility.id}, self._document(facility), session=unit.session
            )
        unit.publish(event)

    @staticmethod
    def _document(facility: Facility) -> dict:
        doc = facility.model_dump(exclude={"id"})
        doc["_id"] = facility.id
        return doc

    @staticmethod
    def _facility(doc: dict) -> Facility:
        return Facility.model_validate({**doc, "id": doc["_id"]})

    @staticmethod
    def _venture(doc: dict) -> VentureView:
        return VentureView.model_validate({**doc, "id": doc["_id"]})
