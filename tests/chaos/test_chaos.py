"""Fault injection on the registry's real processes: crashes at the worst moments,
broker outages and poison messages, while regulators' decisions flow. Each scenario
checks, from the databases and a regulator's own queue, that nothing committed was
lost and nothing was applied twice, and reports its numbers (see docs/reliability.md).

`JVREG_CHAOS=full` (make chaos) injects at least 1,000 faults in all; without it a
reduced run of every scenario guards the same invariants in `make test`."""

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

import eventlet
import pytest
from conftest import FULL, FULL_RUN_FAULTS, SCENARIOS
from harness import (
    LICENCE_CONSUMER_QUEUES,
    MANUFACTURING_LICENCES,
    PLANT_ENDED_KEY,
    POISON_KINDS,
    ChaosRegistry,
    Load,
    Outcome,
    Traffic,
    VentureMade,
    call,
    expiry_ladder,
    insist,
    kill_at_random,
    kill_the_busiest_leader,
    publish_poison,
    restart_broker,
    transient,
    walked_until,
)
from kombu import Connection

from ops.processes import broker_reachable, wait_until
from shared.dead_letters import DeadLetterQueue
from shared.messaging import DELIVERY_LIMIT

from support import Api

pytestmark = pytest.mark.timeout(900 if FULL else 300)
CONSUMERS = ("facilities", "notifications", "chaos_tally")
TWO_OF_EACH_CONSUMER = {name: 2 for name in CONSUMERS}
# Consumers killed too, one instance only: an instance's index is its own directory.
KILLED_ALONE = ("search",)
# Longest wait for the invariants once the traffic is over: beyond the events in
# flight, a killed process's open transaction locks its documents for up to 60 s, and
# an event it blocked waits at the tail of its queue.
CONVERGE_SECONDS = 240
# Kills a full run's kill scenario injects at least.
MIN_KILLS = 3
# Suspensions and reinstatements per licence in a walk that the scenario, not the walk's
# end or a clock, stops: the licences never run out of transitions before the faults
# are over, and the drivers' clock (seconds) is only a backstop, past the waits below.
LONG_WALK = 200
LONG_WALK_CAP = 1800
# Transitions confirmed before each fault and after the last one, each awaited this long.
FLOWING = 25 if FULL else 4
FLOWING_SECONDS = 150
# The load of the scenarios whose faults follow the traffic (drive_through).
FAULTS_AMONG_TRAFFIC = (
    Load(ventures=8, licences_per_plant=3, seconds=LONG_WALK_CAP, cycles=LONG_WALK, drivers=10),
    Load(ventures=2, licences_per_plant=2, seconds=LONG_WALK_CAP, cycles=LONG_WALK),
)
# Every queue bound to licensing.events with `license.#`, each with its own copy.
LICENCE_EVENT_QUEUES = (*LICENCE_CONSUMER_QUEUES, "licensing.event-log")


def sized(full: Load, reduced: Load) -> Load:
    return full if FULL else reduced


def conclude(
    chaos: ChaosRegistry,
    scenario: str,
    report,
    started: float,
    faults=None,
    extra=list,
    excluded_ids=frozenset(),
    expected_dead_letters=0,
) -> Outcome:
    """The traffic is over: stop the faults, wait for every invariant to hold, print the
    scenario's line and assert on it. Faults are the kills the supervisor counted,
    unless the scenario injected its own. No process may exit on its own (the
    supervisor would restart it, as a process manager would, and report it)."""
    chaos.disarm()
    measurement, seconds, problems = chaos.converge(
        CONVERGE_SECONDS, extra, excluded_ids, expected_dead_letters
    )
    if faults is None:
        faults = chaos.supervisor.faults
    outcome = Outcome.of(scenario, faults, measurement, seconds)
    print(f"\n{outcome.line()} ({time.monotonic() - started:.0f} s in all)")
    assert not problems, f"{scenario}: not converged after {seconds:.0f} s: {problems}"
    assert outcome.lost == 0 and outcome.applied_twice == 0
    assert not chaos.supervisor.crashes, "exited on their own: " + "; ".join(
        chaos.supervisor.crashes
    )
    if not expected_dead_letters:
        assert DeadLetterQueue(chaos.amqp_uri).list() == [], "a healthy event dead-lettered"
    return outcome


# Three licensing instances, the licences walked for 50 s (8 s in the reduced run).
LICENSING_KILLED = (
    Load(ventures=8, licences_per_plant=3, seconds=50, drivers=10),
    Load(ventures=2, licences_per_plant=2, seconds=8),
)


def kill_licensing_at(fault: str, scenario: str, registry, report) -> Outcome:
    """Walk licences while three licensing instances run with the fault hook `fault`."""
    started = time.monotonic()
    load = sized(*LICENSING_KILLED)
    with registry(licensing=3) as chaos:
        licences = chaos.apply_for_licences(load)
        chaos.arm(fault, "licensing")
        chaos.drive(licences, load)
        outcome = conclude(chaos, scenario, report, started)
    assert outcome.faults >= (MIN_KILLS if FULL else 1)
    return outcome


def test_1_a_service_killed_after_its_commit_loses_nothing(registry, report):
    """Licensing dies right after committing a change and its outbox record, before
    its relay publishes: the record stays pending and a relay (this instance after
    restart, or the other one) publishes it."""
    outcome = kill_licensing_at(
        "after_commit:0.5", "1. killed after commit, before publishing", registry, report
    )
    report.add(outcome)


def test_2_a_relay_killed_after_the_confirm_duplicates_but_applies_once(registry, report):
    """Licensing dies after the broker confirmed an event and before the relay marked
    it sent: it is published again (a duplicate on the wire), and every consumer
    still applies it once."""
    outcome = kill_licensing_at(
        "after_confirm:0.5", "2. relay killed after confirm, before marking sent", registry, report
    )
    assert outcome.duplicated >= 1, "a kill after the confirm re-sends the event"
    report.add(outcome)


def test_3_a_consumer_killed_after_applying_applies_once_and_drains(registry, report):
    """The tally, facilities and notifications die after committing an event's effect
    and its sequence, before acking it: the redelivery changes nothing, and their
    queues end empty."""
    started = time.monotonic()
    load = sized(
        Load(ventures=11, licences_per_plant=3, seconds=50, drivers=12, pause=2),
        Load(ventures=2, licences_per_plant=2, seconds=8),
    )
    with registry(licensing=2, **TWO_OF_EACH_CONSUMER) as chaos:
        licences = chaos.apply_for_licences(load)
        chaos.arm("after_apply:0.3", *CONSUMERS)
        chaos.drive(licences, load)
        outcome = conclude(
            chaos,
            "3. consumer killed after applying, before acking",
            report,
            started,
            extra=lambda: chaos.queues_empty(*LICENCE_EVENT_QUEUES),
        )
    assert outcome.faults >= (MIN_KILLS if FULL else 1)
    report.add(outcome)


def test_4_broker_restarts_deliver_everything_once_back(registry, report, own_broker):
    """RabbitMQ's application is stopped and started while licences move: every
    service reconnects by itself, every change is delivered once the broker is back,
    and no outbox record is marked sent without a confirm (every record marked sent
    is on the regulator's queue). The broker is a node of the scenario's own."""
    started = time.monotonic()
    restarts = 3 if FULL else 1
    load = sized(*FAULTS_AMONG_TRAFFIC)
    with registry(licensing=3, broker=own_broker) as chaos:
        licences = chaos.apply_for_licences(load)

        def restart() -> None:
            restart_broker(own_broker, down_seconds=3)
            wait_until(lambda: broker_reachable(own_broker.amqp_uri) is None, 60, "RabbitMQ back")

        flowed = drive_through(chaos, licences, load, restarts, restart)
        print(f"\n{flowed.transitions} transitions through {restarts} broker restarts")
        scenario = "4. RabbitMQ stopped and started"
        outcome = conclude(chaos, scenario, report, started, faults=restarts)
    report.add(outcome)


def drive_through(
    chaos: ChaosRegistry,
    licences: list[str],
    load: Load,
    faults: int,
    inject: Callable[[], None],
) -> Traffic:
    """Walk `licences` and `inject` `faults` faults among the traffic: each after
    FLOWING more transitions were confirmed, and the traffic ends after FLOWING more
    once the last fault is over, however fast this machine decides them."""
    traffic = Traffic()
    driving = eventlet.spawn(chaos.drive, licences, load, traffic=traffic)

    def await_transitions(when: str) -> None:
        target = traffic.transitions + FLOWING
        deadline = time.monotonic() + FLOWING_SECONDS
        while traffic.transitions < target:
            if driving.dead:
                raise AssertionError(f"traffic ended as {driving.wait()} before {FLOWING} {when}")
            assert time.monotonic() < deadline, (
                f"{FLOWING} transitions {when} not seen in {FLOWING_SECONDS} s: {traffic}"
            )
            eventlet.sleep(0.2)

    try:
        for fault in range(faults):
            await_transitions(f"before fault {fault + 1}")
            inject()
        await_transitions("after the last fault")
    finally:
        traffic.stop()
    return driving.wait()


def test_5_poison_messages_are_dead_lettered_and_healthy_ones_applied(registry, report):
    """Poison messages of every kind among the healthy events on licensing.events:
    each is dead-lettered with its error by every consumer that cannot apply it (at
    once when it can never be valid, after the delivery limit when its handler keeps
    failing), and nothing healthy is held up or lost."""
    started = time.monotonic()
    rounds = 180 if FULL else 2  # one poison of each kind per round
    load = sized(
        Load(ventures=8, licences_per_plant=3, seconds=30, drivers=12, pause=4),
        Load(ventures=2, licences_per_plant=2, seconds=8),
    )
    with registry(licensing=2) as chaos:
        licences = chaos.apply_for_licences(load)
        traffic = eventlet.spawn(chaos.drive, licences, load)
        poisons: dict[str, str] = {}
        with Connection(chaos.amqp_uri) as connection:
            for _ in range(rounds):
                for kind in POISON_KINDS:
                    poisons[publish_poison(connection, kind)] = kind
                eventlet.sleep(load.seconds / rounds * 0.8)
        traffic.wait()
        outcome = conclude(
            chaos,
            "5. poison messages among healthy events",
            report,
            started,
            faults=len(poisons),
            excluded_ids=set(poisons),
            expected_dead_letters=sum(len(expected_queues(kind)) for kind in poisons.values()),
        )
        assert chaos.regulator_queue.undecodable == rounds  # the non-JSON ones
        letters: dict[str, dict[str, dict]] = defaultdict(dict)
        for letter in DeadLetterQueue(chaos.amqp_uri).list():
            letters[letter["event_id"]][letter["queue"]] = letter
    assert set(letters) - set(poisons) == set(), "only poison is dead-lettered"
    for event_id, kind in poisons.items():
        assert set(letters[event_id]) == set(expected_queues(kind)), (kind, letters[event_id])
        for queue, letter in letters[event_id].items():
            assert letter["error"], (queue, letter)
            if kind == "always fails" and queue == "chaos_tally.tally":
                assert letter["attempts"] == DELIVERY_LIMIT, (queue, letter)
            else:
                assert letter["attempts"] == 1, (queue, letter)
            assert expected_error(kind, queue) in letter["error"], (kind, queue, letter)
    report.add(outcome)


def expected_queues(kind: str) -> tuple[str, ...]:
    """The queues whose consumer cannot apply a poison of `kind`: every consumer, for
    a message that is not a valid CloudEvent; for one whose data is wrong, those that
    read the data (the event log only keeps the envelope). The registry's consumers
    refuse data that breaks the producer's contract at once; the tally fails on it at
    every delivery."""
    if kind == "always fails":
        return LICENCE_CONSUMER_QUEUES
    return LICENCE_EVENT_QUEUES


def expected_error(kind: str, queue: str) -> str:
    return {
        "foreign publisher": "not published by the licensing service",
        "missing attribute": "source: Field required",
        "wrong specversion": "specversion",
        "unparseable time": "time:",
        "unknown type": "unknown event type jvreg.license.misplaced",
        "not JSON": "undecodable message",
        "always fails": (
            "EventDoesNotDescribeItsSubject"
            if queue == "chaos_tally.tally"
            else "data breaks licensing's contract"
        ),
    }[kind]


def test_6_random_consumer_kills_leave_every_projection_equal_to_its_source(registry, report):
    """Many licences with many transitions each while consumer processes (facilities,
    notifications, the tally, the search instance) are SIGKILLed at random moments:
    afterwards every projection equals its source (`jvreg reconcile` finds no drift),
    the sequence each consumer applied per licence only ever increased, and the search
    index holds every licence at its version with each change applied once."""
    started = time.monotonic()
    seed = random.randrange(1 << 30)
    print(f"\nrandom kills with seed {seed}")
    load = sized(
        Load(ventures=11, licences_per_plant=3, seconds=40, cycles=5, drivers=16, pause=6),
        Load(ventures=2, licences_per_plant=2, seconds=8),
    )
    with registry(licensing=2, **TWO_OF_EACH_CONSUMER) as chaos:
        licences = chaos.apply_for_licences(load)
        until = time.monotonic() + load.seconds
        killer = eventlet.spawn(
            kill_at_random,
            chaos.of(*CONSUMERS, *KILLED_ALONE),
            (0.1, 0.5),
            until,
            random.Random(seed),
        )
        chaos.drive(licences, load)
        killer.wait()
        outcome = conclude(chaos, "6. random consumer kills", report, started)
        for licence_id, (version, applied) in chaos.sequences_applied().items():
            assert applied == sorted(set(applied)), f"{licence_id} went back: {applied}"
            assert applied == list(range(1, version + 1)), (licence_id, version, applied)
    assert outcome.faults >= (MIN_KILLS if FULL else 1)
    report.add(outcome)


def test_7_a_cluster_node_killed_loses_nothing(registry, report, rabbit_cluster):
    """The registry on a three-node RabbitMQ cluster, every service given the three
    addresses: the node leading most of the licence events' quorum queues is killed
    while licences move, and started again once the services work on without it.
    Nothing is lost or applied twice; the time to recover is reported."""
    started = time.monotonic()
    kills = 3 if FULL else 1
    load = sized(*FAULTS_AMONG_TRAFFIC)
    with registry(licensing=2, broker=rabbit_cluster) as chaos:
        licences = chaos.apply_for_licences(load)
        done = []

        def kill_a_leader() -> None:
            done.append(kill_the_busiest_leader(rabbit_cluster, chaos.vhost, LICENCE_EVENT_QUEUES))
            print(f"\nkilled {done[-1]}")

        flowed = drive_through(chaos, licences, load, kills, kill_a_leader)
        print(f"\n{flowed.transitions} transitions through {len(done)} node kills")
        outcome = conclude(
            chaos, "7. RabbitMQ cluster node killed", report, started, faults=len(done)
        )
    outcome.recover_seconds = max(kill.recovered_seconds for kill in done)
    print(outcome.line())
    report.add(outcome)


@dataclass(frozen=True)
class PlantsAndLadder:
    """Scenario 8's ventures, each with plants of their own, and its traffic."""

    ladder: int  # ventures of one plant whose three licences climb the expiry ladder
    dissolved: int  # ventures dissolved mid-traffic, of `plants` plants each
    plants: int
    walked: int  # ventures of one plant whose licences walk the usual way
    # Licences keep being suspended and reinstated (`cycles`) past the dissolutions.
    load: Load


PLANTS_AND_LADDER = (
    PlantsAndLadder(
        ladder=8,
        dissolved=8,
        plants=2,
        walked=4,
        load=Load(ventures=0, licences_per_plant=3, seconds=60, cycles=20, drivers=90, pause=1),
    ),
    PlantsAndLadder(
        ladder=1,
        dissolved=2,
        plants=2,
        walked=1,
        load=Load(ventures=0, licences_per_plant=2, seconds=10, cycles=10, drivers=20, pause=0.5),
    ),
)
# Licensing dies after its commits (a decision, a sweep's warning, the revocations of a
# plant's end), after the broker confirmed an event, and after applying a facility's
# event; the consumers of its events after applying them. A kill with another worker's
# transaction open locks its documents for 60 s (docs/reliability.md, "Known limits"):
# the reduced run injects fewer.
LICENSING_FAULTS = (
    "after_commit:0.1,after_confirm:0.1,after_apply:0.2"
    if FULL
    else "after_commit:0.05,after_confirm:0.05,after_apply:0.1"
)
CONSUMER_FAULTS = "after_apply:0.1" if FULL else "after_apply:0.05"
# The longest the ladder's licences take to climb it (about 2 s a rung without faults).
LADDER_SECONDS = 90


def test_8_plants_ended_and_expiry_warned_once_whatever_fails(registry, report):
    """The automatic licence events while licensing (three instances) and every consumer
    (two of each) are killed at their worst moments: ventures are dissolved while
    their plants' licences move, and every licence of a decommissioned plant that was
    in force is revoked by the plant's end exactly once, with nothing after it; licences
    granted and renewed up the expiry ladder (20, 60, 150 days, five years) are warned
    by the sweep exactly once per validity, of 30, 90 and 180 days."""
    started = time.monotonic()
    size = PLANTS_AND_LADDER[0] if FULL else PLANTS_AND_LADDER[1]
    load = size.load
    with registry(licensing=3, **TWO_OF_EACH_CONSUMER) as chaos:
        ladder, dissolved, walked = (
            chaos.ventures_with_plants(ventures, plants, licences)
            for ventures, plants, licences in (
                (size.ladder, 1, len(MANUFACTURING_LICENCES)),  # one on each of the first rungs
                (size.dissolved, size.plants, load.licences_per_plant),
                (size.walked, 1, load.licences_per_plant),
            )
        )
        climbing = [lid for v in ladder for ids in v.plants.values() for lid in ids]
        ending = {plant: ids for v in dissolved for plant, ids in v.plants.items()}
        walking = [lid for ids in ending.values() for lid in ids]
        walking += [lid for v in walked for ids in v.plants.values() for lid in ids]
        licences = [*climbing, *walking]
        # Before the faults: the ladder's licences one decision from their grant, the
        # others in force, so that the plants' ends find licences to revoke.
        brink = {lid: walked_until("inspection_scheduled") for lid in climbing}
        brink |= {lid: walked_until("granted") for lid in walking}
        chaos.drive(licences, replace(load, seconds=60, pause=0, drivers=len(licences)), brink)
        chaos.arm(LICENSING_FAULTS, "licensing")
        chaos.arm(CONSUMER_FAULTS, *CONSUMERS)
        # The ladder's licences climb to its top whatever the traffic's length (each
        # waits for the sweep at each rung); the others walk meanwhile, for its length.
        ladder_steps = {lid: expiry_ladder(n % 3) for n, lid in enumerate(climbing)}
        climb = replace(load, seconds=LADDER_SECONDS, drivers=len(climbing))
        climbed = eventlet.spawn(chaos.drive, climbing, climb, ladder_steps)
        dissolver = eventlet.spawn(dissolve_mid_traffic, chaos, dissolved, load.seconds)
        flowed = chaos.drive(walking, load)
        dissolver.wait()
        transitions = flowed.transitions + climbed.wait().transitions

        def automatic_events() -> list[str]:
            return chaos.plant_ending_violations(ending) + chaos.warning_violations(licences)

        outcome = conclude(
            chaos,
            "8. plants decommissioned and expiry warnings, services killed",
            report,
            started,
            extra=lambda: automatic_events() + chaos.queues_empty(*LICENCE_EVENT_QUEUES),
        )
        assert automatic_events() == []
        ended, warnings = automatic_counts(chaos, licences)
    print(
        f"{transitions} transitions; {ended} licences revoked with their "
        f"{len(ending)} plants; warnings sent by days before: {warnings}"
    )
    # Most were still being suspended and reinstated when their plants ended.
    assert ended >= sum(map(len, ending.values())) / 2, "licences in force when plants ended"
    assert set(warnings) == {30, 90, 180}, "a warning at each threshold"
    assert outcome.faults >= (MIN_KILLS if FULL else 1)
    report.add(outcome)


def dissolve_mid_traffic(chaos: ChaosRegistry, ventures: list[VentureMade], seconds: float):
    """Dissolve the ventures one by one from 30% to 70% of the traffic, while their
    plants' licences are being decided."""
    api = Api(chaos.url, chaos.regulator_key)
    eventlet.sleep(seconds * 0.3)
    for venture in ventures:
        dissolve(api, venture.id)
        eventlet.sleep(seconds * 0.4 / len(ventures))


def dissolve(api: Api, venture_id: str) -> None:
    path = f"/v1/ventures/{venture_id}/status"
    body = {"to": "dissolved", "reason": "partners wound the venture up"}
    response = call(api, "POST", path, json=body)
    if not transient(response):
        assert response.status_code == 200, response.text
        return
    # That try's outcome is unknown: it may have committed before its answer was lost,
    # and then the retry finds the venture dissolved already.
    response = insist(api, "POST", path, time.monotonic() + 120, json=body)
    committed_before = response.status_code == 409 and response.json()["current"] == "dissolved"
    assert response.status_code == 200 or committed_before, response.text


def automatic_counts(chaos: ChaosRegistry, licences: list[str]) -> tuple[int, dict[int, int]]:
    """Licences the end of their plant revoked, and warnings sent by days before."""
    ended, warnings = 0, Counter()
    for entries in chaos.histories(licences).values():
        ended += sum(e["actor"]["key_id"] == PLANT_ENDED_KEY for e in entries)
        warnings.update(
            e["fields"]["days_before"] for e in entries if e["event"] == "license.expiring"
        )
    return ended, dict(sorted(warnings.items()))


@pytest.mark.skipif(not FULL, reason="the reduced run injects a few faults per scenario")
def test_the_full_run_injected_at_least_1000_faults(report):
    assert len(report.outcomes) == SCENARIOS, "every scenario passed"
    assert sum(outcome.faults for outcome in report.outcomes) >= FULL_RUN_FAULTS
