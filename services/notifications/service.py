"""The notifications service: regulators' webhook subscriptions, and the delivery of
every matching licensing event to them (signed, in order, retried, logged).

It publishes no events of its own, so it needs no outbox relay: its outbox is the
`deliveries` collection, drained over HTTP by `WebhookDelivery`."""

from eventlet.semaphore import Semaphore
from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider

from services.licensing.contract import LicenceEvent
from services.notifications import contract, domain
from services.notifications.delivery import HostResolver, WebhookDelivery
from services.notifications.store import NotificationStore, new_subscription_id
from shared import figures  # the module: `nameko run` would take the mixin for a service
from shared.clock import utcnow
from shared.entrypoints import rpc
from shared.envelope import CloudEvent
from shared.errors import validated
from shared.inbox import cloud_event_handler
from shared.mongo import MongoStore
from shared.settings import Settings


class ArrivalOrder(DependencyProvider):
    """One lock per container, granted first come first served (eventlet's semaphore
    queues its waiters): events are fanned out one at a time in the order they came
    off the queue, so a backlog does not race itself out of order. Across instances
    the inbox's per-aggregate sequence check keeps the order."""

    def setup(self):
        self.lock = Semaphore(1)

    def get_dependency(self, worker_ctx):
        return self.lock


class NotificationsService(figures.ServiceFigures):
    name = contract.SERVICE

    config = Config()
    store: NotificationStore = MongoStore(NotificationStore)
    resolve = HostResolver()
    delivery = WebhookDelivery()
    arrival_order = ArrivalOrder()

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "mongo": self.store.ping()}

    def own_figures(self) -> dict:
        return {"webhook_deliveries": self.store.delivery_outcomes()}

    @rpc
    def create_subscription(self, body: str, actor: dict) -> dict:
        command = validated(contract.CreateSubscription, body)
        settings = Settings.from_config(self.config)
        domain.check_event_type_count(command, settings.webhook_max_event_types)
        domain.check_destination(command.url, self.resolve, settings.webhook_allow_private)
        now = utcnow()
        subscription = contract.Subscription(
            **command.model_dump(),
            id=new_subscription_id(),
            status="active",
            owner=actor["owner"],
            created_by=actor["key_id"],
            created_at=now,
            updated_at=now,
        )
        secret = domain.new_secret()
        self.store.add_subscription(
            subscription, secret, settings.webhook_max_subscriptions_per_owner
        )
        created = contract.SubscriptionCreated(**subscription.model_dump(), secret=secret)
        return created.model_dump(mode="json")

    @rpc
    def get_subscription(self, subscription_id: str) -> dict:
        return self.store.get_subscription(subscription_id).model_dump(mode="json")

    @rpc
    def list_subscriptions(self, filters: dict, after: str | None, limit: int) -> list[dict]:
        query = validated(contract.SubscriptionFilters, filters)
        found = self.store.find_subscriptions(query.model_dump(exclude_none=True), after, limit)
        return [subscription.model_dump(mode="json") for subscription in found]

    @rpc
    def disable_subscription(self, subscription_id: str, actor: dict) -> dict:
        reason = f"disabled by {actor['owner']} (key {actor['key_id']})"
        return self.store.disable(subscription_id, reason).model_dump(mode="json")

    @rpc
    def list_deliveries(
        self, subscription_id: str, filters: dict, after: str | None, limit: int
    ) -> list[dict]:
        query = validated(contract.DeliveryFilters, filters)
        self.store.get_subscription(subscription_id)  # 404 for an unknown subscription
        found = self.store.find_deliveries(
            subscription_id, query.model_dump(exclude_none=True), after, limit
        )
        return [delivery.model_dump(mode="json") for delivery in found]

    @cloud_event_handler(contract.DELIVERS_LICENSING)
    def queue_webhook_deliveries(self, event: CloudEvent, decision: LicenceEvent):
        # A webhook delivers the event as published; its data has been checked against
        # the licensing service's contract on the way in.
        with self.arrival_order:
            self.store.queue_deliveries(event)
