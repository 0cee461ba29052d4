"""The gateway: HTTP, authentication and authorisation in front of the registry's
services. It composes their answers by RPC and holds none of their rules."""

import eventlet
from kombu import Connection
from nameko.dependency_providers import Config
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import docs
from services.gateway.asyncapi import asyncapi_document, event_catalogue
from services.gateway.clients import BACKEND_SERVICES, GATEWAY, ServiceClient
from services.gateway.http import json_response
from services.gateway.idempotency import IdempotentCommands
from services.gateway.keys import ApiKeys, Principal
from services.gateway.lists import Remembering
from services.gateway.openapi import openapi_document

# Modules, not their classes: `nameko run` would take a mixin of routes for a service.
from services.gateway.routes import api_keys as api_key_routes
from services.gateway.routes import certificates as certificate_routes
from services.gateway.routes import exports as export_routes
from services.gateway.routes import facilities as facility_routes
from services.gateway.routes import investments as investment_routes
from services.gateway.routes import licensing as licence_routes
from services.gateway.routes import metrics as metrics_routes
from services.gateway.routes import public as public_routes
from services.gateway.routes import register_pages
from services.gateway.routes import subscriptions as subscription_routes
from services.gateway.routes import ventures as venture_routes
from services.gateway.routes import web as web_routes
from services.gateway.routing import route, routes_of
from services.gateway.throttle import Throttle, is_expensive_read
from services.gateway.web.sessions import WebSessions
from shared.errors import Unauthorized
from shared.settings import Settings

HEALTH_TIMEOUT_SECONDS = 3


class Health(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "checks": {"mongo": "ok", "rabbitmq": "ok", "ventures": "ok"},
                }
            ]
        }
    )

    status: str = Field(description="ok or degraded")
    checks: dict[str, str]


class RememberingServiceClient(ServiceClient):
    """The client of a service owning ventures, facilities or licences: the versions it
    answers are remembered a moment, for lists to wait for (read your writes, §10)."""

    def get_dependency(self, worker_ctx):
        return Remembering(super().get_dependency(worker_ctx))


class GatewayService(
    api_key_routes.ApiKeyRoutes,
    venture_routes.VentureRoutes,
    subscription_routes.SubscriptionRoutes,
    investment_routes.InvestmentRoutes,
    export_routes.FlowExportRoutes,
    facility_routes.FacilityRoutes,
    licence_routes.LicenceRoutes,
    certificate_routes.CertificateRoutes,
    public_routes.PublicRoutes,
    register_pages.RegisterPages,
    web_routes.WebRoutes,
    metrics_routes.MetricsRoutes,
):
    name = GATEWAY

    config = Config()
    keys = ApiKeys()
    idempotency = IdempotentCommands()  # used by the HTTP entrypoint, not by routes
    throttle = Throttle()
    sessions = WebSessions()  # the web pages' (routes/web.py)
    ventures = RememberingServiceClient("ventures")
    facilities = RememberingServiceClient("facilities")
    licensing = RememberingServiceClient("licensing")
    search = ServiceClient("search")
    investments = ServiceClient("investments")
    notifications = ServiceClient("notifications")

    def principal(self, request) -> Principal:
        """The caller, throttled: an address that failed to authenticate too often is
        429 before its key is looked at; expensive reads are counted per key."""
        address = request.remote_addr or "unknown"
        self.throttle.check_address(address)
        try:
            principal = self.keys.authenticate(request.headers.get("Authorization"))
        except Unauthorized:
            self.throttle.failed_authentication(address)
            raise
        if is_expensive_read(request):
            self.throttle.expensive_read(principal.key_id)
        return principal

    @route(
        "GET",
        "/health",
        summary="Health of every part",
        tag="operations",
        public=True,
        response=Health,
        status=(200, 503),
    )
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

    @route(
        "GET",
        "/openapi.json",
        summary="This document (OpenAPI 3.1)",
        tag="operations",
        public=True,
        response=None,
    )
    def openapi(self, request):
        return json_response(openapi_document(ROUTES))

    @route(
        "GET",
        "/asyncapi.json",
        summary="The events the registry publishes and consumes (AsyncAPI 3.0)",
        tag="operations",
        public=True,
        response=None,
    )
    def asyncapi(self, request):
        return json_response(asyncapi_document())

    @route(
        "GET",
        "/docs",
        summary="This document, readable (Swagger UI)",
        tag="operations",
        public=True,
        response=None,
        media_type="text/html",
    )
    def docs_page(self, request):
        return docs.page("/openapi.json", "/docs")

    @route(
        "GET",
        "/docs/events",
        summary="The event catalogue, readable (generated from /asyncapi.json)",
        tag="operations",
        public=True,
        response=None,
        media_type="text/html",
    )
    def docs_events(self, request):
        return docs.catalogue_page(event_catalogue(asyncapi_document()))

    @route(
        "GET",
        "/docs/<asset>",
        summary="The files of Swagger UI",
        tag="operations",
        public=True,
        path_model=docs.Asset,
        response=None,
    )
    def docs_asset(self, request, asset):
        return docs.asset(asset)


ROUTES = tuple(routes_of(GatewayService))
