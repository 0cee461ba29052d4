"""Reads as of a past instant against the states captured at the time: random histories
of ventures (registrations, updates of sector, province and partners, status changes,
refused changes among them) written through the ventures store on a real SecantusDB at
a clock of the test's own (each step a millisecond or more after the last, at
microseconds the store rounds away), each state read
back when it was made; their versions kept with each change, or (a database from
before versions were kept) filled in from the event log and the outbox, some of the
events consumed into the log and the rest only in the outbox, as when the log lags.
Every captured state is then read as of its instant and of moments between, and every
list as of those instants, filtered and paged, is compared with the list made from the
captured states."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ventures import contract, domain
from services.ventures.store import VentureStore
from shared.as_of import Versions
from shared.errors import Conflict, NotFound, ServiceUnavailable
from shared.inbox import EventLog
from shared.mongo import connect
from shared.outbox import Outbox, _event_of

OWNERS = ("Owner One", "Owner Two")
VENTURES = (("jv_asof_a", OWNERS[0]), ("jv_asof_b", OWNERS[0]), ("jv_asof_c", OWNERS[1]))
SECTORS = ("api_manufacturing", "biologics_vaccines")
PROVINCES = ("punjab", "sindh")
STATUSES = ("active", "suspended", "dissolved")
# A third partner's country, besides the Pakistani and Chinese ones every venture has.
COUNTRIES = (None, "TR", "AE")
# The test's clock, in microseconds; the store keeps milliseconds, which a read shows.
START = datetime(2026, 3, 1, 9, 0, 0, 999, tzinfo=UTC)

steps = st.lists(
    st.tuples(
        st.sampled_from(range(len(VENTURES))),
        st.one_of(
            st.tuples(st.just("update"), st.sampled_from(SECTORS), st.sampled_from(PROVINCES)),
            st.tuples(st.just("partners"), st.sampled_from(COUNTRIES)),
            st.tuples(st.just("status"), st.sampled_from(STATUSES)),
        ),
        st.integers(1000, 5000),  # microseconds after the step before
    ),
    max_size=25,
)
logged = st.lists(st.booleans(), min_size=40, max_size=40)
# Where the versions come from: kept with each change; or, for a database from before
# versions were kept, filled in from the event log and outbox when the store starts
# (all of them), or when read (a venture changed after the upgrade, before the fill).
origins = st.sampled_from(("kept", "backfilled", "completed"))


@pytest.fixture(scope="module")
def client(backends):
    client = connect(backends["mongo_uri"])
    yield client
    client.close()


def partners(third_country: str | None) -> list[dict]:
    pk = {"name": "Indus Pharma", "country": "PK", "kind": "private_company"}
    cn = {"name": "Yangtze Pharma", "country": "CN", "kind": "private_company"}
    if third_country is None:
        return [{**pk, "equity_pct": "51"}, {**cn, "equity_pct": "49"}]
    third = {"name": "Third Partner", "country": third_country, "kind": "private_company"}
    return [{**pk, "equity_pct": "40"}, {**cn, "equity_pct": "40"}, {**third, "equity_pct": "20"}]


def change(venture: contract.Venture, action: tuple, actor: dict, now: datetime):
    if action[0] == "update":
        patch = {"sector": action[1], "province": action[2]}
        return domain.update(venture, contract.UpdateVenture.model_validate(patch), actor, now)
    if action[0] == "partners":
        patch = {"partners": partners(action[1])}
        return domain.update(venture, contract.UpdateVenture.model_validate(patch), actor, now)
    command = contract.ChangeVentureStatus(to=action[1], reason="as the test decided")
    return domain.change_status(venture, command, actor, now)


def play(store: VentureStore, history: list) -> dict[str, list[tuple[datetime, dict]]]:
    """Register the ventures, apply `history`; each venture's captured states with the
    instant of each."""
    captured: dict[str, list[tuple[datetime, dict]]] = {key: [] for key, _ in VENTURES}
    now = START
    for number, (key, owner) in enumerate(VENTURES):
        now += timedelta(milliseconds=1)
        actor = {"key_id": "key_test", "role": "investor", "owner": owner}
        body = {
            "name": f"As Of Venture {number} {uuid.uuid4().hex[:6]}",
            "sector": SECTORS[0],
            "province": PROVINCES[0],
            "partners": partners(None),
        }
        store.add(*domain.register(contract.RegisterVenture.model_validate(body), key, actor, now))
        captured[key].append(read_now(store, key))
    for index, action, gap in history:
        key, owner = VENTURES[index]
        now += timedelta(microseconds=gap)
        venture = store.get(key)
        actor = {"key_id": "key_test", "role": "ops", "owner": owner}
        try:
            changed, event = change(venture, action, actor, now)
        except Conflict:  # e.g. a dissolved venture changes no more: no new state
            continue
        store.replace(changed, event, venture.version)
        captured[key].append(read_now(store, key))
    return captured


def read_now(store: VentureStore, key: str) -> tuple[datetime, dict]:
    """The venture as a read answers it right after a change, and the instant the read
    says it changed (`updated_at`, as a client would pass it as `as_of`)."""
    state = store.get(key).model_dump(mode="json")
    return datetime.fromisoformat(state["updated_at"]), state


def log_some(db, logged: list[bool], origin: str) -> None:
    """Consume some of the events into the event log, as the catch-all queue would, and
    leave the versions as `origin` says."""
    log = EventLog(db)
    for record, keep in zip(db[Outbox.COLLECTION].find().sort("_id"), logged, strict=False):
        if keep:
            log.keep(_event_of(record))
    versions = db[Versions.COLLECTION]
    if origin == "backfilled":
        versions.drop()
        VentureStore.ensure_indexes(db)
    elif origin == "completed":
        for document in versions.find():
            latest = max(version["sequence"] for version in document["versions"])
            versions.update_one(
                {"_id": document["_id"]}, {"$pull": {"versions": {"sequence": {"$lt": latest}}}}
            )


def state_then(states: list[tuple[datetime, dict]], instant: datetime) -> dict | None:
    then = [state for at, state in states if at <= instant]
    return then[-1] if then else None


def moments(captured: dict[str, list[tuple[datetime, dict]]]) -> list[datetime]:
    """Each state's instant, a moment within its millisecond and one before the first."""
    instants = sorted({at for states in captured.values() for at, _ in states})
    return [START, *instants, *(at + timedelta(microseconds=500) for at in instants)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps, logged=logged, origin=origins)
def test_reads_as_of_an_instant_answer_the_state_captured_then(client, history, logged, origin):
    db = client[f"asof_{uuid.uuid4().hex[:10]}"]
    VentureStore.ensure_indexes(db)
    store = VentureStore(client, db)
    try:
        captured = play(store, history)
        log_some(db, logged, origin)
        for instant in moments(captured):
            for key, states in captured.items():
                expected = state_then(states, instant)
                if expected is None:
                    with pytest.raises(NotFound):
                        store.get_as_of(key, instant)
                else:
                    assert store.get_as_of(key, instant) == expected, (key, instant)
    finally:
        client.drop_database(db.name)


filters = st.fixed_dictionaries(
    {},
    optional={
        "owner": st.sampled_from(OWNERS),
        "sector": st.sampled_from(SECTORS),
        "province": st.sampled_from(PROVINCES),
        "status": st.sampled_from(("registered", *STATUSES)),
        "partner_country": st.sampled_from(("PK", "TR", "AE")),
    },
)


def matching(state: dict, wanted: dict) -> bool:
    countries = {partner["country"] for partner in state["partners"]}
    return all(
        value in countries if name == "partner_country" else state[name] == value
        for name, value in wanted.items()
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps, logged=logged, origin=origins, wanted=filters, limit=st.integers(1, 3))
def test_lists_as_of_an_instant_hold_what_matched_then(
    client, history, logged, origin, wanted, limit
):
    db = client[f"asof_{uuid.uuid4().hex[:10]}"]
    VentureStore.ensure_indexes(db)
    store = VentureStore(client, db)
    try:
        captured = play(store, history)
        log_some(db, logged, origin)
        for instant in moments(captured):
            expected = [
                state
                for key, _ in VENTURES
                if (state := state_then(captured[key], instant)) and matching(state, wanted)
            ]
            listed: list[dict] = []
            after = None
            while True:  # page by page, as the gateway's cursor does
                page = store.find_as_of(dict(wanted), instant, after, limit)
                listed += page
                if len(page) < limit:
                    break
                after = page[-1]["id"]
            assert listed == expected, (wanted, instant)
    finally:
        client.drop_database(db.name)


def test_a_history_that_neither_the_log_nor_the_outbox_holds_whole_is_unavailable(client):
    db = client[f"asof_{uuid.uuid4().hex[:10]}"]
    VentureStore.ensure_indexes(db)
    store = VentureStore(client, db)
    try:
        captured = play(store, [(0, ("status", "active"), 1)])
        key = VENTURES[0][0]
        # A version made before versions were kept, pruned from the outbox, never logged.
        db[Versions.COLLECTION].update_one({"_id": key}, {"$pull": {"versions": {"sequence": 1}}})
        db[Outbox.COLLECTION].delete_one({"subject": key, "sequence": 1})
        with pytest.raises(ServiceUnavailable, match="not complete"):
            store.get_as_of(key, captured[key][-1][0])
    finally:
        client.drop_database(db.name)
