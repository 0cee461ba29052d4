"""The report read model's arithmetic: running totals of flows per value date, kept in
the same transaction as each flow, so that a report reads sums instead of flows.

A totals document is one (scope, currency, year): a venture's partner (with the
partner's country), or a portfolio group (a sector, a province, a partner's country).
Its `days` map each value date of that year ("MM-DD") to one entry: how many flows it
sums and their exact sum per flow type. A day is the bucket because a conversion takes
the rate in force on the value date: every flow of a day converts at one rate, whatever
rates are set later (back-dated ones included), so `reports.conversion` applies as it
does to the flows themselves.

A portfolio group's document also keeps `months` ("MM"): the same entries summed per
month, kept with the days in the same writes. A month that one rate converts whole (no
rate of its currencies set for a day after its first, `Rates.one_rate`) is read as one
entry dated its first day; a month a rate splits, back-dated or not, is read by its
days. Which it is is decided when the report is read, from the rates it reads, so
setting a rate rewrites nothing and the figures stay exact.

An entry is a short string ("3,1250000.00,,,,," : the count, then one decimal string
per flow type, empty for none). Decimal strings are exact, like Decimal128, and a
totals document holds hundreds of them: as strings SecantusDB serves them in ~10 ms,
as nested Decimal128 values in ~3 s (docs/investments.md).
Pure functions; no I/O."""

import json
from calendar import monthrange
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal, localcontext

from services.investments.contract import FLOW_TYPES
from services.investments.reports import PRECISION, DayTotals

# The portfolio groupings kept as totals: the ungrouped summary adds up the
# partner-country ones (every flow is in exactly one of them).
PORTFOLIO_VIEWS = ("sector", "province", "partner_country")
# The groupings that are properties of the venture (its projection's, and can change).
VENTURE_GROUPS = ("sector", "province")


@dataclass
class Entry:
    """How many flows, and their exact sums by flow type."""

    count: int = 0
    sums: dict[str, Decimal] = field(default_factory=dict)

    def add(self, other: "Entry", sign: int = 1) -> None:
        with localcontext(Context(prec=PRECISION)):
            self.count += sign * other.count
            for flow_type, amount in other.sums.items():
                self.sums[flow_type] = self.sums.get(flow_type, Decimal(0)) + sign * amount

    @classmethod
    def of_flow(cls, flow_type: str, amount: Decimal) -> "Entry":
        return cls(1, {flow_type: amount})


def encode(entry: Entry) -> str:
    return ",".join(
        [str(entry.count), *(str(entry.sums[t]) if t in entry.sums else "" for t in FLOW_TYPES)]
    )


def count_of(text: str) -> int:
    """How many flows an encoded entry sums, without decoding its sums."""
    return int(text.partition(",")[0])


def decode(text: str) -> Entry:
    count, *sums = text.split(",")
    return Entry(int(count), {t: Decimal(v) for t, v in zip(FLOW_TYPES, sums, strict=True) if v})


def combined(current: str | None, change: Entry, sign: int) -> str | None:
    """The entry `current` becomes with `change` added (sign 1) or taken away (-1);
    None once it sums no flow (the day is then dropped from the document)."""
    entry = decode(current) if current else Entry()
    entry.add(change, sign)
    if entry.count < 0:
        raise ValueError(f"a day's totals would sum {entry.count} flows: {current!r} - {change}")
    return encode(entry) if entry.count else None


def months_of(days: Mapping[str, Entry]) -> dict[str, Entry]:
    """Day entries ("MM-DD") summed per month ("MM")."""
    months: dict[str, Entry] = {}
    for key, entry in days.items():
        months.setdefault(key[:2], Entry()).add(entry)
    return months


def day_key(day: date) -> str:
    return f"{day.month:02d}-{day.day:02d}"


def day_of(year: int, key: str) -> date:
    return date(year, int(key[:2]), int(key[3:]))


def _id(*parts: object) -> str:
    """An unambiguous id whatever the parts hold (a partner's name may hold any
    separator)."""
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def venture_bucket(
    venture_id: str, partner: str, country: str, currency: str, year: int
) -> tuple[str, dict]:
    """The id and the fields of a venture partner's totals document."""
    fields = {
        "venture_id": venture_id,
        "partner": partner,
        "country": country,
        "currency": currency,
        "year": year,
    }
    return _id(venture_id, partner, country, currency, year), fields


def portfolio_bucket(view: str, group: str, currency: str, year: int) -> tuple[str, dict]:
    """The id and the fields of a portfolio group's totals document."""
    fields = {"view": view, "group": group, "currency": currency, "year": year}
    return _id(view, group, currency, year), fields


@dataclass(frozen=True)
class FlowFacts:
    """What the totals need of a flow."""

    venture_id: str
    partner: str
    country: str
    currency: str
    value_date: date
    type: str
    amount: Decimal


def portfolio_groups(flow: FlowFacts, venture: Mapping[str, str] | None) -> dict[str, str]:
    """The group of `flow` in each portfolio view; a venture the projection does not know
    has no sector or province (its flows count only by partner country and in total)."""
    groups = {"partner_country": flow.country}
    if venture is not None:
        groups.update({view: venture[view] for view in VENTURE_GROUPS})
    return groups


Buckets = dict[str, tuple[dict, dict[str, Entry]]]


def pending_groups(pending: Mapping, filed: Mapping[str, Mapping]) -> dict[str, str]:
    """The group, in each portfolio view, of a pending entry (a flow not yet folded into
    the portfolio's totals): its partner country, and the sector and province its venture
    is filed under now (`filed`: report_groups documents by venture id; a venture not
    there is in no sector or province, as `portfolio_groups` says)."""
    groups = {"partner_country": pending["country"]}
    if (venture := filed.get(pending["venture_id"])) is not None:
        groups.update({view: venture[view] for view in VENTURE_GROUPS})
    return groups


def fold_buckets(entries: Iterable[Mapping], filed: Mapping[str, Mapping]) -> Buckets:
    """The portfolio totals' days that folding `entries` adds: each entry to its day in
    its group of every view (`pending_groups`)."""
    buckets: Buckets = {}
    for pending in entries:
        entry = decode(pending["entry"])
        for view, group in pending_groups(pending, filed).items():
            doc_id, fields = portfolio_bucket(view, group, pending["currency"], pending["year"])
            days = buckets.setdefault(doc_id, (fields, {}))[1]
            days.setdefault(pending["day"], Entry()).add(entry)
    return buckets


def pending_rows(
    entries: Iterable[Mapping], filed: Mapping[str, Mapping], view: str, grouped: bool
) -> list[DayTotals]:
    """The report rows of `entries` not yet folded, in `view` (as `grouped` by it, or
    not): summed per group, currency and day, each under its group now."""
    sums: dict[tuple[str, str, int, str], Entry] = {}
    for pending in entries:
        group = pending_groups(pending, filed).get(view)
        if group is None:
            continue  # a venture in no sector or province
        key = (group, pending["currency"], pending["year"], pending["day"])
        sums.setdefault(key, Entry()).add(decode(pending["entry"]))
    return [
        DayTotals(group if grouped else None, currency, day_of(year, day), entry.sums)
        for (group, currency, year, day), entry in sums.items()
    ]


def add_flow(
    venture_buckets: Buckets,
    portfolio_buckets: Buckets,
    flow: FlowFacts,
    venture: Mapping[str, str] | None,
) -> None:
    """Add `flow` to in-memory totals (id -> (fields, day -> entry)), as the store adds
    it to the stored ones: for building the read model from the flows."""
    year, key = flow.value_date.year, day_key(flow.value_date)
    entry = Entry.of_flow(flow.type, flow.amount)
    places = [
        (
            venture_buckets,
            venture_bucket(flow.venture_id, flow.partner, flow.country, flow.currency, year),
        )
    ]
    for view, group in portfolio_groups(flow, venture).items():
        places.append((portfolio_buckets, portfolio_bucket(view, group, flow.currency, year)))
    for buckets, (doc_id, fields) in places:
        days = buckets.setdefault(doc_id, (fields, {}))[1]
        days.setdefault(key, Entry()).add(entry)


def sums_of(text: str) -> dict[str, Decimal]:
    """The sums of an encoded entry (its count left out)."""
    return {t: Decimal(v) for t, v in zip(FLOW_TYPES, text.split(",")[1:], strict=True) if v}


# Whether (currency, first day, last day) converts at one rate: `Rates.one_rate` for
# the report's reporting currency.
OneRate = Callable[[str, date, date], bool]


def rows_of(doc: Mapping, group: Hashable, one_rate: OneRate | None = None) -> list[DayTotals]:
    """The report rows of one stored totals document, as `group`'s: a row per day, or,
    with `one_rate` and the document's `months`, a row per month that one rate converts
    whole (dated its first day) and a row per day of the other months."""
    year, currency = doc["year"], doc["currency"]
    rows, whole = [], set()
    if one_rate is not None:
        for key, text in doc["months"].items():
            first = date(year, int(key), 1)
            last = date(year, int(key), monthrange(year, int(key))[1])
            if one_rate(currency, first, last):
                whole.add(key)
                rows.append(DayTotals(group, currency, first, sums_of(text)))
    for key, text in doc["days"].items():
        if key[:2] not in whole:
            rows.append(DayTotals(group, currency, day_of(year, key), sums_of(text)))
    return rows


def exact_day_totals(
    flows: Iterable[tuple[Hashable, str, date, str, Decimal]],
) -> list[DayTotals]:
    """The report rows recomputed from (group, currency, value date, type, amount) of
    each flow: the exact sums the read model must equal (used by the tests)."""
    sums: dict[tuple, dict[str, Decimal]] = {}
    with localcontext(Context(prec=PRECISION)):
        for group, currency, day, flow_type, amount in flows:
            by_type = sums.setdefault((group, currency, day), {})
            by_type[flow_type] = by_type.get(flow_type, Decimal(0)) + amount
    return [
        DayTotals(group, currency, day, by_type) for (group, currency, day), by_type in sums.items()
    ]
