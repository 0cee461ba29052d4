"""The ventures service: registers joint ventures and keeps their lifecycle.
Entrypoints are thin: parse, load, let the domain decide (the new state and its
event), commit both."""

from services.ventures import contract, domain
from services.ventures.contract import SERVICE
from services.ventures.store import VentureStore, new_venture_id
from shared import figures  # the module: `nameko run` would take the mixin for a service
from shared.as_of import instant_of
from shared.clock import utcnow
from shared.entrypoints import rpc
from shared.errors import validated
from shared.inbox import EventLog, event_log_handler
from shared.mongo import MongoStore
from shared.outbox import OutboxRelay


class VenturesService(figures.ServiceFigures):
    name = SERVICE

    store: VentureStore = MongoStore(VentureStore)
    relay = OutboxRelay()

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "mongo": self.store.ping()}

    @rpc
    def register_venture(self, body: str, actor: dict) -> dict:
        command = validated(contract.RegisterVenture, body)
        venture, event = domain.register(command, new_venture_id(), actor, utcnow())
        self.store.add(venture, event)
        return venture.model_dump(mode="json")

    @rpc
    def get_venture(self, venture_id: str, as_of: str | None = None) -> dict:
        """The venture now, or `as_of` an instant (RFC 3339)."""
        if instant := instant_of(as_of):
            return self.store.get_as_of(venture_id, instant)
        return self.store.get(venture_id).model_dump(mode="json")

    @rpc
    def list_ventures(
        self, filters: dict, after: str | None, limit: int, as_of: str | None = None
    ) -> list[dict]:
        """Ventures matching `filters` now, or `as_of` an instant (then without `q`)."""
        query = validated(contract.VentureFilters, filters).model_dump(exclude_none=True)
        if instant := instant_of(as_of):
            return self.store.find_as_of(query, instant, after, limit)
        return [venture.model_dump(mode="json") for venture in self.store.find(query, after, limit)]

    @rpc
    def update_venture(
        self, venture_id: str, body: str, expected_version: int, actor: dict
    ) -> dict:
        command = validated(contract.UpdateVenture, body)
        updated, event = domain.update(self.store.get(venture_id), command, actor, utcnow())
        self.store.replace(updated, event, expected_version)
        return updated.model_dump(mode="json")

    @rpc
    def change_venture_status(self, venture_id: str, body: str, actor: dict) -> dict:
        command = validated(contract.ChangeVentureStatus, body)
        venture = self.store.get(venture_id)
        changed, event = domain.change_status(venture, command, actor, utcnow())
        self.store.replace(changed, event, venture.version)
        return changed.model_dump(mode="json")

    @event_log_handler(SERVICE)
    def keep_event_log(self, event):
        EventLog(self.store.db).keep(event)
