"""The facilities service: registers the plants of joint ventures and keeps their
status in step with the venture (from `ventures.events`) and the plant's manufacturing
licences (from `licensing.events`). Entrypoints are thin: parse, load, let the domain
decide (the new state and its event), commit both."""

from services.facilities import contract, domain
from services.facilities.contract import SERVICE
from services.facilities.domain import FacilityChange
from services.facilities.store import (
    LICENCE_SEQUENCES,
    VENTURE_VIEWS,
    FacilityStore,
    new_facility_id,
)
from services.licensing.contract import LicenceEvent
from services.ventures.contract import VentureEvent
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


class FacilitiesService(figures.ServiceFigures):
    name = SERVICE

    store: FacilityStore = MongoStore(FacilityStore)
    relay = OutboxRelay()
    ventures_seen: ProjectionWatch = ProjectionWatch(VENTURE_VIEWS, "venture")
    licences_seen: ProjectionWatch = ProjectionWatch(LICENCE_SEQUENCES, "licence")

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "mongo": self.store.ping()}

    @rpc
    def register_facility(
        self, venture_id: str, body: str, actor: dict, venture_version: int = 0
    ) -> dict:
        """`venture_version`: the venture's version as the caller read it from its owner;
        the registration waits (bounded) until this service has learned of it."""
        command = validated(contract.RegisterFacility, body)
        self.ventures_seen.require(venture_id, venture_version)
        facility_id, now = new_facility_id(), utcnow()

        def register(venture: domain.VentureView | None) -> FacilityChange:
            return domain.register(command, venture, venture_id, facility_id, actor, now)

        return self.store.register(venture_id, register).model_dump(mode="json")

    @rpc
    def caught_up_with_licence(self, licence_id: str, licence_type: str, version: int) -> bool:
        """Whether the plant's status follows the licence as of `version`, waiting
        (bounded) until it does; True at once for a type plants do not follow."""
        if not domain.is_manufacturing_licence(licence_type):
            return True
        return self.licences_seen.wait_for(licence_id, version)

    @rpc
    def get_facility(self, facility_id: str, as_of: str | None = None) -> dict:
        """The facility now, or `as_of` an instant (RFC 3339)."""
        if instant := instant_of(as_of):
            return self.store.get_as_of(facility_id, instant)
        return self.store.get(facility_id).model_dump(mode="json")

    @rpc
    def list_facilities(
        self, filters: dict, after: str | None, limit: int, as_of: str | None = None
    ) -> list[dict]:
        """Facilities matching `filters` now, or `as_of` an instant."""
        query = validated(contract.FacilityFilters, filters).model_dump(exclude_none=True)
        if instant := instant_of(as_of):
            return self.store.find_as_of(query, instant, after, limit)
        return [
            facility.model_dump(mode="json") for facility in self.store.find(query, after, limit)
        ]

    @cloud_event_handler(contract.FOLLOWS_VENTURES)
    def follow_venture(self, event: CloudEvent, changed: VentureEvent):
        venture = changed.venture
        now = utcnow()

        reason = f"{event.routing_key} {venture.id} ({venture.status})"
        if changed.change.reason:
            reason += f": {changed.change.reason}"
        actor = changed.change.actor.model_dump()

        def follow(facility: contract.Facility) -> FacilityChange:
            return domain.follow_venture(facility, venture.status, reason, actor, now)

        kept = fields_kept(domain.VentureView, venture)
        self.store.apply_venture_event(event, kept, follow)

    @cloud_event_handler(contract.FOLLOWS_LICENCES)
    def follow_licence(self, event: CloudEvent, changed: LicenceEvent):
        licence = changed.license
        if not domain.is_manufacturing_licence(licence.type):
            return  # only manufacturing licences decide whether a plant may operate
        reason = f"{event.routing_key} {licence.id} ({licence.type})"
        if changed.change.reason:
            reason += f": {changed.change.reason}"
        actor = changed.change.actor.model_dump()
        now = utcnow()

        def follow(facility: contract.Facility) -> FacilityChange:
            return domain.follow_licence(facility, licence.id, licence.status, reason, actor, now)

        self.store.apply_licence_event(event, licence.facility_id, follow)

    @event_log_handler(SERVICE)
    def keep_event_log(self, event):
        EventLog(self.store.db).keep(event)
