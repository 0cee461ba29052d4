"""The ventures service: registers joint ventures and keeps their lifecycle.
Entrypoints are thin: parse, apply the domain rules, persist (with the event)."""

from pydantic import ValidationError

from services.ventures import domain
from services.ventures.events import (
    SERVICE,
    VENTURE_REGISTERED,
    VENTURE_STATUS_CHANGED,
    VENTURE_UPDATED,
    venture_event,
)
from services.ventures.store import VentureStore, new_venture_id
from shared.clock import utcnow
from shared.entrypoints import rpc
from shared.errors import invalid_input, validated
from shared.inbox import EventLog, event_log_handler
from shared.mongo import MongoStore
from shared.outbox import OutboxRelay


class VenturesService:
    name = SERVICE

    store: VentureStore = MongoStore(VentureStore)
    relay = OutboxRelay()

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "mongo": self.store.ping()}

    @rpc
    def register_venture(self, body: str, actor: dict) -> dict:
        fields = validated(domain.RegisterVenture, body)
        now = utcnow()
        venture = domain.Venture(
            **fields.model_dump(),
            id=new_venture_id(),
            status="registered",
            owner=actor["owner"],
            version=1,
            created_at=now,
            updated_at=now,
        )
        change = {"from": None, "to": "registered", "reason": "registered", "actor": actor}
        self.store.add(venture, venture_event(VENTURE_REGISTERED, venture, change))
        return venture.model_dump(mode="json")

    @rpc
    def get_venture(self, venture_id: str) -> dict:
        return self.store.get(venture_id).model_dump(mode="json")

    @rpc
    def list_ventures(self, filters: dict, after: str | None, limit: int) -> list[dict]:
        query = validated(domain.VentureFilters, filters)
        found = self.store.find(query.model_dump(exclude_none=True), after, limit)
        return [venture.model_dump(mode="json") for venture in found]

    @rpc
    def update_venture(
        self, venture_id: str, body: str, expected_version: int, actor: dict
    ) -> dict:
        update = validated(domain.UpdateVenture, body)
        venture = self.store.get(venture_id)
        domain.check_editable(venture)
        try:
            fields, changes = domain.apply_update(venture, update)
        except ValidationError as error:
            raise invalid_input(error) from None
        updated = domain.Venture.model_validate(
            {
                **venture.model_dump(),
                **fields.model_dump(),
                "version": venture.version + 1,
                "updated_at": utcnow(),
            }
        )
        change = {"fields": changes, "reason": "updated", "actor": actor}
        self.store.replace(
            updated, expected_version, venture_event(VENTURE_UPDATED, updated, change)
        )
        return updated.model_dump(mode="json")

    @rpc
    def change_venture_status(self, venture_id: str, body: str, actor: dict) -> dict:
        command = validated(domain.ChangeVentureStatus, body)
        venture = self.store.get(venture_id)
        domain.check_status_change(venture.status, command.to)
        updated = venture.model_copy(
            update={"status": command.to, "version": venture.version + 1, "updated_at": utcnow()}
        )
        change = {
            "from": venture.status,
            "to": command.to,
            "reason": command.reason,
            "actor": actor,
        }
        self.store.replace(
            updated, venture.version, venture_event(VENTURE_STATUS_CHANGED, updated, change)
        )
        return updated.model_dump(mode="json")

    @event_log_handler(SERVICE)
    def keep_event_log(self, event):
        EventLog(self.store.db).keep(event)
