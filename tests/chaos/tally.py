"""A regulator's consumer for the chaos suite, run like every service (`nameko run
tests.chaos.tally`): it applies each licensing event through the registry's own
ordering and de-duplication (`Projection`, by each licence's last applied sequence),
and its effect leaves evidence the suite counts independently of that mechanism's
claims, in collections it does not touch: a counter per event id (more than 1 = applied
twice) and, per licence, the list of sequences applied (must only ever increase)."""

from pydantic import BaseModel, ConfigDict

from services.licensing import contract as licensing
from services.notifications.service import ArrivalOrder
from shared.contract import Subscription
from shared.envelope import CloudEvent
from shared.inbox import Projection, cloud_event_handler
from shared.mongo import MongoStore, Repository, UnitOfWork

SERVICE = "chaos_tally"


class AnyData(BaseModel):
    """Whatever the data: this consumer checks it itself, and fails on what it cannot
    apply (the poison that fails at every delivery)."""

    model_config = ConfigDict(extra="allow")


LICENSING_EVENTS = Subscription(
    f"{SERVICE}.tally",
    licensing.SERVICE,
    "license.#",
    lambda: dict.fromkeys(licensing.EVENTS, AnyData),
)


class EventDoesNotDescribeItsSubject(Exception):
    """The event's data is not the licence it names: this consumer cannot apply it."""


class TallyService:
    name = SERVICE

    store: Repository = MongoStore(Repository)
    # One event at a time, in the order they come off the queue, as a regulator's
    # sequential consumer would apply them.
    one_at_a_time = ArrivalOrder()

    @cloud_event_handler(LICENSING_EVENTS)
    def tally(self, event: CloudEvent, data: BaseModel):
        licence = event.data.get("license") or {}
        if (licence.get("id"), licence.get("version")) != (event.subject, event.sequence):
            raise EventDoesNotDescribeItsSubject(
                f"{event.type} {event.id}: data describes {licence.get('id')!r} "
                f"version {licence.get('version')!r}"
            )
        db = self.store.db

        def effect(unit: UnitOfWork) -> None:
            session = unit.session
            db.effects.update_one(
                {"_id": event.id},
                {"$inc": {"count": 1}, "$set": {"subject": event.subject}},
                upsert=True,
                session=session,
            )
            db.licences.update_one(
                {"_id": event.subject},
                {"$push": {"applied": event.sequence}},
                upsert=True,
                session=session,
            )

        with self.one_at_a_time:
            Projection(db.licence_sequences).apply(self.store, event, then=effect)
