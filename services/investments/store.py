"""The investments service's repository over its own database: flows, the balances that
enforce the disbursement rule, exchange rates, and the projection of ventures."""

from collections.abc import Callable, Collection, Hashable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TypeVar

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.client_session import ClientSession
from pymongo.errors import DuplicateKeyError

from services.investments import contract, domain
from services.investments.reports import DayTotals, Rates
from shared.envelope import CloudEvent
from shared.inbox import Projection
from shared.mongo import Repository, UnitOfWork

T = TypeVar("T")

# A write that lost a race on a balance or rate is decided again on what won; each
# retry sees a newer version, so a handful always suffices unless writers never stop.
WRITE_ATTEMPTS = 10
# Report groups that are properties of the venture, as the projection has them.
VENTURE_GROUPS = ("sector", "province")
# The projection of ventures (its documents keep the last applied `sequence`).
VENTURE_VIEWS = "ventures"


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
        db.fx_rates.create_index([("currency", ASCENDING), ("date", ASCENDING)], unique=True)
        db[VENTURE_VIEWS].create_index([("owner", ASCENDING), ("_id", ASCENDING)])

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
        """Keep the venture as the event shows it, once, in per-venture sequence order."""
        return Projection(self.db[VENTURE_VIEWS]).apply(self, event, venture)

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
        partner's balance, and store it with its event, all in one transaction: of two
        disbursements racing for the same commitment, the second is decided again on the
        balance the first left."""

        def work(unit: UnitOfWork) -> contract.Flow:
            flow, event = decide(self.venture(venture_id, unit.session))
            if domain.counts_against_commitments(flow.type):
                self._update_balance(flow, unit.session)
            self.flows.insert_one(self.document(flow), session=unit.session)
            unit.publish(event)
            return flow

        return self._write(work)

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

    def rates_for(self, currencies: set[str], until: date) -> Rates:
        """Every rate of `currencies` set for a day up to `until` (the latest value date
        to convert): a conversion may need any of them."""
        cursor = self.db.fx_rates.find(
            {"currency": {"$in": sorted(currencies)}, "date": {"$lte": as_datetime(until)}},
            {"currency": 1, "date": 1, "usd_per_unit": 1},
        )
        return Rates((doc["currency"], doc["date"].date(), doc["usd_per_unit"]) for doc in cursor)

    # --- report inputs: sums computed by MongoDB --------------------------------------

    def venture_day_totals(self, venture_id: str) -> list[DayTotals]:
        """The venture's flows summed per (partner, partner's country, currency, day)."""
        return self._day_totals(
            {"venture_id": venture_id},
            {"partner": "$partner", "country": "$partner_country"},
            lambda key: (key["partner"], key["country"]),
        )

    def portfolio_day_totals(
        self, group_by: str | None, venture_ids: list[str] | None = None
    ) -> list[DayTotals]:
        """All flows (or those of `venture_ids`) summed per (group, currency, day).

        A venture's sector and province are the projection's, so flows stay as recorded:
        each group is one aggregation over the flows of its ventures, found through the
        (venture_id, ...) index; together they read every flow once."""
        only = {} if venture_ids is None else {"venture_id": {"$in": venture_ids}}
        if group_by in VENTURE_GROUPS:
            rows: list[DayTotals] = []
            for group, ids in self._ventures_per(group_by, venture_ids).items():

                def group_of(_key: dict, group: str = group) -> str:
                    return group

                rows += self._day_totals({"venture_id": {"$in": ids}}, {}, group_of)
            return rows
        if group_by == "partner_country":
            return self._day_totals(only, {"group": "$partner_country"}, lambda k: k["group"])
        return self._day_totals(only, {}, lambda _: None)

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

    def _ventures_per(self, field: str, venture_ids: list[str] | None) -> dict[str, list[str]]:
        query = {} if venture_ids is None else {"_id": {"$in": venture_ids}}
        groups: dict[str, list[str]] = {}
        for doc in self.db[VENTURE_VIEWS].find(query, {field: 1}):
            groups.setdefault(doc[field], []).append(doc["_id"])
        return groups

    def _day_totals(
        self, match: dict, group: dict, group_of: Callable[[dict], Hashable]
    ) -> list[DayTotals]:
        """One $group over the matching flows: an exact Decimal128 sum per group, currency,
        value date and flow type, so what reaches Python grows with those combinations,
        not with the number of flows. (One sum keyed by type is several times faster on
        the wire server than one conditional sum per type.)"""
        pipeline = [
            {"$match": match},
            {
                "$group": {
                    "_id": {
                        **group,
                        "currency": "$currency",
                        "day": "$value_date",
                        "type": "$type",
                    },
                    "amount": {"$sum": "$amount"},
                }
            },
        ]
        sums: dict[tuple, dict[str, Decimal]] = {}
        for row in self.flows.aggregate(pipeline):
            key = row["_id"]
            day = (group_of(key), key["currency"], key["day"].date())
            sums.setdefault(day, {})[key["type"]] = row["amount"]
        return [
            DayTotals(group, currency, value_date, by_type)
            for (group, currency, value_date), by_type in sums.items()
        ]
