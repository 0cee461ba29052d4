"""docs/reliability.md: the table of the last full chaos run (`make chaos`)."""

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
COLUMNS = (
    "scenario",
    "faults injected",
    "events sent",
    "delivered",
    "duplicated on the wire",
    "lost",
    "applied twice",
    "time to converge",
    "time to recover",
)

INTRO = """\
# Reliability: nothing lost, nothing applied twice

This page is written by `make chaos` (the fault-injection suite in `tests/chaos/`, issue 5)
at the end of a full run in which every scenario passed; do not edit it by hand. A reduced
run of the same eight scenarios (a few faults each) is part of `make test`, so CI guards the
same invariants on every change.
"""

SCENARIOS = """\
## The scenarios

Every scenario starts the registry's real processes (one per service, as `nameko run`
runs them, plus a regulator's consumer of `licensing.events`, `tests/chaos/tally.py`) on a
RabbitMQ vhost and databases of its own, declares a **regulator queue** of the test's own
(durable, bound to `licensing.events` with `license.#`) and subscribes a webhook endpoint
to `license.*`, both before any traffic. A driver then walks licences through their
lifecycle over HTTP (submitted → under review → inspection scheduled → granted, several
suspensions and reinstatements, revoked), several at a time; after any failure (503 while
licensing is down, 409 because the change had committed before a crash) it re-reads the
licence and carries on from its actual status. The faults are injected while it does.

Every service process is started by a forking launcher (`tests/chaos/launcher.py`: the
modules are imported once, and each (re)start is a fresh forked child running exactly what
`nameko run --config deploy/config.yaml` runs), because a restart then takes 0.1–0.2 s
instead of 1.1–1.2 s on this machine. A fault hook
(`JVREG_FAULTS`) is armed 3 s after a process starts, and the random killer only picks
processes at least 3 s old, so that each gets some work done between kills (see "Known
limits").

1. **Killed after commit, before publishing.** Three licensing instances run with
   `JVREG_FAULTS=after_commit:0.5`: after half of their commits (a state change and its
   outbox record) the process SIGKILLs itself before its relay publishes. The record stays
   pending; a relay publishes it (another instance, or this one after its restart).
2. **Relay killed after the confirm, before marking sent.** Three licensing instances with
   `after_confirm:0.5`: the broker has the event, the record is still pending, so it is
   published again. Duplicates appear on the wire; every consumer applies each event once.
3. **Consumer killed after applying, before acking.** Facilities, notifications and the
   tally (two instances each) with `after_apply:0.3`: the effect and the aggregate's last
   applied sequence are committed, the message is not acked, so it is redelivered; the
   redelivery changes nothing. Also checked: every consumer queue ends empty (0 ready,
   0 unacked, from the management API).
4. **RabbitMQ stopped and started** (`rabbitmqctl stop_app` / `start_app` on a node of the
   scenario's own, a few seconds down each time) while licence transitions flow: each
   restart after 25 more transitions were confirmed (a reduced run: 4), and the traffic
   ends after as many more with the broker back. Every service reconnects by itself and
   no process exits; everything is delivered once the broker is back; no outbox record is
   marked sent without a confirm (every record marked sent is on the regulator queue).
5. **Poison messages among healthy events**, published to `licensing.events`: a missing
   required attribute, a wrong `specversion`, an unparseable `time`, an unknown type, a body
   that is not JSON, and a valid envelope whose data no consumer that reads it can apply.
   Each is dead-lettered, with its error, by every consumer that cannot apply it: at once
   when it can never be valid, after the delivery limit (5) when its handler keeps failing;
   no healthy event is held up or lost. Faults = poison messages published.
6. **Random consumer kills.** Many licences with many transitions each while facilities,
   notifications and the tally (two instances each) and the search instance (one: its
   index is its own directory) are SIGKILLed at random moments (a process at least 3 s
   old, every 0.1–0.5 s). Afterwards `jvreg reconcile` finds no drift and the sequence
   the tally applied per licence only ever increased, with no gap.

7. **A RabbitMQ cluster node killed.** Three nodes of the machine's RabbitMQ joined in a
   cluster (`tests/rabbit_nodes.py`, `make cluster`), every service given the three
   addresses in `JVREG_AMQP_URI` (`;`-separated: kombu fails over to the next). Quorum
   queues have a replica on each node; a policy mirrors the classic ones (nameko's RPC
   queues, the regulator's and the dead-letter queue). Mid-traffic (each kill after 25 more
   confirmed transitions, a reduced run 4, and as many more after the last) the node
   leading most of the licence events' quorum queues (the management API's `leader`) is
   SIGKILLed, then started again once every one of those queues has a leader elsewhere
   and a consumer again; it rejoins the cluster. Faults = node kills; **time to
   recover** = the longest from a kill until the services consumed through the other
   nodes.
8. **Plants decommissioned and expiry warnings, services killed.** The automatic licence
   events (issue 16) while three licensing instances run with `after_commit`,
   `after_confirm` and `after_apply` (a decision, a sweep's warning or the revocations of
   a plant's end committed; an event confirmed; a facility's event applied) and
   facilities, notifications and the tally (two instances each) with `after_apply`; the
   expiry sweep runs every second (`JVREG_EXPIRY_SWEEP_SECONDS=1`). Ventures of two
   plants each are dissolved mid-traffic while their plants' licences, in force before
   the faults, are being suspended and reinstated: every licence of a decommissioned
   plant ends up out of force, and one the plant's end revoked (actor
   `system:plant-decommissioned`) was revoked so exactly once, from `granted` or
   `suspended`, with nothing after it; both facilities and licensing's projection hold
   the plants decommissioned. Other licences climb an expiry ladder: granted 20, 60 or
   150 days before their end and renewed up the rungs (60, 150 days, then five years),
   each renewal once the sweep has warned: each validity is warned exactly once, of the
   nearest threshold it starts within (30, 90, 180 days; one 20 days from its end is
   warned once, of 30), and none beyond 180 days is warned. Other licences walk their
   usual way. The reduced run injects fewer faults (a kill with another worker's
   transaction open locks its documents for 60 s; see "Known limits").

## The columns and the invariants every scenario checks

- **faults injected**: processes found dead by SIGKILL (a supervisor notices, counts and
  restarts each, as a process manager would), broker restarts, or poison messages.
- **events sent**: licensing outbox records, i.e. every licence change committed.
- **delivered**: distinct event ids on the regulator queue; **duplicated on the wire**:
  deliveries beyond the first of an id (at-least-once delivery at work).
- **lost** = committed events missing from the regulator queue. Must be 0.
- **applied twice**: event ids with more than one effect, measured from the effects and not
  from the de-duplication's own record (the last applied sequence): the tally's effect
  counts applications per event id (`$inc`), and notifications must have created exactly
  one webhook delivery per event. Must be 0.
- **time to converge**: from the end of the traffic (faults stopped) until every invariant
  holds: no outbox record pending (licensing and facilities), every committed event on the
  regulator queue, applied by the tally exactly once and fanned out to the webhook exactly
  once, the tally's sequences per licence exactly 1…version, `jvreg reconcile` clean
  (facility status and licences in force, the facilities and investments projections of
  ventures, licensing's projection of facilities, facilities' applied licence sequences),
  the search index holding every licence at its version with as many changes applied to
  it as its sequence (`search.applications`: one lost leaves it behind, one applied
  twice counts more),
  the dead-letter queue empty (in scenario 5: exactly the expected dead letters), and no
  process exited other than by the injected SIGKILLs.

## What the suite found, and what changed in `shared/`

- **An event overtook its predecessor after a relay crash.** A relay that died holding a
  record's lease left it unpublishable for the lease (10 s), while the next change of the
  same licence was published by another instance; consumers held the early event back and
  then dead-lettered it. The relay now publishes a record only when no earlier record of
  the same aggregate is still pending (`shared/outbox.py`).
- **Consumers dead-lettered healthy events after crashes.** Early events waited in the
  queue by requeueing, and each requeue, and each crash of a consumer holding the message,
  counted against the delivery limit of 5. A consumer killed with a transaction open also
  leaves its documents locked until the database reaps that transaction (60 s, MongoDB's
  `transactionLifetimeLimitSeconds`), which blocked the redelivered predecessor for longer
  than that budget. Now an event that cannot be applied yet (early, or still conflicting
  after 5 s) is sent to the tail of its queue as a new message, holding no worker and not
  counting as a failure, and is dead-lettered only after waiting 5 minutes; a handler's
  failures are counted by the consumer (a header on the copy sent to try again), so only
  5 failures of the handler dead-letter a message; the broker's own delivery limit,
  which also counts crashes, is 20 (`shared/inbox.py`, `shared/dead_letters.py`,
  `shared/messaging.py`).
- **A RabbitMQ restart ended service processes.** When the broker went away while an RPC
  was being answered, nameko's RPC entrypoint raised while publishing the reply, which
  kills the whole container, so `nameko run` exited. The registry's RPC entrypoint
  (`shared/entrypoints.py`) now logs a reply it cannot send; the request was carried out,
  and if the broker redelivers it, its command key keeps it to one effect.
- **A grant could put a licence in force on a decommissioned plant** (found while
  writing scenario 8's invariant, by reading the code). A grant or reinstatement is
  decided on the plant as read before its transaction; a decommissioning that committed
  in between found the licence not in force and left it, and the grant then committed.
  The grant's transaction now reads the plant (the same write that makes a concurrent
  decommissioning conflict with it) and decides again if it ended
  (`services/licensing/store.py`; `tests/integration/test_licensing_service.py`).
- **Relays were slow.** Each record cost two synced writes and a read (claim,
  predecessor check, mark sent): under the suite's load a relay published 1–3 events a
  second, and a burst of decisions queued up in the outbox. A relay then claimed up to
  50 records with one write and marked the confirmed ones sent with one more: 55 events a
  second (`tests/bench/bench_relay.py`, 2,000 events of 100 aggregates, median of 3). It
  now claims up to 200, publishes them pipelined on one long-lived confirm channel and is
  woken by each commit (`shared/outbox.py`, docs/architecture.md §5.1); `make bench`
  gives its figure beside kombu's own confirmed publish (docs/performance.md).

## Known limits (measured, not changed)

- A process killed with a transaction open keeps the documents it wrote locked for up to
  60 s; changes of those licences wait (the gateway answers 503 meanwhile) and the time to
  converge includes that wait. An RPC worker retries a write that conflicts with such a
  lock for up to 120 s (pymongo's `with_transaction`), long after the gateway answered
  503; the driver watches a request's outcome for 10 s before asking again, so that
  retries do not pile up on the lock and take every worker.
- A consumer's crash returns every message it had not acked, and the broker counts each
  return against its delivery limit (20). Two full runs of scenario 6 before 2026-11-30
  dead-lettered a healthy event that way ("dead-lettered by the broker: delivery_limit",
  a licence's sequence 1 in `facilities.follow_licence`): in a crash loop the head of the
  queue comes back at every crash. Since then a consumer sends a message returned 10 times
  to the tail as a fresh copy carrying its returns, and dead-letters it only after 50
  returns in all (architecture §5.4). A crash loop that stops consumers 50 times while they
  hold one message still dead-letters it (ops requeue it with `jvreg dlq requeue`). The
  suite lets a process live 3 s before a fault may kill it.
- An event held back for more than 5 minutes (its predecessor never arrived) is
  dead-lettered with the reason; ops requeue it once the gap is filled.
"""


def write_report(outcomes, facts: dict) -> None:
    rows = [f"| {' | '.join(COLUMNS)} |", f"|{'---|' * len(COLUMNS)}"]
    for o in outcomes:
        rows.append(
            f"| {o.scenario} | {o.faults:,} | {o.sent:,} | {o.delivered:,} | "
            f"{o.duplicated:,} | {o.lost} | {o.applied_twice} | "
            f"{o.converge_seconds:.1f} s | "
            + ("–" if o.recover_seconds is None else f"{o.recover_seconds:.1f} s")
            + " |"
        )
    total = {
        name: sum(getattr(o, name) for o in outcomes)
        for name in ("faults", "sent", "delivered", "duplicated", "lost", "applied_twice")
    }
    rows.append(
        f"| **total** | **{total['faults']:,}** | {total['sent']:,} | "
        f"{total['delivered']:,} | {total['duplicated']:,} | **{total['lost']}** | "
        f"**{total['applied_twice']}** | | |"
    )
    run = (
        f"## The last full run\n\n{facts['date']}, `make chaos`, "
        f"{facts['wall_seconds'] / 60:.1f} minutes in all, on {facts['cores']} cores "
        f"(`nproc`), Python {facts['python']}, RabbitMQ {facts['rabbitmq']}, "
        f"SecantusDB {facts['secantusdb']} (`--sync-on-commit`).\n\n"
    )
    DOC.write_text(f"{INTRO}\n{run}" + "\n".join(rows) + f"\n\n{SCENARIOS}")
