"""The gateway: HTTP, authentication and authorisation in front of the registry's
services. It composes their answers by RPC and holds none of their rules."""

import eventlet
from kombu import Connection
from nameko.dependency_providers import Config
from pydantic import ValidationError

from services.gateway import (
    api_facilities,
    api_investments,
    api_licensing,
    api_subscriptions,
    api_ventures,
)
from services.gateway.clients import ServiceClient
from services.gateway.http import api, json_response, read_json_body
from services.gateway.idempotency import IdempotentCommands
from services.gateway.keys import ApiKeys, CreateApiKey, Principal
from services.gateway.openapi import openapi_document
from shared.errors import invalid_input
from shared.settings import Settings

# Each contributes a mixin of routes (`*Routes`) and its part of the OpenAPI document.
ROUTE_MODULES = [api_ventures, api_subscriptions, api_investments, api_facilities, api_licensing]
BACKEND_SERVICES = ("ventures", "facilities", "licensing", "investments", "notifications")
HEALTH_TIMEOUT_SECONDS = 3


class GatewayService(
    api_ventures.VentureRoutes,
    api_subscriptions.SubscriptionRoutes,
    api_investments.InvestmentRoutes,
    api_facilities.FacilityRoutes,
    api_licensing.LicenceRoutes,
):
    name = "gateway"

    config = Config()
    keys = ApiKeys()
    idempotency = IdempotentCommands()  # used by the HTTP entrypoint, not by routes
    ventures = ServiceClient("ventures")
    facilities = ServiceClient("facilities")
    licensing = ServiceClient("licensing")
    investments = ServiceClient("investments")
    notifications = ServiceClient("notifications")

    def principal(self, request) -> Principal:
        return self.keys.authenticate(request.headers.get("Authorization"))

    @api("GET", "/health")
    def health(self, request):
        checks = {}

        def check(name, probe):
            try:
                with eventlet.Timeout(HEALTH_TIMEOUT_SECONDS):
                    probe()
                checks[name] = "ok"
            except (Exception, eventlet.Timeout) as error:
                checks[name] = f"down: {getattr(error, 'detail', None) or error!r}"

        def ping_broker():
            settings = Settings.from_config(self.config)
            with Connection(settings.amqp_uri, connect_timeout=HEALTH_TIMEOUT_SECONDS) as conn:
                conn.ensure_connection(max_retries=1)

        pool = eventlet.GreenPool()
        pool.spawn(check, "mongo", self.keys.ping)
        pool.spawn(check, "rabbitmq", ping_broker)
        for service in BACKEND_SERVICES:
            client = getattr(self, service).within(HEALTH_TIMEOUT_SECONDS)
            pool.spawn(check, service, client.ping)
        pool.waitall()
        healthy = all(state == "ok" for state in checks.values())
        body = {"status": "ok" if healthy else "degraded", "checks": dict(sorted(checks.items()))}
        return json_response(body, 200 if healthy else 503)

    @api("GET", "/openapi.json")
    def openapi(self, request):
        return json_response(openapi_document())

    @api("POST", "/v1/api-keys")
    def create_api_key(self, request):
        principal = self.principal(request).require("ops")
        try:
            command = CreateApiKey.model_validate_json(read_json_body(request))
        except ValidationError as error:
            raise invalid_input(error) from None
        created = self.keys.create(command.role, command.owner, created_by=principal.key_id)
        return json_response(created.model_dump(mode="json"), 201)
