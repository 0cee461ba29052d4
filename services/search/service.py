"""The search service: answers the gateway's lists of ventures, facilities and licences
(filters, words, sorts, facet counts) from an embedded index of its own instance, kept
from the owners' events (docs/architecture.md §10). Entrypoints are thin: validate the
query, ask the index; turn each event into the change of one document and apply it in
sequence order."""

import logging
from collections.abc import Collection

from kombu import Connection
from nameko.dependency_providers import Config

from services.search import contract
from services.search.contract import SERVICE
from services.search.index import EarlyChange, ListQuery, Page, change_of, doctype_of
from services.search.live import Index, LiveIndex
from services.search.settings import SearchSettings
from shared import figures  # the module: `nameko run` would take the mixin for a service
from shared.contract import Subscription
from shared.entrypoints import rpc
from shared.envelope import CloudEvent
from shared.errors import NotFound, field_error, validated
from shared.inbox import CloudEventHandler, EventOutOfOrder, cloud_event_handler
from shared.messaging import instance_queue

log = logging.getLogger(__name__)
CURSOR_SEPARATOR = "~"


class InstanceEventHandler(CloudEventHandler):
    """The registry's event handler on a queue of this instance's own: the
    subscription's queue names `{instance}` (JVREG_SEARCH_INSTANCE)."""

    def setup(self):
        instance = SearchSettings.from_config(self.container.config).search_instance
        self.queue_name = (self.queue_name or "").format(instance=instance)
        super().setup()
        self.queue = instance_queue(self.queue.name, self.source_service, self.pattern)


def instance_event_handler(subscription: Subscription):
    """shared.inbox.cloud_event_handler, on the instance's own queue."""
    return cloud_event_handler(subscription, InstanceEventHandler)


def list_query(
    doctype: str, query: dict, cursor: str | None, limit: int, register: bool = False
) -> ListQuery:
    """The index's query for a list's parameters (validated: a wrong one is invalid
    input naming it) and the cursor of the page before; `register`: a list of the
    public register, with its own parameters."""
    queries, filter_names = (
        (contract.REGISTER_QUERIES, contract.REGISTER_FILTERS)
        if register
        else (contract.QUERIES, contract.FILTERS)
    )
    if doctype not in queries:
        raise field_error(["doctype"], f"one of {', '.join(queries)}")
    parsed = validated(queries[doctype], query)
    fields = parsed.model_dump(exclude_none=True, mode="json")
    filters = {name: fields[name] for name in filter_names[doctype] if name in fields}
    after = None
    if cursor:
        sort, _, after = cursor.partition(CURSOR_SEPARATOR)
        if sort != fields["sort"] or not after:
            raise field_error(["cursor"], "not a cursor of this list and sort")
    return ListQuery(
        doctype=doctype,
        filters=filters,
        q=fields.get("q"),
        expiring_before=fields.get("expiring_before"),
        valid_on=fields.get("valid_on"),
        register=register,
        sort=fields["sort"],
        after=after,
        limit=limit,
        count=fields.get("count"),
    )


class SearchService(figures.ServiceFigures):
    name = SERVICE

    config = Config()
    index: LiveIndex = Index()

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "documents": self.index.index.count()}

    @rpc
    def list(
        self,
        doctype: str,
        query: dict,
        cursor: str | None,
        limit: int,
        wait_for: dict[str, int] | None = None,
    ) -> dict:
        """A page of `doctype` ("venture", "facility", "licence") documents matching
        `query` (the list's query parameters but paging), after `cursor` (the previous
        page's `next_cursor`, decoded): `{"items", "next_cursor", "counts"}`.
        `wait_for` ({id: version}) are versions the caller knows of (its own writes):
        the answer waits, bounded, until the index has them (read your writes)."""
        asked = list_query(doctype, query, cursor, limit)
        mine = {
            key: version for key, version in (wait_for or {}).items() if doctype_of(key) == doctype
        }
        self._catch_up(mine, f"a {doctype} list")
        page = self._page(asked)
        answer: dict = {"items": page.items, "next_cursor": self._cursor(asked, page)}
        if page.counts is not None:
            answer["counts"] = page.counts
        return answer

    def _catch_up(self, versions: dict[str, int], what: str) -> None:
        """Wait, bounded, until the index has `versions`; past the bound, answer all
        the same: a list a moment stale is more use than a 503."""
        if versions and not self.index.wait_for(versions):
            log.info("answering %s before the index caught up with %s", what, versions)

    def _page(self, asked: ListQuery) -> Page:
        try:
            return self.index.index.search(asked)
        except ValueError as error:  # a cursor's key this index could not make
            raise field_error(["cursor"], str(error)) from None

    @staticmethod
    def _cursor(asked: ListQuery, page: Page) -> str | None:
        return f"{asked.sort}{CURSOR_SEPARATOR}{page.next_after}" if page.next_after else None

    @rpc
    def register(
        self,
        doctype: str,
        query: dict,
        cursor: str | None,
        limit: int,
        wait_for: dict[str, int] | None = None,
    ) -> dict:
        """A page of the public register's `doctype` list: `{"items", "next_cursor"}`,
        each item its public view (contract.REGISTER_VIEWS), nothing else of it.
        `wait_for` as `list`'s, of any doctype: a document carries its plant's and
        venture's names."""
        asked = list_query(doctype, query, cursor, limit, register=True)
        self._catch_up(wait_for or {}, f"a public {doctype} list")
        page = self._page(asked)
        items = self.index.index.register_views(doctype, [item["id"] for item in page.items])
        return {"items": items, "next_cursor": self._cursor(asked, page)}

    @rpc
    def register_item(
        self, doctype: str, document_id: str, wait_for: dict[str, int] | None = None
    ) -> dict:
        """One document's public view; NotFound when the register has none."""
        if doctype not in contract.REGISTER_VIEWS:
            raise field_error(["doctype"], f"one of {', '.join(contract.REGISTER_VIEWS)}")
        self._catch_up(wait_for or {}, f"public {doctype} {document_id}")
        found = self.index.index.register_views(doctype, [document_id])
        if not found:
            raise NotFound(f"the public register has no {doctype} {document_id}")
        return found[0]

    @rpc
    def applications(self, document_ids: Collection[str]) -> dict[str, dict[str, int]]:
        """Of each document: the sequence it has reached and how many changes were
        applied to it in this index (ops and the chaos suite: an event applied twice, or
        one lost, shows as a count other than the sequence)."""
        states = {
            document_id: self.index.index.committed(document_id) for document_id in document_ids
        }
        return {
            document_id: {"sequence": sequence, "applications": applications}
            for document_id, (sequence, applications) in states.items()
        }

    @rpc
    def lag(self) -> dict:
        """How far behind this instance is: documents, events applied and skipped per
        source, the time of the last one, and messages waiting in its queues."""
        settings = SearchSettings.from_config(self.config)
        waiting: dict[str, int | None] = {}
        with Connection(settings.amqp_uri, connect_timeout=3) as connection:
            channel = connection.channel()
            for subscription in contract.SUBSCRIPTIONS:
                name = contract.queue_of(subscription, settings.search_instance)
                queue = instance_queue(name, subscription.source, subscription.pattern)
                try:
                    waiting[subscription.source] = queue(channel).queue_declare(passive=True)[1]
                except Exception:
                    waiting[subscription.source] = None
                    channel = connection.channel()
        live = self.index
        return contract.Lag(
            instance=settings.search_instance,
            documents={doctype: live.index.count(doctype) for doctype in contract.FILTERS},
            applied=dict(live.applied),
            duplicates=dict(live.duplicates),
            last_event_time=dict(live.last_event_time),
            waiting=waiting,
        ).model_dump(mode="json")

    def _apply(self, event: CloudEvent, payload) -> None:
        try:
            self.index.apply(
                change_of(payload.service, event.subject, event.sequence, payload),
                event.time.isoformat(),
            )
        except EarlyChange as error:
            raise EventOutOfOrder(str(error)) from None

    @instance_event_handler(contract.FOLLOWS_VENTURES)
    def follow_ventures(self, event: CloudEvent, payload) -> None:
        self._apply(event, payload)

    @instance_event_handler(contract.FOLLOWS_FACILITIES)
    def follow_facilities(self, event: CloudEvent, payload) -> None:
        self._apply(event, payload)

    @instance_event_handler(contract.FOLLOWS_LICENCES)
    def follow_licences(self, event: CloudEvent, payload) -> None:
        self._apply(event, payload)
