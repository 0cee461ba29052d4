"""The investments service's export pages on a real SecantusDB: ventures in the order
asked, each one's flows by value date then recording order, pages of whole value dates
up to the limit (a day holding more is a page of its own), each venture's activity
once before its transactions, and a venture the service does not know left out."""

import uuid
from datetime import UTC, date, datetime

import pytest

from services.investments import contract, domain
from services.investments.service import export_page
from services.investments.store import InvestmentStore
from shared.envelope import new_event
from shared.mongo import connect

ACTOR = {"key_id": "key_export", "role": "ops", "owner": "platform-ops"}
PARTNERS = [
    {"name": "Pak Partner", "country": "PK", "kind": "private_company"},
    {"name": "China Partner", "country": "CN", "kind": "state_owned_enterprise"},
]
LIMIT = 4
# (venture, value date, flows that day): A has a day of more flows than a page holds.
DAYS = [
    ("jv_export_a", date(2025, 3, 1), 2),
    ("jv_export_a", date(2025, 1, 5), 9),
    ("jv_export_a", date(2025, 2, 1), 1),
    ("jv_export_c", date(2025, 1, 1), 1),
    ("jv_export_c", date(2025, 1, 2), 1),
    ("jv_export_c", date(2025, 1, 3), 3),
]
ASKED = ["jv_export_a", "jv_export_b", "jv_export_unknown", "jv_export_c"]


@pytest.fixture
def store(backends):
    client = connect(backends["mongo_uri"])
    db = client[f"t_export_{uuid.uuid4().hex[:10]}"]
    InvestmentStore.ensure_indexes(db)
    store = InvestmentStore(client, db)
    for venture_id in ("jv_export_a", "jv_export_b", "jv_export_c"):
        fields = {
            "owner": "Owner",
            "name": venture_id,
            "sector": "api_manufacturing",
            "province": "sindh",
            "status": "active",
            "partners": PARTNERS,
        }
        event = new_event("ventures", "venture.registered", venture_id, 1, {})
        assert store.apply_venture_event(event, fields)
    yield store
    client.drop_database(db.name)
    client.close()


def record(store: InvestmentStore, venture_id: str, day: date, n: int) -> str:
    command = contract.RecordFlow(
        type="commitment", partner="Pak Partner", currency="PKR", amount="10.00", value_date=day
    )
    flow_id = f"inv_export_{n:04d}"

    def decide(view):
        return domain.record(view, venture_id, command, flow_id, ACTOR, datetime.now(UTC))

    store.record_flow(venture_id, decide)
    return flow_id


def walk(store: InvestmentStore, form: str) -> list[list[dict]]:
    pages, start = [], None
    while True:
        page = export_page(store, ASKED, start, form, limit=LIMIT)
        pages.append(page.items)
        if page.next is None:
            return pages
        start = page.next


def test_pages_hold_whole_days_in_order_and_every_flow_once(store):
    expected: list[tuple[str, date, str]] = []
    n = 0
    for venture_id, day, count in DAYS:
        for _ in range(count):
            expected.append((venture_id, day, record(store, venture_id, day, n)))
            n += 1
    in_order = [flow_id for _, _, flow_id in sorted(expected, key=lambda f: (f[0], f[1], f[2]))]

    pages = walk(store, "csv")
    rows = [item["row"] for page in pages for item in page]
    assert [row[2] for row in rows] == in_order
    # The 9 flows of one day are a page of their own; the others fill pages of 4 with
    # whole days, across ventures (B has no flows, the unknown one is left out).
    assert [len(page) for page in pages] == [9, 4, 4]

    items = [item for page in walk(store, "iati") for item in page]
    activities = [item["activity"]["iati-identifier"] for item in items if "activity" in item]
    assert activities == ["PK-JVREG-jv_export_a", "PK-JVREG-jv_export_b", "PK-JVREG-jv_export_c"]
    transactions = [item["transaction"]["ref"] for item in items if "transaction" in item]
    assert transactions == in_order
    owner_of = {}
    current = None
    for item in items:
        if "activity" in item:
            current = item["activity"]["iati-identifier"]
        else:
            owner_of[item["transaction"]["ref"]] = current
    assert all(owner_of[flow_id] == f"PK-JVREG-{venture}" for venture, _, flow_id in expected)
    funding = [org.get("type") for org in items[0]["activity"]["participating-org"][:2]]
    assert funding == ["70", "15"]  # a private company, a state-owned enterprise
