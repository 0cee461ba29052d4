"""The licensing service: DRAP licence applications and their lifecycle, an expiry
sweep, and a projection of the facilities it licenses (from `facilities.events`).
Entrypoints are thin: parse, load, let the domain decide (the new state and its
event), commit both."""

import logging
from datetime import datetime

from nameko.timer import Timer

from services.facilities.contract import FacilityEvent
from services.licensing import contract, domain
from services.licensing.contract import SERVICE
from services.licensing.store import FACILITY_VIEWS, LicenceStore, new_licence_id
from shared import figures  # the module: `nameko run` would take the mixin for a service
from shared.as_of import instant_of
from shared.clock import utcnow
from shared.consistency import ProjectionWatch
from shared.entrypoints import rpc
from shared.envelope import CloudEvent
from shared.errors import validated
from shared.inbox import EventLog, cloud_event_handler, event_log_handler, fields_kept
from shared.mongo import MongoStore
from shared.outbox import OutboxRelay
from shared.settings import Settings

log = logging.getLogger(__name__)

# Licences expired per sweep at most; the next sweep takes the rest.
EXPIRY_BATCH = 200


class ExpirySweepTimer(Timer):
    """nameko's timer, firing every JVREG_EXPIRY_SWEEP_SECONDS of the container's
    config (read at setup, so in-process tests can each choose their own)."""

    def __init__(self, **kwargs):
        super().__init__(interval=None, **kwargs)

    def setup(self):
        self.interval = Settings.from_config(self.container.config).expiry_sweep_seconds

    def stop(self):
        # A second SIGTERM makes `nameko run` stop twice; nameko's timer fails on that.
        if not self.should_stop.ready():
            super().stop()


class LicensingService(figures.ServiceFigures):
    name = SERVICE

    store: LicenceStore = MongoStore(LicenceStore)
    relay = OutboxRelay()
    facilities_seen: ProjectionWatch = ProjectionWatch(FACILITY_VIEWS, "facility")

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "mongo": self.store.ping()}

    @rpc
    def apply_for_license(self, body: str, actor: dict, facility_version: int = 0) -> dict:
        """`facility_version`: the facility's version as the caller read it from its
        owner; the application waits (bounded) until this service has learned of it."""
        application = validated(contract.ApplyForLicence, body)
        self.facilities_seen.require(application.facility_id, facility_version)
        licence_id, now = new_licence_id(), utcnow()

        def submit(
            facility: domain.FacilityView | None,
            last_rejected_at: datetime | None,
            same_type: list[contract.Licence],
        ) -> domain.LicenceDecision:
            return domain.submit(
                application, facility, last_rejected_at, same_type, licence_id, actor, now
            )

        licence = self.store.apply(application.facility_id, application.type, submit)
        return licence.model_dump(mode="json")

    @rpc
    def apply_for_renewal(self, licence_id: str, actor: dict) -> dict:
        """A renewal application of the licence (docs/licensing.md "Renewal")."""
        licence = self.store.get(licence_id)
        application_id, now = new_licence_id(), utcnow()

        def submit(
            facility: domain.FacilityView | None,
            last_rejected_at: datetime | None,  # a renewal is not locked out
            same_type: list[contract.Licence],
        ) -> domain.LicenceDecision:
            return domain.apply_for_renewal(
                licence, facility, same_type, application_id, actor, now
            )

        application = self.store.apply(licence.facility_id, licence.type, submit)
        return application.model_dump(mode="json")

    @rpc
    def transition_license(self, licence_id: str, body: str, actor: dict) -> dict:
        request = validated(contract.RequestTransition, body)

        def decide(
            licence: contract.Licence,
            facility: domain.FacilityView | None,
            renewed: contract.Licence | None,
            renewal_applications: list[contract.Licence],
        ) -> domain.LicenceChanges:
            return domain.decide_changes(
                licence, request, actor, utcnow(), facility, renewed, renewal_applications
            )

        return self.store.transition(licence_id, decide).model_dump(mode="json")

    @rpc
    def get_license(self, licence_id: str, as_of: str | None = None) -> dict:
        """The licence now, or `as_of` an instant (RFC 3339)."""
        if instant := instant_of(as_of):
            return self.store.get_as_of(licence_id, instant)
        return self.store.get(licence_id).model_dump(mode="json")

    @rpc
    def list_licenses(
        self, filters: dict, after: str | None, limit: int, as_of: str | None = None
    ) -> list[dict]:
        """Licences matching `filters` now, or `as_of` an instant."""
        query = validated(contract.LicenceFilters, filters).model_dump(exclude_none=True)
        if instant := instant_of(as_of):
            return self.store.find_as_of(query, instant, after, limit)
        return [licence.model_dump(mode="json") for licence in self.store.find(query, after, limit)]

    @rpc
    def license_history(
        self, licence_id: str, after: str | None, limit: int, as_of: str | None = None
    ) -> list[dict]:
        """The licence's transitions in order; `as_of` an instant, those made by then."""
        instant = instant_of(as_of)
        if instant:
            self.store.get_as_of(licence_id, instant)  # 404 for one applied for later
        else:
            self.store.get(licence_id)  # 404 for a licence that does not exist
        entries = self.store.history_of(licence_id, after, limit)
        return [
            entry.model_dump(mode="json", by_alias=True)
            for entry in entries
            if instant is None or entry.time <= instant
        ]

    @ExpirySweepTimer.decorator
    def expire_due_licences(self):
        """Expire every granted licence past its valid_until, and warn of each expiry
        180, 90 and 30 days ahead. Each change is a conditional update, so when several
        instances sweep at once each licence expires, and each warning goes out, once."""
        now = utcnow()
        for licence in self.store.due_for_expiry(now, EXPIRY_BATCH):
            if self.store.commit(licence, domain.expire(licence, now)):
                log.info("licence %s expired (valid until %s)", licence.id, licence.valid_until)
        for licence in self.store.due_for_expiry_warning(now, EXPIRY_BATCH):
            if licence.valid_until is not None and licence.valid_until <= now:
                continue  # expired by the next sweep, not warned of
            warning = domain.warn_of_expiry(licence, now)
            if self.store.commit(licence, warning):
                days = warning[1].change.fields["days_before"]
                log.info("licence %s: warned of its expiry, %d days ahead", licence.id, days)

    @cloud_event_handler(contract.FOLLOWS_FACILITIES)
    def follow_facility(self, event: CloudEvent, changed: FacilityEvent):
        kept = fields_kept(domain.FacilityView, changed.facility)
        decommissioned = kept.get("status") == "decommissioned"
        now = utcnow()

        def end_licence(licence: contract.Licence) -> domain.LicenceDecision:
            return domain.end_with_plant(licence, event.subject, now)

        self.store.apply_facility_event(event, kept, end_licence if decommissioned else None)

    @event_log_handler(SERVICE)
    def keep_event_log(self, event):
        EventLog(self.store.db).keep(event)
