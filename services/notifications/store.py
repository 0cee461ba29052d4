"""The notifications service's repository: subscriptions, and the deliveries owed to
them (its outbox of HTTP requests), each with the log of its attempts."""

from datetime import datetime, timedelta

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument

from services.notifications.contract import Delivery, DeliveryAttempt, Subscription
from services.notifications.domain import wants
from shared import codec
from shared.clock import utcnow
from shared.envelope import CloudEvent
from shared.errors import Conflict, NotFound
from shared.inbox import Projection
from shared.mongo import Repository, UnitOfWork

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
ACTIVE, DISABLED = "active", "disabled"


def new_subscription_id() -> str:
    # ObjectIds grow with time, so ids sort in creation order (stable pagination).
    return f"sub_{ObjectId()}"


def delivery_id(subscription_id: str, position: int) -> str:
    """Fixed-width position: a subscription's delivery ids sort in event order."""
    return f"dlv_{subscription_id.removeprefix('sub_')}_{position:010d}"


class NotificationStore(Repository):
    @classmethod
    def ensure_indexes(cls, db):
        super().ensure_indexes(db)
        db.subscriptions.create_index([("owner", ASCENDING), ("_id", ASCENDING)])
        db.subscriptions.create_index([("status", ASCENDING), ("_id", ASCENDING)])
        # One delivery per event and subscription, whatever happens upstream.
        db.deliveries.create_index(
            [("subscription_id", ASCENDING), ("event_id", ASCENDING)], unique=True
        )
        db.deliveries.create_index(
            [("subscription_id", ASCENDING), ("status", ASCENDING), ("position", ASCENDING)]
        )
        db.deliveries.create_index([("status", ASCENDING), ("subscription_id", ASCENDING)])

    @property
    def subscriptions(self):
        return self.db.subscriptions

    @property
    def deliveries(self):
        return self.db.deliveries

    # --- subscriptions -------------------------------------------------------------

    def add_subscription(self, subscription: Subscription, secret: str, most_active: int) -> None:
        """Store a new subscription, unless its organisation already has `most_active`
        active ones (each costs work on every licensing event): 409."""
        doc = subscription.model_dump(exclude={"id"})
        owner = subscription.owner

        def work(unit: UnitOfWork) -> None:
            session = unit.session
            # Writing the organisation's record first makes concurrent creations for
            # one organisation conflict, so they commit one after another and the
            # count below cannot be overtaken.
            self.db.subscription_owners.update_one(
                {"_id": owner}, {"$inc": {"created": 1}}, upsert=True, session=session
            )
            active = self.subscriptions.find(
                {"owner": owner, "status": ACTIVE}, {"_id": 1}, session=session
            ).limit(most_active)
            if len(list(active)) >= most_active:
                raise Conflict(
                    f"{owner} already has {most_active} active subscriptions, the most an "
                    "organisation may have: disable one (DELETE /v1/subscriptions/{id}) or "
                    "widen the patterns of another",
                    extra={"max_active_subscriptions": most_active},
                )
            self.subscriptions.insert_one(
                {**doc, "_id": subscription.id, "secret": secret, "delivery_count": 0},
                session=session,
            )

        self.unit_of_work(work)

    def subscription_document(self, subscription_id: str) -> dict:
        """The stored subscription, secret included (for signing only)."""
        doc = self.subscriptions.find_one({"_id": subscription_id})
        if doc is None:
            raise NotFound(f"no subscription {subscription_id}")
        return doc

    def get_subscription(self, subscription_id: str) -> Subscription:
        return self._subscription(self.subscription_document(subscription_id))

    def find_subscriptions(self, filters: dict, after: str | None, limit: int) -> list:
        query = {field: filters[field] for field in ("owner", "status") if filters.get(field)}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.subscriptions.find(query).sort("_id", ASCENDING).limit(limit)
        return [self._subscription(doc) for doc in cursor]

    def disable(self, subscription_id: str, reason: str) -> Subscription:
        """Disable the subscription and cancel what it still had pending; disabling a
        disabled subscription changes nothing."""
        now = utcnow()

        def work(unit: UnitOfWork) -> dict | None:
            session = unit.session
            doc = self.subscriptions.find_one_and_update(
                {"_id": subscription_id, "status": ACTIVE},
                {
                    "$set": {
                        "status": DISABLED,
                        "disabled_at": now,
                        "disabled_reason": reason,
                        "updated_at": now,
                    }
                },
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if doc is not None:
                self.deliveries.update_many(
                    {"subscription_id": subscription_id, "status": PENDING},
                    {"$set": {"status": CANCELLED, "completed_at": now, "next_attempt_at": None}},
                    session=session,
                )
            return doc

        doc = self.unit_of_work(work)
        return self._subscription(doc) if doc else self.get_subscription(subscription_id)

    # --- from events to deliveries -------------------------------------------------

    def queue_deliveries(self, event: CloudEvent) -> bool:
        """Create one pending delivery per active subscription that wants `event`, in
        the same transaction as its stream's last sequence (so each event fans out
        once), in per-aggregate `sequence` order. Returns whether the event was new."""
        body = codec.dumps(event.wire())

        def fan_out(unit: UnitOfWork) -> None:
            session = unit.session
            now = utcnow()
            for doc in self.subscriptions.find({"status": ACTIVE}, session=session):
                if not wants(self._subscription(doc), event.routing_key):
                    continue
                # The counter serialises concurrent fan-outs to one subscription, so
                # positions follow commit order: the order the receiver sees.
                counted = self.subscriptions.find_one_and_update(
                    {"_id": doc["_id"]},
                    {"$inc": {"delivery_count": 1}},
                    return_document=ReturnDocument.AFTER,
                    session=session,
                )
                position = counted["delivery_count"]
                self.deliveries.insert_one(
                    {
                        "_id": delivery_id(doc["_id"], position),
                        "subscription_id": doc["_id"],
                        "position": position,
                        "event_id": event.id,
                        "event_type": event.type,
                        "subject": event.subject,
                        "sequence": event.sequence,
                        "body": body,
                        "status": PENDING,
                        "attempt_count": 0,
                        "attempts": [],
                        "next_attempt_at": now,
                        "lease_until": now,
                        "created_at": now,
                        "completed_at": None,
                    },
                    session=session,
                )

        # One stream per aggregate of the producer, as the deliveries' order follows it.
        streams = Projection(
            self.db.event_streams,
            sequence_field="last_sequence",
            key_of=lambda event: f"{event.source} {event.subject}",
        )
        return streams.apply(self, event, then=fan_out)

    def delivery_outcomes(self) -> dict[str, int]:
        """Deliveries per outcome (/metrics): not tried yet, retrying after a failed
        attempt, delivered, failed (retries exhausted), cancelled."""
        counts = {
            status: self.deliveries.count_documents({"status": status})
            for status in (PENDING, DELIVERED, FAILED, CANCELLED)
        }
        retrying = self.deliveries.count_documents(
            {"status": PENDING, "attempts.0": {"$exists": True}}
        )
        return {**counts, PENDING: counts[PENDING] - retrying, "retrying": retrying}

    # --- the deliverer's side ------------------------------------------------------

    def subscriptions_with_pending(self) -> list[str]:
        return self.deliveries.distinct("subscription_id", {"status": PENDING})

    def next_pending(self, subscription_id: str) -> dict | None:
        """The subscription's earliest undelivered event: nothing after it may go first."""
        return self.deliveries.find_one(
            {"subscription_id": subscription_id, "status": PENDING},
            sort=[("position", ASCENDING)],
        )

    def claim(self, delivery: dict, owner: str, lease: timedelta) -> dict | None:
        """Take `delivery` for one attempt if it is due and nobody holds it; the lease
        lets another instance take over if this one dies mid-attempt."""
        now = utcnow()
        return self.deliveries.find_one_and_update(
            {
                "_id": delivery["_id"],
                "status": PENDING,
                "next_attempt_at": {"$lte": now},
                "lease_until": {"$lte": now},
            },
            {
                "$set": {"lease_until": now + lease, "lease_owner": owner},
                "$inc": {"attempt_count": 1},
            },
            return_document=ReturnDocument.AFTER,
        )

    def record_attempt(
        self, delivery: dict, owner: str, attempt: DeliveryAttempt, status: str
    ) -> bool:
        """Log the attempt and the delivery's new state, if this instance still holds
        the lease (else another took over and its record wins)."""
        next_attempt_at = attempt.next_retry_at if status == PENDING else None
        result = self.deliveries.update_one(
            {"_id": delivery["_id"], "lease_owner": owner, "status": PENDING},
            {
                "$set": {
                    "status": status,
                    "next_attempt_at": next_attempt_at,
                    "lease_until": attempt.at,
                    "completed_at": None if status == PENDING else utcnow(),
                },
                "$unset": {"lease_owner": ""},
                "$push": {"attempts": attempt.model_dump()},
            },
        )
        return result.modified_count == 1

    def cancel(self, delivery: dict) -> None:
        self.deliveries.update_one(
            {"_id": delivery["_id"], "status": PENDING},
            {"$set": {"status": CANCELLED, "completed_at": utcnow(), "next_attempt_at": None}},
        )

    # --- the delivery log ----------------------------------------------------------

    def find_deliveries(
        self, subscription_id: str, filters: dict, after: str | None, limit: int
    ) -> list[Delivery]:
        query: dict = {"subscription_id": subscription_id}
        if filters.get("status"):
            query["status"] = filters["status"]
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.deliveries.find(query, {"body": 0}).sort("_id", ASCENDING).limit(limit)
        return [Delivery.model_validate({**doc, "id": doc["_id"]}) for doc in cursor]

    @staticmethod
    def _subscription(doc: dict) -> Subscription:
        return Subscription.model_validate({**doc, "id": doc["_id"]})


def is_due(delivery: dict, now: datetime) -> bool:
    """Its next attempt's time has come and no instance holds it."""
    return delivery["next_attempt_at"] <= now and delivery["lease_until"] <= now
