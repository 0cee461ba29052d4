"""The investments service's repository over its own database: flows, the balances that
enforce the disbursement rule, exchange rates, the projection of ventures, and the
report totals (the read model the reports answer from): a venture's kept with each flow,
the portfolio's folded in from pending entries in the background (`fold_pending`)."""

import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime, time
from functools import partial
from typing import TypeVar

from bson import ObjectId
from pymongo import ASCENDING, InsertOne, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.collection import Collection as MongoCollection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.investments import contract, domain, totals
from services.investments.folder import FOLD_BATCH, wake_folders
from services.investments.reports import DayTotals, Rates
from shared.clock import utcnow
from shared.envelope import CloudEvent
from shared.inbox import Projection
from shared.mongo import Repository, UnitOfWork

T = TypeVar("T")
log = logging.getLogger(__name__)

# A write that lost a race on a balance or rate is decided again on what won; each
# retry sees a newer version, so a handful always suffices unless writers never stop.
WRITE_ATTEMPTS = 10
# The projection of ventures (its documents keep the last applied `sequence`).
VENTURE_VIEWS = "ventures"
# The report read model (totals.py): a venture partner's totals per currency and year;
# a portfolio group's per view, currency and year; the flows not yet folded into the
# portfolio's (one entry per flow); the sector and province each venture's totals are
# filed under; and the record that the model was built.
VENTURE_TOTALS = "venture_totals"
PORTFOLIO_TOTALS = "portfolio_totals"
PORTFOLIO_PENDING = "portfolio_pending"
REPORT_GROUPS = "report_groups"
REPORT_META = "report_meta"
REPORT_TOTALS = "report_totals"
# The read model's layout: 2 added the portfolio totals' `months`. A database built in
# another layout is built again on start.
REPORT_LAYOUT = 2
BUILD_BATCH = 1_000
DUPLICATE_KEY = 11000
FLOW_FACTS = dict.fromkeys(
    ("venture_id", "partner", "partner_country", "currency", "value_date", "type", "amount"), 1
)


class LostRace(Exception):
    """Another writer changed the document this write was decided on."""


def new_flow_id() -> str:
    # ObjectIds grow with time, so ids sort in recording order (stable pagination).
    return f"inv_{ObjectId()}"


def as_datetime(day: date) -> datetime:
    """Days are stored as BSON dates at midnight UTC, so MongoDB can group them."""
    return datetime.combine(day, time(), tzinfo=UTC)


def balance_id(venture_id: str, partner: str, currency: str) -> str:
    return f"{venture_id}|{domain.partner_key(partner)}|{currency}"


class InvestmentStore(Repository):
    @classmethod
    def ensure_indexes(cls, db):
        super().ensure_indexes(db)
        # Lists page through a venture's flows by id; reports $match on venture ids.
        db.flows.create_index([("venture_id", ASCENDING), ("_id", ASCENDING)])
        # A report that cannot convert some (currency, day) finds whose flows they are.
        db.flows.create_index([("currency", ASCENDING), ("value_date", ASCENDING)])
        # An export reads a venture's flows a few value dates at a time ($in on them).
        db.flows.create_index([("venture_id", ASCENDING), ("value_date", ASCENDING)])
        db.fx_rates.create_index([("currency", ASCENDING), ("date", ASCENDING)], unique=True)
        db[VENTURE_VIEWS].create_index([("owner", ASCENDING), ("_id", ASCENDING)])
        # Reports read totals by equality: a venture's (or $in over an owner's), a view's.
        db[VENTURE_TOTALS].create_index([("venture_id", ASCENDING)])
        db[PORTFOLIO_TOTALS].create_index([("view", ASCENDING)])
        # A sector or province move finds the venture's entries not yet folded.
        db[PORTFOLIO_PENDING].create_index([("venture_id", ASCENDING)])
        # Run by the service's MongoStore on start: a registry that held flows before the
        # report totals existed has them built before the service answers a report.
        cls.ensure_read_model(db)

    @classmethod
    def ensure_read_model(cls, db: Database) -> None:
        """On start: the report totals, built from the flows if this database never had
        them."""
        cls(db.client, db).ensure_report_totals()

    @property
    def flows(self):
        return self.db.flows

    def _write(self, work: Callable[[UnitOfWork], T]) -> T:
        """A unit of work, run again when it lost a race (a concurrent writer's insert of
        the same balance or rate, or a version that moved under it)."""
        for _ in range(WRITE_ATTEMPTS - 1):
            try:
                return self.unit_of_work(work)
            except (LostRace, DuplicateKeyError):
                continue
        return self.unit_of_work(work)

    # --- the projection of ventures.events --------------------------------------------

    def apply_venture_event(self, event: CloudEvent, venture: dict) -> bool:
        """Keep the venture as the event shows it, once, in per-venture sequence order,
        and its report totals under the sector and province it now has."""

        def refile(unit: UnitOfWork) -> None:
            self._refile({**venture, "id": event.subject}, unit.session)

        return Projection(self.db[VENTURE_VIEWS]).apply(self, event, venture, refile)

    def venture(self, venture_id: str, session: ClientSession | None = None):
        doc = self.db[VENTURE_VIEWS].find_one({"_id": venture_id}, session=session)
        return domain.VentureView.model_validate({**doc, "id": doc["_id"]}) if doc else None

    def venture_ids_of(self, owner: str) -> list[str]:
        return [doc["_id"] for doc in self.db[VENTURE_VIEWS].find({"owner": owner}, {"_id": 1})]

    # --- flows ------------------------------------------------------------------------

    def record_flow(
        self,
        venture_id: str,
        decide: Callable[
            [domain.VentureView | None], tuple[contract.Flow, contract.InvestmentRecorded]
        ],
    ) -> contract.Flow:
        """Check the flow `decide` makes against the venture as projected now and the
        partner's balance, and store it with its event and its report totals, all in one
        transaction: of two disbursements racing for the same commitment, the second is
        decided again on the balance the first left."""

        def work(unit: UnitOfWork) -> contract.Flow:
            venture = self.venture(venture_id, unit.session)
            flow, event = decide(venture)
            assert venture is not None  # decide refuses a venture it does not know
            if domain.counts_against_commitments(flow.type):
                self._update_balance(flow, unit.session)
            self.flows.insert_one(self.document(flow), session=unit.session)
            self._add_to_report_totals(flow, unit.session)
            unit.publish(event)
            return flow

        flow = self._write(work)
        wake_folders(self.db)  # fold it into the portfolio's totals now, not at the next poll
        return flow

    def _update_balance(self, flow: contract.Flow, session: ClientSession) -> None:
        key = balance_id(flow.venture_id, flow.partner, flow.currency)
        doc = self.db.balances.find_one({"_id": key}, session=session)
        before = domain.Balance.model_validate(doc) if doc else domain.Balance()
        after = domain.apply_to_balance(before, flow)
        if doc is None:
            self.db.balances.insert_one(
                {
                    "_id": key,
                    "venture_id": flow.venture_id,
                    "partner": flow.partner,
                    "currency": flow.currency,
                    **after.model_dump(),
                },
                session=session,
            )
            return
        result = self.db.balances.update_one(
            {"_id": key, "version": before.version},
            {"$set": after.model_dump()},
            session=session,
        )
        if result.matched_count == 0:
            raise LostRace(key)

    def list_flows(
        self, venture_id: str, filters: dict, after: str | None, limit: int
    ) -> list[contract.Flow]:
        query: dict = {"venture_id": venture_id, **filters}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.flows.find(query).sort("_id", ASCENDING).limit(limit)
        return [self._flow(doc) for doc in cursor]

    def flow_days(self, venture_id: str) -> list[tuple[date, int]]:
        """How many flows the venture has on each value date, in date order: from its
        report totals (kept in each flow's transaction, so exact), by venture id."""
        counts: dict[date, int] = {}
        for doc in self.db[VENTURE_TOTALS].find({"venture_id": venture_id}, {"year": 1, "days": 1}):
            for key, text in doc["days"].items():
                day = totals.day_of(doc["year"], key)
                counts[day] = counts.get(day, 0) + totals.count_of(text)
        return sorted(counts.items())

    def flows_on(self, venture_id: str, days: list[date]) -> list[contract.Flow]:
        """The venture's flows of `days`, by value date then recording order: equality
        and $in on an index, never a range (which SecantusDB answers by reading every
        flow, docs/performance.md)."""
        if not days:
            return []
        query = {"venture_id": venture_id, "value_date": {"$in": [as_datetime(d) for d in days]}}
        found = [self._flow(doc) for doc in self.flows.find(query)]
        return sorted(found, key=lambda flow: (flow.value_date, flow.id))

    @staticmethod
    def document(flow: contract.Flow) -> dict:
        """A flow as stored: amounts Decimal128 (by the shared codec), days BSON dates."""
        doc = flow.model_dump(exclude={"id"})
        doc["_id"] = flow.id
        doc["value_date"] = as_datetime(flow.value_date)
        return doc

    @staticmethod
    def _flow(doc: dict) -> contract.Flow:
        return contract.Flow.model_validate(
            {**doc, "id": doc["_id"], "value_date": doc["value_date"].date()}
        )

    # --- exchange rates ---------------------------------------------------------------

    def set_fx_rate(
        self,
        key: contract.FxRateKey,
        decide: Callable[
            [contract.FxRate | None], tuple[contract.FxRate, contract.FxRateSet] | None
        ],
    ) -> tuple[contract.FxRate, bool]:
        """Set the rate of a currency on a day as `decide` does given its current one;
        returns it and whether it changed."""

        def work(unit: UnitOfWork) -> tuple[contract.FxRate, bool]:
            doc = self.db.fx_rates.find_one({"_id": key.id}, session=unit.session)
            current = self._rate(doc) if doc else None
            decision = decide(current)
            if decision is None:
                assert current is not None  # only an existing rate can be set again
                return current, False
            rate, event = decision
            new_doc = {**rate.model_dump(), "_id": key.id, "date": as_datetime(rate.date)}
            if current is None:
                self.db.fx_rates.insert_one(new_doc, session=unit.session)
            elif not self.db.fx_rates.replace_one(
                {"_id": key.id, "version": current.version}, new_doc, session=unit.session
            ).matched_count:
                raise LostRace(key.id)
            unit.publish(event)
            return rate, True

        return self._write(work)

    @staticmethod
    def _rate(doc: dict) -> contract.FxRate:
        return contract.FxRate.model_validate({**doc, "date": doc["date"].date()})

    def rates_for(
        self, currencies: set[str], until: date, session: ClientSession | None = None
    ) -> Rates:
        """Every rate of `currencies` set for a day up to `until` (the latest value date
        to convert): a conversion may need any of them."""
        cursor = self.db.fx_rates.find(
            {"currency": {"$in": sorted(currencies)}, "date": {"$lte": as_datetime(until)}},
            {"currency": 1, "date": 1, "usd_per_unit": 1},
            session=session,
        )
        return Rates((doc["currency"], doc["date"].date(), doc["usd_per_unit"]) for doc in cursor)

    # --- the report read model (services/investments/totals.py) ----------------------

    def _add_to_report_totals(self, flow: contract.Flow, session: ClientSession) -> None:
        """Add `flow` to its venture partner's totals, and leave it pending for the
        portfolio's, in the flow's transaction: the reports then never read flows.

        Not straight into the portfolio's totals: those are a few documents per currency
        and year that every concurrent flow would rewrite, so that writers collided and
        retried (16 writers on distinct ventures: 6.6 flows/s, p99 18 s, against 133/s
        without them). An insert under the flow's own id collides with nothing; the
        folder (`fold_pending`) adds the pending entries to the portfolio's totals in
        batches, and the portfolio reads count the entries still pending."""
        year, key = flow.value_date.year, totals.day_key(flow.value_date)
        entry = totals.Entry.of_flow(flow.type, flow.amount)
        doc_id, fields = totals.venture_bucket(
            flow.venture_id, flow.partner, flow.partner_country, flow.currency, year
        )
        self._add_days(self.db[VENTURE_TOTALS], {doc_id: (fields, {key: entry})}, 1, session)
        self.db[PORTFOLIO_PENDING].insert_one(self.pending_entry(flow), session=session)

    @staticmethod
    def pending_entry(flow: contract.Flow) -> dict:
        """A flow's entry pending for the portfolio's totals (its id is the flow's)."""
        return {
            "_id": flow.id,
            "venture_id": flow.venture_id,
            "country": flow.partner_country,
            "currency": flow.currency,
            "year": flow.value_date.year,
            "day": totals.day_key(flow.value_date),
            "entry": totals.encode(totals.Entry.of_flow(flow.type, flow.amount)),
        }

    def _add_days(
        self,
        collection: MongoCollection,
        buckets: Mapping[str, tuple[dict, Mapping[str, totals.Entry]]],
        sign: int,
        session: ClientSession,
    ) -> None:
        """Add (sign 1) or take away (-1) the day entries of `buckets` (document id ->
        its fields and days) in those totals documents, and in their months when they
        are the portfolio's: one read of just those entries ($in on the ids), then one
        bulk write of them, each guarded by its version."""
        if not buckets:
            return
        with_months = collection.name == PORTFOLIO_TOTALS
        changes = {
            doc_id: {
                "days": days,
                **({"months": totals.months_of(days)} if with_months else {}),
            }
            for doc_id, (_, days) in buckets.items()
        }
        shown = {"version": 1}
        for maps in changes.values():
            shown.update({f"{name}.{key}": 1 for name, keyed in maps.items() for key in keyed})
        found = {
            doc["_id"]: doc
            for doc in collection.find({"_id": {"$in": list(buckets)}}, shown, session=session)
        }
        writes: list[InsertOne | UpdateOne] = []
        for doc_id, (fields, _) in buckets.items():
            doc = found.get(doc_id)
            after = {
                name: {
                    key: totals.combined((doc or {}).get(name, {}).get(key), entry, sign)
                    for key, entry in keyed.items()
                }
                for name, keyed in changes[doc_id].items()
            }
            if doc is None:
                kept = {
                    name: {key: text for key, text in keyed.items() if text is not None}
                    for name, keyed in after.items()
                }
                writes.append(InsertOne({"_id": doc_id, **fields, "version": 1, **kept}))
                continue
            update: dict = {"$inc": {"version": 1}}
            paths = {
                f"{name}.{key}": text
                for name, keyed in after.items()
                for key, text in keyed.items()
            }
            if changed := {path: text for path, text in paths.items() if text is not None}:
                update["$set"] = changed
            if dropped := {path: "" for path, text in paths.items() if text is None}:
                update["$unset"] = dropped
            writes.append(UpdateOne({"_id": doc_id, "version": doc["version"]}, update))
        try:
            result = collection.bulk_write(writes, session=session)
        except BulkWriteError as error:
            codes = {e.get("code") for e in error.details.get("writeErrors", [])}
            if codes == {DUPLICATE_KEY}:  # another writer inserted one of them first
                raise LostRace(f"{collection.name}: {error.details['writeErrors']}") from None
            raise
        if result.matched_count != len(found):
            raise LostRace(f"{collection.name}: a version moved")

    # The invariant that keeps the portfolio's totals exact while flows wait to be folded:
    #   portfolio_totals(view, group) = the sum of the FOLDED flows (those with no pending
    #   entry left) of the ventures filed under `group` NOW (report_groups),
    # so that a report, adding the pending entries each under its venture's group now,
    # counts every flow once in its current group. Hence a move takes only the folded
    # part of a venture's totals along (its venture totals minus its pending entries),
    # and the folder files an entry under the groups of report_groups when it folds it.
    # The folder writes the report_groups documents of the ventures it folds, so that a
    # fold and a move of the same venture conflict (one is retried on what the other
    # committed) instead of each deciding on a snapshot the other changes.

    def _refile(self, venture: Mapping, session: ClientSession) -> None:
        """Keep a venture's totals under the sector and province the projection now has:
        when either changed, its folded days move from the old group's totals to the
        new's (its own totals, read by venture id, minus its entries still pending, say
        what to move); its pending entries go to the new groups when folded."""
        venture_id = venture["id"]
        now = {view: venture[view] for view in totals.VENTURE_GROUPS}
        before = self.db[REPORT_GROUPS].find_one({"_id": venture_id}, session=session)
        self.db[REPORT_GROUPS].replace_one(
            {"_id": venture_id}, {"_id": venture_id, **now}, upsert=True, session=session
        )
        if before is None:  # a venture new to the projection has no flows yet
            return
        moved = [view for view in totals.VENTURE_GROUPS if before.get(view) != now[view]]
        if not moved:
            return
        per_year: dict[tuple[str, int], dict[str, totals.Entry]] = {}
        for doc in self.db[VENTURE_TOTALS].find({"venture_id": venture_id}, session=session):
            days = per_year.setdefault((doc["currency"], doc["year"]), {})
            for key, text in doc["days"].items():
                days.setdefault(key, totals.Entry()).add(totals.decode(text))
        pending = self.db[PORTFOLIO_PENDING].find({"venture_id": venture_id}, session=session)
        for doc in pending:
            days = per_year.setdefault((doc["currency"], doc["year"]), {})
            days.setdefault(doc["day"], totals.Entry()).add(totals.decode(doc["entry"]), -1)
        for group_of, sign in ((before, -1), (now, 1)):
            buckets: totals.Buckets = {}
            for view in moved:
                for (currency, year), days in per_year.items():
                    folded = {key: entry for key, entry in days.items() if entry.count}
                    if not folded:
                        continue
                    doc_id, fields = totals.portfolio_bucket(view, group_of[view], currency, year)
                    buckets[doc_id] = (fields, folded)
            self._add_days(self.db[PORTFOLIO_TOTALS], buckets, sign, session)

    def fold_pending(self, limit: int = FOLD_BATCH) -> int:
        """Fold up to `limit` pending entries into the portfolio's totals, in one
        transaction: each added to its day in the groups its venture is filed under now,
        then deleted. Returns how many were folded; 0 also when another folder (or a
        move) won the race for the same documents: what is left waits for the next
        pass."""

        def work(session: ClientSession) -> int:
            entries = list(self.db[PORTFOLIO_PENDING].find({}, session=session).limit(limit))
            if not entries:
                return 0
            venture_ids = sorted({doc["venture_id"] for doc in entries})
            filed = {
                doc["_id"]: doc
                for doc in self.db[REPORT_GROUPS].find(
                    {"_id": {"$in": venture_ids}}, session=session
                )
            }
            buckets = totals.fold_buckets(entries, filed)
            self._add_days(self.db[PORTFOLIO_TOTALS], buckets, 1, session)
            if filed:  # conflicts with a move of these ventures (the invariant above)
                self.db[REPORT_GROUPS].update_many(
                    {"_id": {"$in": list(filed)}}, {"$inc": {"folds": 1}}, session=session
                )
            self.db[PORTFOLIO_PENDING].delete_many(
                {"_id": {"$in": [doc["_id"] for doc in entries]}}, session=session
            )
            return len(entries)

        try:
            return self.transaction(work)
        except (LostRace, DuplicateKeyError):
            return 0

    def report_totals_built(self) -> bool:
        """Whether the read model was built, in the layout this code reads."""
        meta = self.db[REPORT_META].find_one({"_id": REPORT_TOTALS})
        return meta is not None and meta.get("layout") == REPORT_LAYOUT

    def build_report_totals(self) -> int:
        """The read model computed from every stored flow and the ventures projection, in
        one transaction (what was there before is replaced, pending entries included);
        returns the flows summed.
        Run on start when it was never built (`ensure_report_totals`)."""

        def work(session: ClientSession) -> int:
            projected = {
                doc["_id"]: doc
                for doc in self.db[VENTURE_VIEWS].find(
                    {}, dict.fromkeys(totals.VENTURE_GROUPS, 1), session=session
                )
            }
            venture_buckets: totals.Buckets = {}
            portfolio_buckets: totals.Buckets = {}
            count = 0
            for doc in self.flows.find({}, FLOW_FACTS, session=session):
                facts = totals.FlowFacts(
                    doc["venture_id"],
                    doc["partner"],
                    doc["partner_country"],
                    doc["currency"],
                    doc["value_date"].date(),
                    doc["type"],
                    doc["amount"],
                )
                venture = projected.get(facts.venture_id)
                totals.add_flow(venture_buckets, portfolio_buckets, facts, venture)
                count += 1
            for name, buckets in (
                (VENTURE_TOTALS, venture_buckets),
                (PORTFOLIO_TOTALS, portfolio_buckets),
            ):
                self.db[name].delete_many({}, session=session)
                documents = [
                    {
                        "_id": doc_id,
                        **fields,
                        "version": 1,
                        "days": {key: totals.encode(entry) for key, entry in days.items()},
                    }
                    for doc_id, (fields, days) in buckets.items()
                ]
                if name == PORTFOLIO_TOTALS:
                    for document, (_, days) in zip(documents, buckets.values(), strict=True):
                        months = totals.months_of(days)
                        document["months"] = {k: totals.encode(e) for k, e in months.items()}
                for start in range(0, len(documents), BUILD_BATCH):
                    self.db[name].insert_many(
                        documents[start : start + BUILD_BATCH], session=session
                    )
            # Every flow counted above is in the portfolio's totals: none left pending (an
            # entry is inserted with its flow, so this snapshot holds the entries of
            # exactly the flows it read).
            self.db[PORTFOLIO_PENDING].delete_many({}, session=session)
            self.db[REPORT_GROUPS].delete_many({}, session=session)
            groups = [
                {"_id": venture_id, **{v: doc.get(v) for v in totals.VENTURE_GROUPS}}
                for venture_id, doc in projected.items()
            ]
            if groups:
                self.db[REPORT_GROUPS].insert_many(groups, session=session)
            self.db[REPORT_META].replace_one(
                {"_id": REPORT_TOTALS},
                {
                    "_id": REPORT_TOTALS,
                    "layout": REPORT_LAYOUT,
                    "flows": count,
                    "built_at": utcnow(),
                },
                upsert=True,
                session=session,
            )
            return count

        return self.transaction(work)

    def ensure_report_totals(self) -> int | None:
        """Build the read model if this database never had it (a registry that held
        flows before it existed); returns the flows summed, None when it was there."""
        if self.report_totals_built():
            return None
        count = self.build_report_totals()
        log.info("built the investment report totals from %d flow(s)", count)
        return count

    def venture_day_totals(self, venture_id: str) -> list[DayTotals]:
        """The venture's sums per (partner, partner's country, currency, value date)."""
        return [
            row
            for doc in self.db[VENTURE_TOTALS].find({"venture_id": venture_id})
            for row in totals.rows_of(doc, (doc["partner"], doc["country"]))
        ]

    def portfolio_rows(
        self, group_by: str | None, reporting: str, venture_ids: list[str] | None = None
    ) -> tuple[list[DayTotals], Rates]:
        """The sums to report in `reporting` per (group, currency, value date), and the
        rates that convert them: of every venture, the portfolio's totals of the
        `group_by` view (equality on it; ungrouped: the partner-country view, which holds
        every flow once) plus the entries not yet folded into them, a row per month that
        one rate converts whole; or of `venture_ids`, their own totals ($in), a row per
        day, each filed under the group the projection has now."""
        if venture_ids is None:
            return self._portfolio_view_rows(group_by, reporting)
        group_of: dict[str, str] | None = None
        if group_by in totals.VENTURE_GROUPS:
            query = {"_id": {"$in": venture_ids}}
            shown = {group_by: 1}
            group_of = {
                doc["_id"]: doc[group_by] for doc in self.db[VENTURE_VIEWS].find(query, shown)
            }
        rows: list[DayTotals] = []
        for doc in self.db[VENTURE_TOTALS].find({"venture_id": {"$in": venture_ids}}):
            if group_of is not None:
                if doc["venture_id"] not in group_of:
                    continue  # not projected: in no sector or province
                group: str | None = group_of[doc["venture_id"]]
            else:
                group = doc["country"] if group_by == "partner_country" else None
            rows += totals.rows_of(doc, group)
        return rows, self.rates_to_convert(rows, reporting)

    def rates_to_convert(self, rows: list[DayTotals], reporting: str) -> Rates:
        """The rates that converting `rows` into `reporting` may need."""
        if not rows:
            return Rates([])
        currencies = {row.currency for row in rows} | {reporting}
        return self.rates_for(currencies, max(row.value_date for row in rows))

    def _portfolio_view_rows(
        self, group_by: str | None, reporting: str
    ) -> tuple[list[DayTotals], Rates]:
        """A view's totals and the pending entries, each under the group its venture is
        filed under now (report_groups; the invariant at `_refile`), and the rates, read
        in one snapshot: a fold committing meanwhile is seen whole or not at all, so no
        entry is counted twice or missed, a flow is in the reports once it is recorded,
        and a month is read whole only if the rates that convert it have one rate for
        all of it."""
        view = group_by or "partner_country"
        with self.client.start_session() as session, session.start_transaction():
            stored = list(self.db[PORTFOLIO_TOTALS].find({"view": view}, session=session))
            pending = list(self.db[PORTFOLIO_PENDING].find({}, session=session))
            filed: dict[str, Mapping] = {}
            if pending and view in totals.VENTURE_GROUPS:
                venture_ids = sorted({doc["venture_id"] for doc in pending})
                found = self.db[REPORT_GROUPS].find(
                    {"_id": {"$in": venture_ids}},
                    dict.fromkeys(totals.VENTURE_GROUPS, 1),
                    session=session,
                )
                filed = {doc["_id"]: doc for doc in found}
            held = stored + pending
            currencies = {doc["currency"] for doc in held} | {reporting}
            last_year = max((doc["year"] for doc in held), default=None)
            rates = (
                self.rates_for(currencies, date(last_year, 12, 31), session)
                if last_year is not None
                else Rates([])
            )
        one_rate = partial(rates.one_rate, reporting)
        rows = [
            row
            for doc in stored
            for row in totals.rows_of(doc, doc["group"] if group_by else None, one_rate)
        ]
        return rows + totals.pending_rows(pending, filed, view, group_by is not None), rates

    def flows_at(
        self, days: Collection[tuple[str, date]], venture_ids: list[str] | None = None
    ) -> list[tuple[str, str, date]]:
        """(venture id, currency, value date) of the flows (of `venture_ids`, or all)
        recorded in one of `days`' currencies on one of its days: equality and $in on the
        flows, so a report finds whose flows it could not convert."""
        per_currency: dict[str, list[datetime]] = {}
        for currency, day in days:
            per_currency.setdefault(currency, []).append(as_datetime(day))
        match: dict = {
            "$or": [
                {"currency": currency, "value_date": {"$in": sorted(values)}}
                for currency, values in sorted(per_currency.items())
            ]
        }
        if venture_ids is not None:
            match["venture_id"] = {"$in": venture_ids}
        pipeline = [
            {"$match": match},
            {
                "$group": {
                    "_id": {"venture": "$venture_id", "currency": "$currency", "day": "$value_date"}
                }
            },
        ]
        return [
            (row["_id"]["venture"], row["_id"]["currency"], row["_id"]["day"].date())
            for row in self.flows.aggregate(pipeline)
        ]
