"""The licensing service's repository over its own database: licences, their history,
and the projection of the facilities it hears of through `facilities.events`."""

from collections.abc import Callable
from datetime import UTC, datetime, time

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.client_session import ClientSession

from services.licensing.domain import FacilityView, HistoryEntry, Licence
from shared.codec import to_jsonable
from shared.envelope import CloudEvent
from shared.errors import Conflict, NotFound
from shared.inbox import apply_once, check_order
from shared.mongo import Repository
from shared.outbox import Outbox

# A change computed by the domain: the licence afterwards, the history record of the
# change, and its event.
LicenceChange = tuple[Licence, dict, CloudEvent]
# How often a transition is re-decided when the licence changed while it was decided.
TRANSITION_ATTEMPTS = 3


def new_licence_id() -> str:
    # ObjectIds grow with time, so ids sort in application order (stable pagination).
    return f"lic_{ObjectId()}"


def history_id(licence_id: str, sequence: int) -> str:
    # Zero-padded, so history ids sort in sequence order (and paginate like any list).
    return f"{licence_id}.{sequence:06d}"


class LicenceStore(Repository):
    @classmethod
    def ensure_indexes(cls, db):
        super().ensure_indexes(db)
        licences = db.licences
        for field in ("owner", "status", "type", "facility_id", "venture_id", "valid_until"):
            licences.create_index([(field, ASCENDING), ("_id", ASCENDING)])
        licences.create_index([("status", ASCENDING), ("valid_until", ASCENDING)])
        licences.create_index(
            [("facility_id", ASCENDING), ("type", ASCENDING), ("status", ASCENDING)]
        )
        db.history.create_index([("license_id", ASCENDING), ("_id", ASCENDING)])

    @property
    def licences(self):
        return self.db.licences

    @property
    def history(self):
        return self.db.history

    @property
    def facility_views(self):
        """The projection of `facilities.events`: one document per facility."""
        return self.db.facilities

    def apply(
        self,
        facility_id: str,
        licence_type: str,
        submit: Callable[[FacilityView | None, datetime | None], LicenceChange],
    ) -> Licence:
        """Insert the licence `submit` makes, given the facility as projected now and the
        latest rejection of the same type for it. The projection is written too (a
        counter), so a decommissioning applied at the same time conflicts with this
        transaction instead of slipping past it."""

        def work(session: ClientSession) -> Licence:
            doc = self.facility_views.find_one_and_update(
                {"_id": facility_id},
                {"$inc": {"application_count": 1}},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            rejected = self.licences.find_one(
                {"facility_id": facility_id, "type": licence_type, "status": "rejected"},
                sort=[("updated_at", DESCENDING)],
                session=session,
            )
            change = submit(
                self._facility(doc) if doc else None, rejected["updated_at"] if rejected else None
            )
            licence, record, event = change
            self.licences.insert_one(self._document(licence), session=session)
            self._record(licence, record, event, session)
            return licence

        return self.transaction(work)

    def transition(self, licence_id: str, decide: Callable[[Licence], LicenceChange]) -> Licence:
        """Apply the change `decide` makes to the licence as it is now. If another change
        (a decision, the expiry sweep) lands in between, decide again on the new state."""
        for _ in range(TRANSITION_ATTEMPTS):
            licence = self.get(licence_id)
            change = decide(licence)
            if self.commit(licence, change):
                return change[0]
        raise Conflict(f"licence {licence_id} is changing right now; read it again and retry")

    def commit(self, before: Licence, change: LicenceChange) -> bool:
        """Store the change if the licence is still as it was when decided (same status
        and version), with its history record and event, in one transaction. False when
        it is not: somebody else changed it first, so this change does not happen."""
        licence, record, event = change

        def work(session: ClientSession) -> bool:
            result = self.licences.replace_one(
                {"_id": before.id, "status": before.status, "version": before.version},
                self._document(licence),
                session=session,
            )
            if result.matched_count == 0:
                return False
            self._record(licence, record, event, session)
            return True

        return self.transaction(work)

    def due_for_expiry(self, now: datetime, limit: int) -> list[Licence]:
        cursor = (
            self.licences.find({"status": "granted", "valid_until": {"$lt": now}})
            .sort("valid_until", ASCENDING)
            .limit(limit)
        )
        return [self._licence(doc) for doc in cursor]

    def get(self, licence_id: str) -> Licence:
        doc = self.licences.find_one({"_id": licence_id})
        if doc is None:
            raise NotFound(f"no licence {licence_id}")
        return self._licence(doc)

    def find(self, filters: dict, after: str | None, limit: int) -> list[Licence]:
        query = dict(filters)
        if expiring_before := query.pop("expiring_before", None):
            query["valid_until"] = {"$lt": datetime.combine(expiring_before, time.min, UTC)}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.licences.find(query).sort("_id", ASCENDING).limit(limit)
        return [self._licence(doc) for doc in cursor]

    def history_of(self, licence_id: str, after: str | None, limit: int) -> list[HistoryEntry]:
        query: dict = {"license_id": licence_id}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.history.find(query).sort("_id", ASCENDING).limit(limit)
        return [HistoryEntry.model_validate({**doc, "id": doc["_id"]}) for doc in cursor]

    def facility(self, facility_id: str) -> FacilityView | None:
        doc = self.facility_views.find_one({"_id": facility_id})
        return self._facility(doc) if doc else None

    def apply_facility_event(self, event: CloudEvent, facility: dict) -> bool:
        """Project the facility as `event` left it, in order and once."""

        def effect(session: ClientSession) -> None:
            current = self.facility_views.find_one({"_id": event.subject}, session=session)
            if not check_order(event, current["sequence"] if current else 0):
                return
            self.facility_views.update_one(
                {"_id": event.subject},
                {"$set": {**facility, "sequence": event.sequence}},
                upsert=True,
                session=session,
            )

        return apply_once(self, event, effect)

    def _record(
        self, licence: Licence, record: dict, event: CloudEvent, session: ClientSession
    ) -> None:
        """The history entry and the outbox record of one change of the licence."""
        entry = {
            **to_jsonable({key: value for key, value in record.items() if key != "time"}),
            "_id": history_id(licence.id, licence.version),
            "license_id": licence.id,
            "sequence": licence.version,
            "time": record["time"],
        }
        self.history.insert_one(entry, session=session)
        Outbox(self.db).add(event, session)

    @staticmethod
    def _document(licence: Licence) -> dict:
        doc = licence.model_dump(exclude={"id"})
        doc["_id"] = licence.id
        return doc

    @staticmethod
    def _licence(doc: dict) -> Licence:
        return Licence.model_validate({**doc, "id": doc["_id"]})

    @staticmethod
    def _facility(doc: dict) -> FacilityView:
        return FacilityView.model_validate({**doc, "id": doc["_id"]})
