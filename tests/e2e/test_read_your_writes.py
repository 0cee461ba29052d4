"""Read-your-writes through the gateway (docs/architecture.md §5.7): what a client has
just created it can use at once, although the service that uses it learns of it from
events: a plant right after its venture, a licence application right after its plant,
an investment flow right after its venture, and a read of the plant right after a
licence decision showing the status the decision gave it. No pause, no retry."""

from concurrent.futures import ThreadPoolExecutor

from investment_scenario import FLOWS_A
from support import PLANT, Api, venture_body

CHAINS = 50  # of four create-then-use pairs each: 200 pairs
# Clients run their chains side by side; each waiting command holds a worker, and at
# most half of a service's workers wait at once (shared/consistency.py).
CLIENTS = 5
DML = {"type": "dml_formulation"}
DECISIONS = (
    {"to": "under_review", "reason": "dossier complete"},
    {"to": "inspection_scheduled", "reason": "site visit", "inspection_date": "2026-12-14"},
    {"to": "granted", "reason": "inspection satisfactory", "decision_ref": "DRAP/LIC/RYW"},
)


class Chain:
    """One client's chains of requests, each request sent the moment the one before was
    answered; every answer is kept, so that the test can say which were not 2xx."""

    def __init__(self, investor, regulator):
        self.investor = investor
        self.regulator = regulator
        self.answers: list[tuple[str, int, str]] = []
        self.pairs = 0

    def send(self, api, method: str, path: str, body: dict | None = None) -> dict:
        response = api.request(method, path, json=body)
        self.answers.append((f"{method} {path}", response.status_code, response.text[:300]))
        return response.json() if response.ok else {}

    def run(self, index: int) -> None:
        venture = self.send(self.investor, "POST", "/v1/ventures", venture_body())
        ventures = f"/v1/ventures/{venture.get('id')}"

        def register_plant() -> dict:
            return self.send(self.investor, "POST", f"{ventures}/facilities", PLANT)

        def record_flow() -> dict:
            return self.send(self.investor, "POST", f"{ventures}/investments", FLOWS_A[0])

        # Which use comes straight after the venture alternates, so that both do.
        if index % 2:
            record_flow()
            plant = register_plant()
        else:
            plant = register_plant()
            record_flow()
        application = {"facility_id": plant.get("id"), **DML}
        licence = self.send(self.investor, "POST", "/v1/licenses", application)
        for decision in DECISIONS:
            transitions = f"/v1/licenses/{licence.get('id')}/transitions"
            self.send(self.regulator, "POST", transitions, decision)
        read = self.send(self.investor, "GET", f"/v1/facilities/{plant.get('id')}")
        if read.get("status") != "operational":
            self.answers.append(("the plant read after the grant", 0, str(read.get("status"))))
        self.pairs += 4  # venture → plant, venture → flow, plant → licence, grant → read


def own_client(api: Api) -> Api:
    """Another client with the same key: one HTTP session per thread."""
    client = Api(api.base_url, None)
    client.session.headers.update(api.session.headers)
    return client


def test_two_hundred_create_then_use_pairs_all_succeed_without_a_pause(investor, regulator):
    clients = [Chain(own_client(investor), own_client(regulator)) for _ in range(CLIENTS)]

    def run_chains(client: Chain) -> None:
        for index in range(CHAINS // CLIENTS):
            client.run(index)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(run_chains, clients))
    assert sum(client.pairs for client in clients) == 200
    failed = [
        answer for client in clients for answer in client.answers if not 200 <= answer[1] < 300
    ]
    assert failed == []
