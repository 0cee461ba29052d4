"""A service and `jvreg watch` given the three addresses of a RabbitMQ cluster keep
working when the node they are connected to (the first address) is killed: they fail
over to the next node, and the quorum queues there still hold every event."""

import json
import uuid

import pytest
from kombu import Connection
from nameko.standalone.rpc import ServiceRpcProxy

from ops.processes import wait_until
from services.ventures.service import VenturesService
from shared import messaging
from shared.broker_users import vhost_of
from shared.dead_letters import broker_user
from shared.envelope import new_event
from shared.outbox import event_publisher

from support import RabbitManagement, amqp_uri_for, venture_body
from watch_process import WatchProcess

ACTOR = {"key_id": "key_1", "role": "investor", "owner": "Lahore Pharma Holdings"}


@pytest.fixture
def cluster_uri(rabbit_cluster):
    """A vhost of this test's own on the cluster, its classic queues mirrored; every
    node runs again after the test, whatever it killed."""
    vhost = f"jvreg-cluster-{uuid.uuid4().hex[:10]}"
    rabbit_cluster.create_vhost(vhost)
    yield amqp_uri_for(rabbit_cluster.amqp_uri, vhost)
    first = rabbit_cluster.nodes[0]
    if not first.running:
        first.start()
    rabbit_cluster.wait_running()
    RabbitManagement(rabbit_cluster.management_url).delete_vhost(vhost)


def kill_the_first_node(rabbit_cluster) -> None:
    """Kill the node every connection went to first, and wait until the others know."""
    first, *others = rabbit_cluster.nodes
    first.kill()
    wait_until(
        lambda: first.name not in rabbit_cluster.running_nodes(others[0]),
        60,
        f"the cluster to see {first.name} down",
    )


def test_a_service_fails_over_when_its_node_is_killed(
    rabbit_cluster, cluster_uri, backends, container_factory
):
    config = {
        "AMQP_URI": cluster_uri,
        "JVREG_AMQP_URI": cluster_uri,
        "JVREG_BROKER_USER": broker_user(cluster_uri),
        "JVREG_MONGO_URI": backends["mongo_uri"],
        "JVREG_DB_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "JVREG_RELAY_POLL_SECONDS": 0.2,
    }
    subscriber = messaging.consumer_queue("test-cluster-subscriber", "ventures", "venture.#")
    with Connection(cluster_uri) as connection:
        subscriber(connection.channel()).declare()
    container = container_factory(VenturesService, config)
    container.start()

    with ServiceRpcProxy("ventures", config) as proxy:
        before = proxy.register_venture(json.dumps(venture_body("Karachi Biologics JV")), ACTOR)
    kill_the_first_node(rabbit_cluster)

    # A new client (its reply queue lived on the dead node) reaches the service, which
    # reconnected to another node by itself.
    def registered() -> dict:
        with ServiceRpcProxy("ventures", config, timeout=5) as proxy:
            return proxy.register_venture(json.dumps(venture_body("Gilgit Herbals JV")), ACTOR)

    after = retried(registered, 90, "the ventures service answering through another node")

    received = []

    def both_events() -> bool:
        with Connection(cluster_uri) as connection:
            queue = subscriber(connection.channel())
            while message := queue.get(no_ack=True, accept=messaging.EVENT_CONTENT_TYPES):
                received.append(message.payload["subject"])
        return {before["id"], after["id"]} <= set(received)

    wait_until(both_events, 60, "both ventures' events on the quorum queue")


def test_jvreg_watch_fails_over_and_misses_nothing(rabbit_cluster, cluster_uri, tmp_path):
    queue = f"drap-cluster-{uuid.uuid4().hex[:6]}"
    watch = WatchProcess(tmp_path, cluster_uri, queue, "--queue-type", "quorum").start()
    publish = event_publisher(cluster_uri, "licensing")
    licence_id = f"lic_{uuid.uuid4().hex[:12]}"
    events = [
        new_event("licensing", f"license.{status}", licence_id, n, {"license": {"id": licence_id}})
        for n, status in enumerate(("granted", "suspended", "reinstated", "revoked"), start=1)
    ]
    try:
        for event in events[:2]:
            publish(event)
        watch.wait_for(2)
        kill_the_first_node(rabbit_cluster)
        for event in events[2:]:
            retried(lambda e=event: publish(e), 60, "a publish through another node")
        # At least once, in order: a publish retried after the kill may repeat an event.
        wanted = [event.id for event in events]
        wait_until(
            lambda: list(dict.fromkeys(line["id"] for line in watch.events())) == wanted,
            90,
            "every event printed once the watch failed over",
        )
        assert "reconnecting" in watch.errors()
        assert watch.stop() == 0
    finally:
        watch.kill()
        publish.close()
    # Asked of a node that stayed up: the first node is down until the fixture's end.
    survivor = RabbitManagement(rabbit_cluster.nodes[1].management_url)
    replicas = survivor.queue(vhost_of(cluster_uri), queue)
    assert replicas["type"] == "quorum"
    assert set(replicas["members"]) == {node.name for node in rabbit_cluster.nodes}


def retried(action, timeout: float, what: str):
    """`action`'s result once it stops raising: the moments a client needs to notice
    its node is gone and to connect to the next."""
    outcome = {}

    def done() -> bool:
        outcome["result"] = action()
        return True

    wait_until(done, timeout, what, pause=1)
    return outcome["result"]
