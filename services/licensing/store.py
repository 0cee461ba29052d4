"""The licensing service's repository over its own database: licences, their history,
and the projection of the facilities it hears of through `facilities.events`."""

from collections.abc import Callable
from datetime import UTC, datetime, time

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.errors import DuplicateKeyError

from services.licensing.contract import HistoryEntry, Licence, LicenceEvent
from services.licensing.domain import (
    IN_FORCE_STATUSES,
    OPEN_STATUSES,
    FacilityView,
    LicenceChanges,
    LicenceDecision,
    check_registration_number_free,
    next_expiry_warning_at,
)
from shared.as_of import KeepsVersions, equal_to
from shared.codec import to_jsonable
from shared.envelope import CloudEvent
from shared.errors import Conflict, NotFound
from shared.inbox import Projection
from shared.mongo import UnitOfWork

# How often a transition is re-decided when the licence changed while it was decided.
TRANSITION_ATTEMPTS = 3


# The projection of facilities (its documents keep the last applied `sequence`).
FACILITY_VIEWS = "facilities"
# Each registration number DRAP issued, by `_id`, with the licence holding it: a second
# grant with the same number collides on the key, however close together they commit.
REGISTRATION_NUMBERS = "registration_numbers"


class ChangedMeanwhile(Exception):
    """A licence changed after it was decided on: the whole transaction is abandoned."""


def new_licence_id() -> str:
    # ObjectIds grow with time, so ids sort in application order (stable pagination).
    return f"lic_{ObjectId()}"


def history_id(licence_id: str, sequence: int) -> str:
    # Zero-padded, so history ids sort in sequence order (and paginate like any list).
    return f"{licence_id}.{sequence:06d}"


class LicenceStore(KeepsVersions):
    AGGREGATE, RESOURCE, AGGREGATES = "license", Licence, "licences"
    NOUN = "licence"
    FIXED = ("owner", "facility_id", "venture_id", "type")

    @classmethod
    def ensure_indexes(cls, db):
        super().ensure_indexes(db)
        licences = db.licences
        for field in ("owner", "status", "type", "facility_id", "venture_id", "valid_until"):
            licences.create_index([(field, ASCENDING), ("_id", ASCENDING)])
        licences.create_index([("status", ASCENDING), ("valid_until", ASCENDING)])
        licences.create_index([("status", ASCENDING), ("next_expiry_warning_at", ASCENDING)])
        licences.create_index(
            [("facility_id", ASCENDING), ("type", ASCENDING), ("status", ASCENDING)]
        )
        for field in ("registration_number", "renews"):
            licences.create_index([(field, ASCENDING), ("_id", ASCENDING)])
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
        return self.db[FACILITY_VIEWS]

    def apply(
        self,
        facility_id: str,
        licence_type: str,
        decide: Callable[[FacilityView | None, datetime | None, list[Licence]], LicenceDecision],
    ) -> Licence:
        """Insert the licence `decide` makes, given the facility as projected now, the
        latest rejection of the same type for it and its licences of the type open or in
        force. The projection is written too (a counter), so a decommissioning or another
        application applied at the same time conflicts with this transaction instead of
        slipping past it."""

        def work(unit: UnitOfWork) -> Licence:
            doc = self.facility_views.find_one_and_update(
                {"_id": facility_id},
                {"$inc": {"application_count": 1}},
                return_document=ReturnDocument.AFTER,
                session=unit.session,
            )
            # A rejected renewal locks nobody out: its licence runs on until it expires.
            rejected = self.licences.find_one(
                {
                    "facility_id": facility_id,
                    "type": licence_type,
                    "status": "rejected",
                    "renews": None,
                },
                sort=[("updated_at", DESCENDING)],
                session=unit.session,
            )
            same_type = self.licences.find(
                {
                    "facility_id": facility_id,
                    "type": licence_type,
                    "status": {"$in": [*OPEN_STATUSES, *IN_FORCE_STATUSES]},
                },
                session=unit.session,
            )
            licence, event = decide(
                self._facility(doc) if doc else None,
                rejected["updated_at"] if rejected else None,
                [self._licence(found) for found in same_type],
            )
            self.licences.insert_one(self._document(licence), session=unit.session)
            self._record(licence, event, unit)
            return licence

        return self.unit_of_work(work)

    def transition(
        self,
        licence_id: str,
        decide: Callable[
            [Licence, FacilityView | None, Licence | None, list[Licence]], LicenceChanges
        ],
    ) -> Licence:
        """Apply the changes `decide` makes to the licence as it is now, on its facility
        as projected now (and, for a renewal application, to the licence it renews; for
        a licence, given its renewal applications open now). If another change (a
        decision, the expiry sweep, the end of the plant, a renewal application) lands
        in between, decide again on the new state."""
        for _ in range(TRANSITION_ATTEMPTS):
            licence = self.get(licence_id)
            renewed = self.get(licence.renews) if licence.renews else None
            applications = self._open_renewals_of(licence.id)
            changes = decide(licence, self.facility(licence.facility_id), renewed, applications)
            if self.commit_all(changes):
                return changes[0][1][0]
        raise Conflict(f"licence {licence_id} is changing right now; read it again and retry")

    def commit(self, before: Licence, decision: LicenceDecision) -> bool:
        return self.commit_all([(before, decision)])

    def commit_all(self, changes: LicenceChanges) -> bool:
        """Store the decisions if each licence is still as it was when decided (same
        status and version), with their history entries and events, in one transaction.
        False when one is not: somebody else changed it first, so nothing happens."""

        def work(unit: UnitOfWork) -> None:
            for before, decision in changes:
                licence, event = decision
                if licence.status == "granted" and before.status != "granted":
                    # Written, so that the plant's decommissioning, which revokes the
                    # licences it finds in force, conflicts with this one instead of
                    # missing it; and read, because the grant was decided on the plant
                    # as read before this transaction: if it ended since, decide again.
                    plant = self.facility_views.find_one_and_update(
                        {"_id": licence.facility_id},
                        {"$inc": {"grant_count": 1}},
                        session=unit.session,
                    )
                    if plant is not None and plant["status"] == "decommissioned":
                        raise ChangedMeanwhile
                if event.routing_key == "license.renewed" and self._renewal_applied_meanwhile(
                    licence, event, unit
                ):
                    raise ChangedMeanwhile
                if licence.registration_number and not before.registration_number:
                    self._hold_registration_number(licence, unit)
                if not self._replace(before, decision, unit):
                    raise ChangedMeanwhile

        try:
            self.unit_of_work(work)
        except ChangedMeanwhile:
            return False
        except DuplicateKeyError as error:
            if f".{REGISTRATION_NUMBERS} " not in str(error):
                raise
            # Another grant took the number between our check and our commit.
            for _, (licence, _) in changes:
                check_registration_number_free(licence, self._holder_of(licence))
            raise
        return True

    def _open_renewals_of(
        self, licence_id: str, session: ClientSession | None = None
    ) -> list[Licence]:
        cursor = self.licences.find(
            {"renews": licence_id, "status": {"$in": list(OPEN_STATUSES)}}, session=session
        )
        return [self._licence(doc) for doc in cursor]

    def _renewal_applied_meanwhile(
        self, licence: Licence, event: LicenceEvent, unit: UnitOfWork
    ) -> bool:
        """Whether a renewal application of the licence, other than the one this renewal
        grants, was opened after the renewal was decided on. The plant's projection is
        written (as an application writes it), so that an application made at the same
        time conflicts with this transaction instead of slipping past it."""
        self.facility_views.update_one(
            {"_id": licence.facility_id},
            {"$inc": {"renewal_count": 1}},
            session=unit.session,
        )
        granting = event.change.fields.get("renewal_application")
        return any(
            found.id != granting for found in self._open_renewals_of(licence.id, unit.session)
        )

    def _hold_registration_number(self, licence: Licence, unit: UnitOfWork) -> None:
        number = licence.registration_number
        held = self.db[REGISTRATION_NUMBERS].find_one({"_id": number}, session=unit.session)
        check_registration_number_free(licence, held["license_id"] if held else None)
        self.db[REGISTRATION_NUMBERS].insert_one(
            {"_id": number, "license_id": licence.id}, session=unit.session
        )

    def _holder_of(self, licence: Licence) -> str | None:
        held = self.db[REGISTRATION_NUMBERS].find_one({"_id": licence.registration_number})
        return held["license_id"] if held else None

    def _replace(self, before: Licence, decision: LicenceDecision, unit: UnitOfWork) -> bool:
        licence, event = decision
        result = self.licences.replace_one(
            {"_id": before.id, "status": before.status, "version": before.version},
            self._document(licence),
            session=unit.session,
        )
        if result.matched_count == 0:
            return False
        self._record(licence, event, unit)
        return True

    def due_for_expiry(self, now: datetime, limit: int) -> list[Licence]:
        cursor = (
            self.licences.find({"status": "granted", "valid_until": {"$lt": now}})
            .sort("valid_until", ASCENDING)
            .limit(limit)
        )
        return [self._licence(doc) for doc in cursor]

    def due_for_expiry_warning(self, now: datetime, limit: int) -> list[Licence]:
        cursor = self.licences.find(
            {"status": "granted", "next_expiry_warning_at": {"$lte": now}}
        ).limit(limit)
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

    def find_as_of(
        self, filters: dict, instant: datetime, after: str | None, limit: int
    ) -> list[dict]:
        """The licences as they stood at `instant` that matched `filters` then: owner,
        plant, venture and type never change; status and validity are matched on each
        licence's state then."""
        scope = {name: filters.pop(name) for name in self.FIXED if name in filters}
        expiring_before = filters.pop("expiring_before", None)
        equal = equal_to(filters)

        def matches(state: dict) -> bool:
            if expiring_before is None:
                return equal(state)
            valid_until = state.get("valid_until")
            bound = datetime.combine(expiring_before, time.min, UTC)
            return (
                valid_until is not None
                and datetime.fromisoformat(valid_until) < bound
                and equal(state)
            )

        return self.versions.list_at(scope, instant, matches, after, limit)

    def history_of(self, licence_id: str, after: str | None, limit: int) -> list[HistoryEntry]:
        query: dict = {"license_id": licence_id}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.history.find(query).sort("_id", ASCENDING).limit(limit)
        return [HistoryEntry.model_validate({**doc, "id": doc["_id"]}) for doc in cursor]

    def facility(self, facility_id: str) -> FacilityView | None:
        doc = self.facility_views.find_one({"_id": facility_id})
        return self._facility(doc) if doc else None

    def apply_facility_event(
        self,
        event: CloudEvent,
        facility: dict,
        end_licence: Callable[[Licence], LicenceDecision] | None = None,
    ) -> bool:
        """Project the facility as `event` left it, in order and once; with `end_licence`
        (the plant was decommissioned), its licences in force end in the same
        transaction, so exactly once."""

        def end_licences_in_force(unit: UnitOfWork) -> None:
            assert end_licence is not None
            in_force = self.licences.find(
                {"facility_id": event.subject, "status": {"$in": list(IN_FORCE_STATUSES)}},
                session=unit.session,
            )
            for licence in [self._licence(doc) for doc in in_force]:
                self._replace(licence, end_licence(licence), unit)

        then = end_licences_in_force if end_licence is not None else None
        return Projection(self.facility_views).apply(self, event, facility, then)

    def _record(self, licence: Licence, event: LicenceEvent, unit: UnitOfWork) -> None:
        """The history entry and the event of one change of the licence."""
        change = event.change
        entry = {
            **to_jsonable(change.model_dump(by_alias=True, exclude={"time"})),
            "_id": history_id(licence.id, licence.version),
            "license_id": licence.id,
            "sequence": licence.version,
            "time": change.time,
        }
        self.history.insert_one(entry, session=unit.session)
        unit.publish(event)

    @staticmethod
    def _document(licence: Licence) -> dict:
        doc = licence.model_dump(exclude={"id"})
        doc["_id"] = licence.id
        # Kept beside the licence so that the sweep finds the warnings due by an index.
        doc["next_expiry_warning_at"] = next_expiry_warning_at(licence)
        return doc

    @staticmethod
    def _licence(doc: dict) -> Licence:
        return Licence.model_validate({**doc, "id": doc["_id"]})

    @staticmethod
    def _facility(doc: dict) -> FacilityView:
        return FacilityView.model_validate({**doc, "id": doc["_id"]})
