"""Benchmark: how fast an outbox relay publishes (`make bench`).

Starts its own SecantusDB (`--sync-on-commit`, as `make dev` runs it), commits 2,000
events to an outbox (100 aggregates, 20 changes each), then times one relay
publishing them all to the local RabbitMQ with publisher confirms, on an exchange and
catch-all queue of its own that it deletes afterwards. Prints events a second.
"""

import statistics
import sys
import time
import uuid

from kombu import Connection

from shared import messaging
from shared.envelope import new_event
from shared.mongo import Repository
from shared.outbox import Outbox, Relay, event_publisher
from shared.settings import Settings

from scratch import scratch_database

AGGREGATES, CHANGES = 100, 20
RUNS = 3


def commit_events(repository: Repository, service: str) -> None:
    outbox = Outbox(repository.db)
    for sequence in range(1, CHANGES + 1):
        events = [
            new_event(service, "venture.updated", f"jv_bench_{n:03d}", sequence, {"n": n})
            for n in range(AGGREGATES)
        ]

        def add_all(session, events=events):
            for event in events:
                outbox.add(event, session)

        repository.transaction(add_all)


def relay_all(repository: Repository, amqp_uri: str, service: str) -> float:
    relay = Relay(repository.db, event_publisher(amqp_uri, service), owner="bench")
    started = time.perf_counter()
    while Outbox(repository.db).pending_count():
        relay.relay_pending()
    return time.perf_counter() - started


def main() -> int:
    amqp_uri = Settings().amqp_uri
    events = AGGREGATES * CHANGES
    with scratch_database() as client:
        seconds = []
        for run in range(RUNS):
            # A service name of the run's own: new_event checks the contract's types,
            # so the events are the ventures service's, on an exchange of our own.
            service = f"bench{uuid.uuid4().hex[:8]}"
            db = client[f"bench_relay_{run}"]
            Outbox.ensure_indexes(db)
            repository = Repository(client, db)
            commit_events(repository, "ventures")
            try:
                seconds.append(relay_all(repository, amqp_uri, service))
            finally:
                with Connection(amqp_uri) as connection:
                    channel = connection.channel()
                    messaging.event_log_queue(service)(channel).delete()
                    messaging.events_exchange(service)(channel).delete()
            print(f"run {run + 1}: {events} events in {seconds[-1]:.1f} s", flush=True)
        median = statistics.median(seconds)
        print(f"relay: {events} events, median {median:.1f} s, {events / median:.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
