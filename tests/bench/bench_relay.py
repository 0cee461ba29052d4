"""Benchmark: how fast an outbox relay publishes, against the raw limit (`make bench`).

Starts its own SecantusDB (`--sync-on-commit`, as `make dev` runs it) and commits
events to an outbox (100 aggregates, 20 changes each; `--quick`: 20 and 5). Then, on an
exchange and catch-all quorum queue of its own (the topology a service publishes to),
it times
- the raw limit: kombu alone publishing the same events as persistent, `mandatory`
  messages on one channel in confirm mode, all pipelined, then waiting for every
  confirm — the best kombu does;
- one relay publishing them all from the outbox (claims, confirms, marks sent).
Prints events a second of each and their ratio (goal: relay >= 0.5x raw); `run(quick)`
returns the figures as a dict, `--json PATH` writes them.
"""

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from kombu import Connection, Producer

from shared import messaging
from shared.dead_letters import broker_user
from shared.envelope import CloudEvent, new_event
from shared.mongo import Repository
from shared.outbox import Outbox, Relay, event_publisher, publication
from shared.settings import Settings

from scratch import scratch_database


def commit_events(repository: Repository, aggregates: int, changes: int) -> list[CloudEvent]:
    """One transaction per change round, each adding an event of every aggregate."""
    outbox = Outbox(repository.db)
    committed = []
    for sequence in range(1, changes + 1):
        events = [
            new_event("ventures", "venture.updated", f"jv_bench_{n:03d}", sequence, {"n": n})
            for n in range(aggregates)
        ]

        def add_all(session, events=events):
            for event in events:
                outbox.add(event, session)

        repository.transaction(add_all)
        committed += events
    return committed


def raw_publish(amqp_uri: str, service: str, events: list[CloudEvent]) -> float:
    """Seconds kombu alone takes to publish `events` and have every one confirmed."""
    user = broker_user(amqp_uri)
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        for entity in messaging.publisher_topology(service):
            entity(channel).declare()
        channel.confirm_select()
        unconfirmed = set(range(1, len(events) + 1))

        def on_ack(delivery_tag, multiple):
            settled = [t for t in unconfirmed if t <= delivery_tag] if multiple else [delivery_tag]
            unconfirmed.difference_update(settled)

        channel.events["basic_ack"].add(on_ack)
        producer = Producer(channel, exchange=messaging.events_exchange(service))
        started = time.perf_counter()
        for event in events:
            producer.publish(event.wire(), **publication(event, user))
        while unconfirmed:
            connection.drain_events(timeout=30)
        return time.perf_counter() - started


def relay_all(repository: Repository, amqp_uri: str, service: str) -> float:
    """Seconds one relay takes to publish every pending record of the outbox."""
    relay = Relay(repository.db, event_publisher(amqp_uri, service), owner="bench")
    started = time.perf_counter()
    while relay.relay_pending():
        pass
    seconds = time.perf_counter() - started
    assert Outbox(repository.db).pending_count() == 0, "the relay left records pending"
    return seconds


def run(quick: bool = False) -> dict:
    aggregates, changes, runs = (20, 5, 1) if quick else (100, 20, 3)
    amqp_uri = Settings().amqp_uri
    raw_seconds, relay_seconds = [], []
    with scratch_database() as client:
        for number in range(runs):
            # A service name of the run's own: new_event checks the contract's types,
            # so the events are the ventures service's, on an exchange of our own.
            service = f"bench{uuid.uuid4().hex[:8]}"
            db = client[f"bench_relay_{number}"]
            Outbox.ensure_indexes(db)
            repository = Repository(client, db)
            events = commit_events(repository, aggregates, changes)
            try:
                raw_seconds.append(raw_publish(amqp_uri, service, events))
                with Connection(amqp_uri) as connection:
                    messaging.event_log_queue(service)(connection.channel()).purge()
                relay_seconds.append(relay_all(repository, amqp_uri, service))
            finally:
                with Connection(amqp_uri) as connection:
                    channel = connection.channel()
                    messaging.event_log_queue(service)(channel).delete()
                    messaging.events_exchange(service)(channel).delete()
            client.drop_database(db.name)
            print(
                f"run {number + 1}: {len(events)} events: raw {raw_seconds[-1]:.2f} s, "
                f"relay {relay_seconds[-1]:.2f} s",
                flush=True,
            )
    count = aggregates * changes
    raw = count / statistics.median(raw_seconds)
    relay = count / statistics.median(relay_seconds)
    return {
        "events": count,
        "runs": runs,
        "raw_publish_per_s": round(raw, 1),
        "relay_per_s": round(relay, 1),
        "ratio": round(relay / raw, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one run")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    figures = run(args.quick)
    print(
        f"relay: {figures['events']} events, raw confirmed publish "
        f"{figures['raw_publish_per_s']:.0f}/s, relay {figures['relay_per_s']:.0f}/s, "
        f"ratio {figures['ratio']:.2f} (goal >= 0.5)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
