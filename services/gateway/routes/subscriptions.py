"""/v1/subscriptions: regulators' webhooks, over the notifications service."""

from typing import Any

from services.gateway.http import json_response, read_json_body
from services.gateway.keys import Role
from services.gateway.routing import route
from services.notifications.contract import (
    CreateSubscription,
    Delivery,
    DeliveryFilters,
    Subscription,
    SubscriptionCreated,
    SubscriptionFilters,
)
from shared.errors import NotFound
from shared.pagination import filters_in, page_of, paged

SUBSCRIBERS: tuple[Role, ...] = ("regulator", "ops")
TAG = "subscriptions"


class SubscriptionRoutes:
    """Mixed into the gateway service, which provides `notifications` and `principal`."""

    notifications: Any  # a nameko dependency of the gateway service

    def _own_subscription(self, principal, subscription_id: str) -> dict:
        """A regulator sees its own organisation's subscriptions; ops sees all."""
        subscription = self.notifications.get_subscription(subscription_id)
        if principal.role != "ops" and subscription["owner"] != principal.owner:
            # Not 403: one regulator learns nothing of another's webhooks.
            raise NotFound(f"no subscription {subscription_id}")
        return subscription

    @route(
        "POST",
        "/v1/subscriptions",
        summary="Subscribe a webhook to licensing events; the signing secret is in this "
        "response only",
        tag=TAG,
        roles=SUBSCRIBERS,
        body=CreateSubscription,
        response=SubscriptionCreated,
        status=(201,),
        headers=("Location",),
        refusals=(403, 409),
    )
    def create_subscription(self, request, principal):
        subscription = self.notifications.create_subscription(
            read_json_body(request), principal.model_dump()
        )
        return json_response(
            subscription, 201, {"Location": f"/v1/subscriptions/{subscription['id']}"}
        )

    @route(
        "GET",
        "/v1/subscriptions",
        summary="List webhook subscriptions (a regulator sees its organisation's)",
        tag=TAG,
        roles=SUBSCRIBERS,
        query=SubscriptionFilters,
        paged=True,
        response=page_of(Subscription),
        refusals=(403,),
    )
    def list_subscriptions(self, request, principal):
        filters = filters_in(request.args)
        if principal.role != "ops":
            filters["owner"] = principal.owner
        return json_response(
            paged(
                lambda after, limit: self.notifications.list_subscriptions(filters, after, limit),
                request.args,
            )
        )

    @route(
        "GET",
        "/v1/subscriptions/<subscription_id>",
        summary="Read a subscription",
        tag=TAG,
        roles=SUBSCRIBERS,
        response=Subscription,
        refusals=(403,),
    )
    def get_subscription(self, request, principal, subscription_id):
        return json_response(self._own_subscription(principal, subscription_id))

    @route(
        "DELETE",
        "/v1/subscriptions/<subscription_id>",
        summary="Disable a subscription; its pending deliveries are cancelled",
        tag=TAG,
        roles=SUBSCRIBERS,
        response=Subscription,
        refusals=(403, 409),
    )
    def disable_subscription(self, request, principal, subscription_id):
        self._own_subscription(principal, subscription_id)
        subscription = self.notifications.disable_subscription(
            subscription_id, principal.model_dump()
        )
        return json_response(subscription)

    @route(
        "GET",
        "/v1/subscriptions/<subscription_id>/deliveries",
        summary="Deliveries to a subscription, each with every attempt (status code or "
        "error, latency, next retry)",
        tag=TAG,
        roles=SUBSCRIBERS,
        query=DeliveryFilters,
        paged=True,
        response=page_of(Delivery),
        refusals=(403,),
    )
    def list_deliveries(self, request, principal, subscription_id):
        self._own_subscription(principal, subscription_id)
        filters = filters_in(request.args)
        return json_response(
            paged(
                lambda after, limit: self.notifications.list_deliveries(
                    subscription_id, filters, after, limit
                ),
                request.args,
            )
        )
