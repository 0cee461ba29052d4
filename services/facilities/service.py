"""The facilities service: registers the plants of joint ventures and keeps their
status in step with the venture (from `ventures.events`) and the plant's manufacturing
licences (from `licensing.events`). Entrypoints are thin: parse, apply the domain
rules, persist (with the event)."""

from services.facilities import domain
from services.facilities.events import (
    FACILITY_REGISTERED,
    FACILITY_STATUS_CHANGED,
    SERVICE,
    LicenceChanged,
    VentureChanged,
    facility_event,
)
from services.facilities.store import FacilityChange, FacilityStore, new_facility_id
from shared.clock import utcnow
from shared.entrypoints import rpc
from shared.envelope import CloudEvent
from shared.errors import validated
from shared.inbox import EventLog, cloud_event_handler, event_log_handler
from shared.mongo import MongoStore
from shared.outbox import OutboxRelay


def with_event(change: tuple[domain.Facility, dict | None]) -> FacilityChange:
    """A facility change with the `facility.status_changed` event it causes, if any."""
    facility, status_change = change
    if status_change is None:
        return facility, None
    return facility, facility_event(FACILITY_STATUS_CHANGED, facility, status_change)


class FacilitiesService:
    name = SERVICE

    store: FacilityStore = MongoStore(FacilityStore)
    relay = OutboxRelay()

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "mongo": self.store.ping()}

    @rpc
    def register_facility(self, venture_id: str, body: str, actor: dict) -> dict:
        fields = validated(domain.RegisterFacility, body)

        def register(venture: domain.VentureView | None) -> FacilityChange:
            domain.check_venture_accepts_facilities(venture, venture_id)
            now = utcnow()
            facility = domain.Facility(
                **fields.model_dump(),
                id=new_facility_id(),
                venture_id=venture_id,
                owner=venture.owner,
                status="planned",
                version=1,
                created_at=now,
                updated_at=now,
            )
            change = {"from": None, "to": "planned", "reason": "registered", "actor": actor}
            return facility, facility_event(FACILITY_REGISTERED, facility, change)

        return self.store.register(venture_id, register).model_dump(mode="json")

    @rpc
    def get_facility(self, facility_id: str) -> dict:
        return self.store.get(facility_id).model_dump(mode="json")

    @rpc
    def list_facilities(self, filters: dict, after: str | None, limit: int) -> list[dict]:
        query = validated(domain.FacilityFilters, filters)
        found = self.store.find(query.model_dump(exclude_none=True), after, limit)
        return [facility.model_dump(mode="json") for facility in found]

    @cloud_event_handler("ventures", "venture.#")
    def follow_venture(self, event: CloudEvent):
        changed = VentureChanged.model_validate(event.data)
        venture = changed.venture
        now = utcnow()

        reason = f"{event.routing_key} {venture.id} ({venture.status})"
        if changed.change.get("reason"):
            reason += f": {changed.change['reason']}"

        def follow(facility: domain.Facility) -> FacilityChange:
            return with_event(
                domain.follow_venture(
                    facility, venture.status, reason, changed.change.get("actor", {}), now
                )
            )

        projected = venture.model_dump(exclude={"id"})
        self.store.apply_venture_event(event, projected, follow)

    @cloud_event_handler("licensing", "license.#")
    def follow_licence(self, event: CloudEvent):
        changed = LicenceChanged.model_validate(event.data)
        licence = changed.license
        if not domain.is_manufacturing_licence(licence.type):
            return  # only manufacturing licences decide whether a plant may operate
        reason = f"{event.routing_key} {licence.id} ({licence.type})"
        if changed.change.get("reason"):
            reason += f": {changed.change['reason']}"
        now = utcnow()

        def follow(facility: domain.Facility) -> FacilityChange:
            return with_event(
                domain.follow_licence(
                    facility,
                    licence.id,
                    licence.status,
                    reason,
                    changed.change.get("actor", {}),
                    now,
                )
            )

        self.store.apply_licence_event(event, licence.facility_id, follow)

    @event_log_handler(SERVICE)
    def keep_event_log(self, event):
        EventLog(self.store.db).keep(event)
