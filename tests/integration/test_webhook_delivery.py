"""The notifications service against the real broker and wire server: licensing
events published to `licensing.events` (as the licensing service's outbox relay
publishes them) reach webhook receivers, signed, once each and in order; failures
are retried on the schedule and logged; 410 disables the subscription; a name that
resolves inward is never contacted, and each delivery looks its host up once.

Names are resolved by a DNS the test scripts (ScriptedDns), so no test looks up or
contacts anything but 127.0.0.x."""

import json
import uuid
from datetime import datetime

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from ops.processes import free_port, wait_until
from services.licensing import contract as licensing
from services.notifications.delivery import HostResolver
from services.notifications.service import NotificationsService
from shared.errors import Conflict, InvalidInput
from shared.outbox import event_publisher

from support import contract_event
from webhook_receiver import WebhookReceiver

REGULATOR = {"key_id": "key_drap1", "role": "regulator", "owner": "DRAP Licensing Division"}
RETRY_SECONDS = 0.3


@pytest.fixture
def notifications_config(service_config):
    return {
        **service_config,
        "JVREG_WEBHOOK_ALLOW_PRIVATE": True,
        "JVREG_WEBHOOK_RETRY_SCHEDULE_SECONDS": [RETRY_SECONDS, RETRY_SECONDS],
    }


@pytest.fixture
def notifications(notifications_config, container_factory):
    container = container_factory(NotificationsService, notifications_config)
    container.start()
    return container


@pytest.fixture
def rpc(notifications, amqp_uri):
    with ServiceRpcProxy("notifications", {"AMQP_URI": amqp_uri}) as proxy:
        yield proxy


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def publish(amqp_uri):
    return event_publisher(amqp_uri, "licensing")


class Licence:
    """Synthetic events of one licence, numbered as the licensing service numbers them."""

    def __init__(self):
        self.id = f"lic_{uuid.uuid4().hex[:12]}"
        self.sequence = 0

    def event(self, status: str):
        self.sequence += 1
        in_force = status in ("reinstated", "renewed")
        return contract_event(
            licensing.EVENTS[f"license.{status}"],
            license={
                "id": self.id,
                "status": "granted" if in_force else status,
                "version": self.sequence,
            },
            change={"to": "granted" if in_force else status},
        )


def subscribe(rpc, url: str, *patterns: str) -> dict:
    body = {"url": url, "event_types": list(patterns), "description": "DRAP licensing desk"}
    return rpc.create_subscription(json.dumps(body), REGULATOR)


def deliveries(rpc, subscription_id: str) -> list[dict]:
    return rpc.list_deliveries(subscription_id, {}, None, 200)


def test_matching_events_are_delivered_once_each_in_order_and_signed(rpc, receiver, publish):
    everything = subscribe(rpc, receiver.answer("/all", 200), "license.#")
    grants = subscribe(rpc, receiver.answer("/grants", 204), "license.granted")
    assert everything["secret"].startswith("whsec_")
    assert "secret" not in rpc.get_subscription(everything["id"])

    first, second = Licence(), Licence()
    events = [
        first.event("submitted"),
        first.event("under_review"),
        second.event("submitted"),
        first.event("inspection_scheduled"),
        first.event("granted"),
        second.event("under_review"),
        first.event("suspended"),
        first.event("granted"),
    ]
    for event in events:
        publish(event)

    wait_until(lambda: len(receiver.received("/all")) == len(events), 30, "every event at /all")
    wait_until(lambda: len(receiver.received("/grants")) == 2, 30, "both grants at /grants")

    received = receiver.received("/all")
    assert [r.verified(everything["secret"])["id"] for r in received] == [e.id for e in events]
    assert [r.headers["webhook-id"] for r in received] == [e.id for e in events]
    assert all(r.headers["Content-Type"] == "application/json" for r in received)
    assert received[0].event == events[0].wire()

    granted = [e.id for e in events if e.type == "jvreg.license.granted"]
    assert [r.verified(grants["secret"])["id"] for r in receiver.received("/grants")] == granted
    with pytest.raises(Exception, match="signature"):
        receiver.received("/grants")[0].verified(everything["secret"])

    log = deliveries(rpc, everything["id"])
    assert [d["event_id"] for d in log] == [e.id for e in events]
    assert {d["status"] for d in log} == {"delivered"}
    assert all(len(d["attempts"]) == 1 for d in log)
    assert log[0]["attempts"][0]["status_code"] == 200
    assert log[0]["attempts"][0]["outcome"] == "delivered"


def test_failed_attempts_are_retried_on_schedule_and_logged_and_order_holds(rpc, receiver, publish):
    subscription = subscribe(rpc, receiver.answer("/flaky", 500, 503, 200), "license.*")
    licence = Licence()
    first, second = licence.event("submitted"), licence.event("under_review")
    publish(first)
    publish(second)

    wait_until(lambda: len(receiver.received("/flaky")) == 4, 30, "three tries and one more")
    received = [r.verified(subscription["secret"])["id"] for r in receiver.received("/flaky")]
    # The second event waited until the first got through.
    assert received == [first.id, first.id, first.id, second.id]

    def logged():
        log = deliveries(rpc, subscription["id"])
        return log if log and all(d["status"] == "delivered" for d in log) else None

    wait_until(logged, 10, "both deliveries logged as delivered")
    first_delivery, second_delivery = logged()
    attempts = first_delivery["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 503, 200]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "delivered"]
    assert [a["error"] for a in attempts] == ["HTTP 500", "HTTP 503", None]
    assert all(a["latency_ms"] >= 0 for a in attempts)
    for attempt, following in zip(attempts, attempts[1:], strict=False):
        retry_at = datetime.fromisoformat(attempt["next_retry_at"])
        waited = (retry_at - datetime.fromisoformat(attempt["at"])).total_seconds()
        assert waited >= RETRY_SECONDS
        assert datetime.fromisoformat(following["at"]) >= retry_at
    assert attempts[-1]["next_retry_at"] is None
    assert first_delivery["attempt_count"] == 3 and first_delivery["next_attempt_at"] is None
    assert [a["attempt"] for a in second_delivery["attempts"]] == [1]


def test_a_delivery_fails_once_the_schedule_is_spent_and_the_next_goes_on(rpc, receiver, publish):
    down = receiver.answer("/down", 500)
    subscription = subscribe(rpc, down, "license.#")
    licence = Licence()
    doomed = licence.event("submitted")
    publish(doomed)
    wait_until(lambda: len(receiver.received("/down")) == 3, 30, "an attempt and two retries")
    receiver.answer("/down", 204)
    after = licence.event("under_review")
    publish(after)

    wait_until(
        lambda: (
            [d["status"] for d in deliveries(rpc, subscription["id"])] == ["failed", "delivered"]
        ),
        30,
        "the first failed, the second delivered",
    )
    failed = deliveries(rpc, subscription["id"])[0]
    assert [a["outcome"] for a in failed["attempts"]] == ["retry", "retry", "failed"]
    assert [r.event["id"] for r in receiver.received("/down")] == [doomed.id] * 3 + [after.id]
    assert rpc.get_subscription(subscription["id"])["status"] == "active"


def test_410_gone_disables_the_subscription(rpc, receiver, publish):
    gone = subscribe(rpc, receiver.answer("/gone", 410), "license.#")
    subscribe(rpc, receiver.answer("/witness", 204), "license.#")  # sees every event too
    licence = Licence()
    publish(licence.event("submitted"))
    wait_until(
        lambda: rpc.get_subscription(gone["id"])["status"] == "disabled", 30, "disabled on 410"
    )
    subscription = rpc.get_subscription(gone["id"])
    assert "410" in subscription["disabled_reason"]
    (delivery,) = deliveries(rpc, gone["id"])
    assert delivery["status"] == "failed"
    assert [(a["status_code"], a["outcome"]) for a in delivery["attempts"]] == [(410, "gone")]

    later = licence.event("under_review")
    publish(later)
    wait_until(lambda: len(receiver.received("/witness")) == 2, 30, "the later event elsewhere")
    assert len(receiver.received("/gone")) == 1
    assert len(deliveries(rpc, gone["id"])) == 1  # nothing more queued for it


def test_the_same_event_published_twice_is_delivered_once(rpc, receiver, publish):
    subscription = subscribe(rpc, receiver.answer("/once", 204), "license.#")
    licence = Licence()
    event, follower = licence.event("submitted"), licence.event("under_review")
    publish(event)
    publish(event)  # an outbox relay re-sends after a lost confirm: same id
    publish(follower)
    wait_until(lambda: len(receiver.received("/once")) >= 2, 30, "two deliveries")
    wait_until(
        lambda: all(d["status"] == "delivered" for d in deliveries(rpc, subscription["id"])),
        10,
        "deliveries settled",
    )
    assert [r.event["id"] for r in receiver.received("/once")] == [event.id, follower.id]
    assert len(deliveries(rpc, subscription["id"])) == 2


def test_two_instances_never_send_one_subscriptions_events_at_once(
    notifications, notifications_config, container_factory, rpc, receiver, publish
):
    container_factory(NotificationsService, notifications_config).start()
    subscription = subscribe(rpc, receiver.answer("/busy", 204, delay=0.2), "license.#")
    licences = [Licence() for _ in range(3)]
    events = [
        licence.event(status) for status in ("submitted", "under_review") for licence in licences
    ]
    events += [licence.event("deferred") for licence in licences]
    for event in events:
        publish(event)
    wait_until(lambda: len(receiver.received("/busy")) == len(events), 60, "every event")
    assert receiver.most_in_flight["/busy"] == 1
    received = [r.verified(subscription["secret"])["id"] for r in receiver.received("/busy")]
    assert sorted(received) == sorted(event.id for event in events)  # once each
    for licence in licences:  # and each licence's events in sequence order
        mine = [e.id for e in events if e.subject == licence.id]
        assert [event_id for event_id in received if event_id in mine] == mine


def test_disabling_cancels_what_is_pending(rpc, receiver, publish):
    subscription = subscribe(rpc, receiver.answer("/slow", 500), "license.#")
    licence = Licence()
    publish(licence.event("submitted"))
    publish(licence.event("under_review"))
    wait_until(lambda: receiver.received("/slow"), 30, "a first attempt")
    disabled = rpc.disable_subscription(subscription["id"], REGULATOR)
    assert disabled["status"] == "disabled"
    assert disabled["disabled_reason"] == "disabled by DRAP Licensing Division (key key_drap1)"
    wait_until(
        lambda: {d["status"] for d in deliveries(rpc, subscription["id"])} == {"cancelled"},
        10,
        "both deliveries cancelled",
    )
    assert rpc.disable_subscription(subscription["id"], REGULATOR) == disabled


def test_bad_subscriptions_are_refused_naming_the_field(rpc):
    body = {"url": "https://drap.example/hooks", "event_types": ["license.#", "license..x"]}
    with pytest.raises(InvalidInput) as caught:
        rpc.create_subscription(json.dumps(body), REGULATOR)
    assert [error["loc"] for error in caught.value.errors] == [["body", "event_types", 1]]
    assert rpc.list_subscriptions({}, None, 10) == []


def test_private_addresses_are_refused_unless_allowed(service_config, container_factory, amqp_uri):
    container = container_factory(NotificationsService, service_config)
    container.start()
    with ServiceRpcProxy("notifications", {"AMQP_URI": amqp_uri}) as proxy:
        for url in ("http://127.0.0.1:8000/hooks", "http://[::1]/hooks", "http://10.0.0.8/"):
            body = {"url": url, "event_types": ["license.#"]}
            with pytest.raises(InvalidInput) as caught:
                proxy.create_subscription(json.dumps(body), REGULATOR)
            assert caught.value.errors[0]["loc"] == ["body", "url"]
            assert "webhooks may only target public addresses" in caught.value.errors[0]["msg"]
        assert proxy.list_subscriptions({}, None, 10) == []


# --- where deliveries go: names, addresses, lookups ---------------------------------

PUBLIC_LOOKING = "webhooks.drap.gov.pk"
# A public address, only ever answered by the scripted DNS at subscription: never
# contacted (documentation ranges such as 192.0.2.0/24 are not public, hence refused).
PUBLIC_ADDRESS = "196.1.100.17"


class ScriptedDns:
    """A resolver the test controls: the n-th lookup of a name gets the n-th of its
    scripted answers (the last one from then on). It records every lookup."""

    def __init__(self, answers: dict[str, list[str]] | None = None):
        self.answers = answers or {}
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        seen = sum(1 for looked_up, _ in self.lookups if looked_up == host) - 1
        scripted = self.answers.get(host)
        if not scripted:
            raise OSError("no such name")
        return [scripted[min(seen, len(scripted) - 1)]]


@pytest.fixture
def notifications_with(container_factory, amqp_uri):
    """Start the notifications service with `dns` as its resolver; its RPC proxy."""
    proxies = []

    def start(dns: ScriptedDns, config: dict):
        class NotificationsWithScriptedDns(NotificationsService):
            resolve = HostResolver(dns)

        container_factory(NotificationsWithScriptedDns, config).start()
        proxy = ServiceRpcProxy("notifications", {"AMQP_URI": amqp_uri})
        proxies.append(proxy)
        return proxy.start()

    yield start
    for proxy in proxies:
        proxy.stop()


def public_only(service_config) -> dict:
    return {**service_config, "JVREG_WEBHOOK_RETRY_SCHEDULE_SECONDS": [RETRY_SECONDS]}


def settled(rpc, subscription_id: str, attempts: int) -> list[dict]:
    """The subscription's one delivery, once it has logged `attempts` attempts."""

    def logged():
        log = deliveries(rpc, subscription_id)
        return log if log and len(log[0]["attempts"]) >= attempts else None

    wait_until(logged, 30, f"{attempts} attempt(s) logged")
    return logged()


def test_a_name_resolving_to_loopback_cannot_be_subscribed(
    notifications_with, service_config, receiver
):
    url = receiver.answer("/hook", 204).replace("127.0.0.1", PUBLIC_LOOKING)
    inward = ScriptedDns({PUBLIC_LOOKING: ["127.0.0.1"]})
    rpc = notifications_with(inward, public_only(service_config))
    with pytest.raises(InvalidInput) as caught:
        subscribe(rpc, url, "license.#")
    (error,) = caught.value.errors
    assert error["loc"] == ["body", "url"]
    assert error["type"] == "refused_destination"
    assert "resolves to 127.0.0.1, a loopback address" in error["msg"]
    assert rpc.list_subscriptions({}, None, 10) == []
    assert receiver.requests == []


def test_a_name_that_turns_to_loopback_after_subscribing_is_never_contacted(
    notifications_with, service_config, receiver, publish
):
    port = receiver.server.server_address[1]
    url = receiver.answer("/hook", 204).replace("127.0.0.1", PUBLIC_LOOKING)
    # Public when subscribing, loopback at every delivery attempt after that.
    dns = ScriptedDns({PUBLIC_LOOKING: [PUBLIC_ADDRESS, "127.0.0.1"]})
    rpc = notifications_with(dns, public_only(service_config))
    subscription = subscribe(rpc, url, "license.#")
    publish(Licence().event("submitted"))

    (delivery,) = settled(rpc, subscription["id"], 2)
    assert delivery["status"] == "failed"
    for attempt in delivery["attempts"]:
        assert attempt["category"] == "refused_destination"
        assert attempt["status_code"] is None
        assert attempt["error"] == (
            f"not sent: {PUBLIC_LOOKING} resolves to 127.0.0.1, a loopback address; "
            "webhooks may only target public addresses"
        )
    assert receiver.requests == []
    assert dns.lookups == [(PUBLIC_LOOKING, port)] * 3  # subscribing, then each attempt


def test_each_delivery_looks_its_host_up_once_and_connects_to_that_address(
    notifications_with, notifications_config, receiver, publish
):
    """DNS rebinding: a second lookup would get 127.0.0.2, where nothing listens; the
    delivery arrives because the connection goes to the address looked up (and
    checked) once."""
    port = receiver.server.server_address[1]
    url = receiver.answer("/hook", 204).replace("127.0.0.1", PUBLIC_LOOKING)
    dns = ScriptedDns({PUBLIC_LOOKING: ["127.0.0.1", "127.0.0.2"]})
    rpc = notifications_with(dns, notifications_config)
    subscription = subscribe(rpc, url, "license.#")
    publish(Licence().event("submitted"))

    (delivery,) = settled(rpc, subscription["id"], 1)
    assert [a["category"] for a in delivery["attempts"]] == ["http_status"]
    assert delivery["status"] == "delivered"
    assert len(receiver.received("/hook")) == 1
    assert dns.lookups == [(PUBLIC_LOOKING, port)]


def test_a_delivery_carries_the_original_host_header_path_and_query(
    notifications_with, notifications_config, receiver, publish
):
    port = receiver.server.server_address[1]
    receiver.answer("/hooks/jvreg?desk=islamabad", 204)
    dns = ScriptedDns({PUBLIC_LOOKING: ["127.0.0.1"]})
    rpc = notifications_with(dns, notifications_config)
    url = f"http://{PUBLIC_LOOKING}:{port}/hooks/jvreg?desk=islamabad#ignored"
    subscription = subscribe(rpc, url, "license.#")
    event = Licence().event("submitted")
    publish(event)

    wait_until(lambda: receiver.received("/hooks/jvreg?desk=islamabad"), 30, "the delivery")
    (received,) = receiver.received("/hooks/jvreg?desk=islamabad")
    assert received.headers["Host"] == f"{PUBLIC_LOOKING}:{port}"
    assert received.verified(subscription["secret"])["id"] == event.id


def test_attempts_are_logged_by_category_never_by_socket_error(
    notifications_with, notifications_config, receiver, publish
):
    closed = free_port()  # nothing listens here
    dns = ScriptedDns({PUBLIC_LOOKING: ["127.0.0.1"]})
    rpc = notifications_with(dns, notifications_config)
    refused = subscribe(rpc, f"http://{PUBLIC_LOOKING}:{closed}/hook", "license.#")
    nowhere = subscribe(rpc, "http://unknown.drap.gov.pk/hook", "license.#")
    failing = subscribe(rpc, receiver.answer("/busy", 503), "license.#")
    publish(Licence().event("submitted"))

    (delivery,) = settled(rpc, refused["id"], 1)
    attempt = delivery["attempts"][0]
    assert (attempt["category"], attempt["status_code"]) == ("connect_failed", None)
    assert attempt["error"] == "could not connect to the receiver"  # no errno, no address
    (delivery,) = settled(rpc, nowhere["id"], 1)
    attempt = delivery["attempts"][0]
    assert attempt["category"] == "unresolvable"
    assert attempt["error"] == "not sent: unknown.drap.gov.pk does not resolve"
    (delivery,) = settled(rpc, failing["id"], 1)
    attempt = delivery["attempts"][0]
    assert (attempt["category"], attempt["status_code"]) == ("http_status", 503)
    assert attempt["error"] == "HTTP 503"


def test_patterns_and_subscriptions_are_capped_by_the_settings(
    notifications_with, notifications_config
):
    config = {
        **notifications_config,
        "JVREG_WEBHOOK_MAX_EVENT_TYPES": 2,
        "JVREG_WEBHOOK_MAX_SUBSCRIPTIONS_PER_OWNER": 2,
    }
    rpc = notifications_with(ScriptedDns(), config)
    url = "http://127.0.0.1:9/hook"
    with pytest.raises(InvalidInput) as caught:
        subscribe(rpc, url, "license.granted", "license.revoked", "license.expired")
    assert [error["loc"] for error in caught.value.errors] == [["body", "event_types"]]

    first = subscribe(rpc, url, "license.granted", "license.revoked")
    subscribe(rpc, url, "license.#")
    with pytest.raises(Conflict) as caught:
        subscribe(rpc, url, "license.#")
    assert "already has 2 active subscriptions" in str(caught.value)
    assert caught.value.extra == {"max_active_subscriptions": 2}
    other = {**REGULATOR, "owner": "Punjab Drug Inspectorate"}
    rpc.create_subscription(json.dumps({"url": url, "event_types": ["#"]}), other)

    rpc.disable_subscription(first["id"], REGULATOR)
    subscribe(rpc, url, "license.#")  # a disabled subscription frees its place
    assert len(rpc.list_subscriptions({"owner": REGULATOR["owner"]}, None, 10)) == 3
