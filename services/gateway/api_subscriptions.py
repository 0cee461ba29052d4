"""/v1/subscriptions: regulators' webhooks, over the notifications service."""

from services.gateway.http import api, json_response, read_json_body
from services.gateway.openapi import LIST_PARAMS, operation, page_of, parameters_of, path_param
from services.notifications.contract import (
    CreateSubscription,
    Delivery,
    DeliveryAttempt,
    DeliveryFilters,
    Subscription,
    SubscriptionCreated,
    SubscriptionFilters,
)
from shared.errors import NotFound
from shared.pagination import decode_cursor, page, parse_limit

PAGING_PARAMS = ("limit", "cursor")
SUBSCRIBERS = ("regulator", "ops")


class SubscriptionRoutes:
    """Mixed into the gateway service, which provides `notifications` and `principal`."""

    def _own_subscription(self, principal, subscription_id: str) -> dict:
        """A regulator sees its own organisation's subscriptions; ops sees all."""
        subscription = self.notifications.get_subscription(subscription_id)
        if principal.role != "ops" and subscription["owner"] != principal.owner:
            # Not 403: one regulator learns nothing of another's webhooks.
            raise NotFound(f"no subscription {subscription_id}")
        return subscription

    @api("POST", "/v1/subscriptions")
    def create_subscription(self, request):
        principal = self.principal(request).require(*SUBSCRIBERS)
        subscription = self.notifications.create_subscription(
            read_json_body(request), principal.model_dump()
        )
        return json_response(
            subscription, 201, {"Location": f"/v1/subscriptions/{subscription['id']}"}
        )

    @api("GET", "/v1/subscriptions")
    def list_subscriptions(self, request):
        principal = self.principal(request).require(*SUBSCRIBERS)
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        filters = {k: v for k, v in request.args.items() if k not in PAGING_PARAMS}
        if principal.role != "ops":
            filters["owner"] = principal.owner
        items = self.notifications.list_subscriptions(filters, after, limit + 1)
        return json_response(page(items, limit))

    @api("GET", "/v1/subscriptions/<subscription_id>")
    def get_subscription(self, request, subscription_id):
        principal = self.principal(request).require(*SUBSCRIBERS)
        return json_response(self._own_subscription(principal, subscription_id))

    @api("DELETE", "/v1/subscriptions/<subscription_id>")
    def disable_subscription(self, request, subscription_id):
        principal = self.principal(request).require(*SUBSCRIBERS)
        self._own_subscription(principal, subscription_id)
        subscription = self.notifications.disable_subscription(
            subscription_id, principal.model_dump()
        )
        return json_response(subscription)

    @api("GET", "/v1/subscriptions/<subscription_id>/deliveries")
    def list_deliveries(self, request, subscription_id):
        principal = self.principal(request).require(*SUBSCRIBERS)
        self._own_subscription(principal, subscription_id)
        limit = parse_limit(request.args.get("limit"))
        after = decode_cursor(request.args.get("cursor"))
        filters = {k: v for k, v in request.args.items() if k not in PAGING_PARAMS}
        items = self.notifications.list_deliveries(subscription_id, filters, after, limit + 1)
        return json_response(page(items, limit))


SubscriptionPage = page_of(Subscription)
DeliveryPage = page_of(Delivery)
OPENAPI_MODELS = [
    CreateSubscription,
    Subscription,
    SubscriptionCreated,
    SubscriptionPage,
    DeliveryAttempt,
    DeliveryFilters,
    Delivery,
    DeliveryPage,
]


def openapi_paths() -> dict:
    subscription_id = [path_param("subscription_id")]
    return {
        "/v1/subscriptions": {
            "post": operation(
                "Subscribe a webhook to licensing events (regulator, ops); the signing "
                "secret is in this response only",
                201,
                SubscriptionCreated,
                CreateSubscription,
                headers=("Location",),
                refusals=(403, 409),
            ),
            "get": operation(
                "List webhook subscriptions (a regulator sees its organisation's)",
                200,
                SubscriptionPage,
                params=LIST_PARAMS + parameters_of(SubscriptionFilters),
                refusals=(403,),
            ),
        },
        "/v1/subscriptions/{subscription_id}": {
            "get": operation(
                "Read a subscription", 200, Subscription, params=subscription_id, refusals=(403,)
            ),
            "delete": operation(
                "Disable a subscription; its pending deliveries are cancelled",
                200,
                Subscription,
                params=subscription_id,
                refusals=(403, 409),
            ),
        },
        "/v1/subscriptions/{subscription_id}/deliveries": {
            "get": operation(
                "Deliveries to a subscription, each with every attempt (status code or "
                "error, latency, next retry)",
                200,
                DeliveryPage,
                params=subscription_id + LIST_PARAMS + parameters_of(DeliveryFilters),
                refusals=(403,),
            ),
        },
    }
