"""Webhook subscriptions' rules: topic patterns, where a webhook may point, the retry
schedule, and the Standard Webhooks signature of a delivery."""

import base64
import hashlib
import hmac
import json
import sys
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifications.contract import CreateSubscription, Subscription
from services.notifications.delivery import Deliverer, webhook_headers
from services.notifications.domain import (
    DestinationRefused,
    check_destination,
    check_event_type_count,
    choose_destination,
    judge_attempt,
    new_secret,
    retry_delay,
    wants,
)
from shared.contract import topic_matches
from shared.errors import InvalidInput
from shared.settings import DEFAULT_WEBHOOK_RETRY_SCHEDULE, Settings


@pytest.mark.parametrize(
    ("pattern", "routing_key", "expected"),
    [
        ("license.granted", "license.granted", True),
        ("license.granted", "license.revoked", False),
        ("license.*", "license.granted", True),
        ("license.*", "license", False),
        ("license.*", "license.granted.late", False),
        ("license.#", "license", True),
        ("license.#", "license.granted", True),
        ("license.#", "license.granted.late", True),
        ("#", "license.granted", True),
        ("*.granted", "license.granted", True),
        ("*.granted", "license.suspended", False),
        ("#.granted", "license.granted", True),
        ("license.#.late", "license.late", True),
        ("license.#.late", "license.granted.late", True),
        ("license.#.late", "license.granted", False),
        ("license.*", "facility.registered", False),
        ("#.#", "license", True),
        ("#.*", "license.granted", True),
        ("*.#.*", "license", False),
        ("#.granted.#", "license.granted", True),
        ("#.#.#.revoked", "license.granted", False),
        ("license.#.#", "license.granted.late", True),
    ],
)
def test_topic_patterns_match_as_rabbitmq_bindings_do(pattern, routing_key, expected):
    assert topic_matches(pattern, routing_key) is expected


def python_calls(function, *args) -> int:
    """How many Python function calls (and generator resumptions) `function(*args)`
    makes: a measure of its work that does not depend on the machine's speed."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
    return calls


def test_matching_a_pattern_of_many_hashes_is_linear_not_exponential():
    """`#.#.….#.x` (the longest pattern allowed) against a licensing routing key: trying
    every split of the key at each `#` made half a million calls (over a second per
    pattern, per event); walking the key's words once makes a handful."""
    pattern = ".".join(["#"] * 99 + ["x"])
    assert len(pattern) <= 200
    assert python_calls(topic_matches, pattern, "license.granted") < 20
    assert not topic_matches(pattern, "license.granted")
    assert topic_matches(pattern, "license.x")


def test_patterns_per_subscription_are_capped_by_the_setting():
    command = CreateSubscription.model_validate(
        subscription_body(event_types=[f"license.kind_{n}" for n in "abcdefghijklmnopqrstuvwxy"])
    )
    check_event_type_count(command, 25)
    with pytest.raises(InvalidInput) as caught:
        check_event_type_count(command, 24)
    (error,) = caught.value.errors
    assert error["loc"] == ["body", "event_types"]
    assert "at most 24 patterns" in error["msg"]
    assert Settings().webhook_max_event_types == 20
    assert Settings().webhook_max_subscriptions_per_owner == 20


def subscription_body(**overrides) -> dict:
    body = {"url": "https://drap.example.gov.pk/hooks/licensing", "event_types": ["license.*"]}
    body.update(overrides)
    return body


@pytest.mark.parametrize("pattern", ["license.granted", "license.*", "license.#", "#", "*.revoked"])
def test_valid_event_type_patterns_are_accepted(pattern):
    command = CreateSubscription.model_validate(subscription_body(event_types=[pattern]))
    assert command.event_types == [pattern]


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "License.granted",
        "license.",
        ".license",
        "license..granted",
        "license.gr*",
        "license granted",
        "licence-granted",
        "venture.#",
    ],
)
def test_an_invalid_pattern_is_refused_naming_its_index(pattern):
    with pytest.raises(ValidationError) as caught:
        CreateSubscription.model_validate(
            subscription_body(event_types=["license.granted", pattern])
        )
    assert [error["loc"] for error in caught.value.errors()] == [("event_types", 1)]


def test_repeated_patterns_are_kept_once_in_order():
    command = CreateSubscription.model_validate(
        subscription_body(event_types=["license.granted", "license.#", "license.granted"])
    )
    assert command.event_types == ["license.granted", "license.#"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://drap.example/hooks",
        "drap.example/hooks",
        "https://",
        "https://drap.example:99999/",
        "https://drap example/",
        "javascript://drap.example/%0aalert(1)",
        "file:///etc/passwd",
        "https://drap.example:0/",
    ],
)
def test_only_http_and_https_urls_with_a_host_are_accepted(url):
    with pytest.raises(ValidationError) as caught:
        CreateSubscription.model_validate(subscription_body(url=url))
    assert [error["loc"] for error in caught.value.errors()] == [("url",)]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # urlsplit reads host 196.1.100.17 here; the HTTP client reads 127.0.0.1:8000.
        ("http://127.0.0.1:8000\\@196.1.100.17/admin?x=1", "backslash"),
        ("https://hooks.drap.gov.pk\\path", "backslash"),
        ("https://desk:s3cret@hooks.drap.gov.pk/in", "user name or password"),
        ("https://desk@hooks.drap.gov.pk/in", "user name or password"),
        ("https://hooks.drap.gov.pk/in\r\nX-Injected: 1", "control characters"),
        ("https://hooks.drap.gov.pk/in\x00", "control characters"),
        ("https://hooks.drap.gov.pk\t/in", "control characters"),
        ("https://hooks.drap.gov.pk/in\x7f", "control characters"),
        ("https://hooks.drap.gov.pk/\u2028in", "control characters"),
        ("http://[fe80::1%25eth0]/in", "network interface"),
        # What resolvers also read as 127.0.0.1 (inet_aton's forms).
        ("http://2130706433/in", "four decimal numbers"),
        ("http://0177.0.0.1/in", "four decimal numbers"),
        ("http://0x7f.0.0.1/in", "four decimal numbers"),
        ("http://0x7f000001/in", "four decimal numbers"),
        ("http://127.1/in", "four decimal numbers"),
        ("http://127.0.0.1./in", "four decimal numbers"),
        ("http://017700000001/in", "four decimal numbers"),
    ],
)
def test_urls_that_parsers_read_differently_are_refused(url, reason):
    with pytest.raises(ValidationError) as caught:
        CreateSubscription.model_validate(subscription_body(url=url))
    (error,) = caught.value.errors()
    assert error["loc"] == ("url",)
    assert reason in error["msg"]


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.drap.gov.pk/in?desk=islamabad&kind=licence",
        "https://HOOKS.drap.gov.pk:8443/in/@desk",  # `@` in the path is not userinfo
        "https://196.1.100.17/in",
        "https://[2400:cb00::1]:8443/in",
        "https://hooks.drap.gov.pk./in",
        "https://hooks.drap.gov.pk/in%5Cpath",  # an escaped backslash is path text
    ],
)
def test_ordinary_urls_are_accepted(url):
    assert CreateSubscription.model_validate(subscription_body(url=url)).url == url


def test_the_destination_is_the_address_checked_with_the_original_name():
    resolve = resolver("196.1.100.17", "196.1.100.18", "196.1.100.17")
    destination = choose_destination(
        "https://Hooks.DRAP.gov.pk:8443/in?desk=1#top", resolve, allow_private=False
    )
    assert resolve.calls == [("hooks.drap.gov.pk", 8443)]
    assert destination.address == "196.1.100.17"
    assert (destination.host, destination.port) == ("hooks.drap.gov.pk", 8443)
    assert destination.url.netloc == "hooks.drap.gov.pk:8443"  # the Host header
    assert destination.url.request_uri == "/in?desk=1"


@pytest.mark.parametrize(
    ("url", "address", "kind"),
    [
        ("http://[::1]:8000/in", "::1", "loopback"),
        ("http://[::ffff:127.0.0.1]/in", "::ffff:127.0.0.1", "loopback"),
        ("http://[fd00::7]/in", "fd00::7", "private"),
        ("http://127.0.0.1:8000/in", "127.0.0.1", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
    ],
)
def test_ip_literals_are_checked_without_a_lookup(url, address, kind):
    resolve = resolver("196.1.100.17")
    with pytest.raises(DestinationRefused) as caught:
        choose_destination(url, resolve, allow_private=False)
    assert caught.value.category == "refused_destination"
    assert f"resolves to {address}, a {kind} address" in caught.value.message
    assert resolve.calls == []


def test_a_public_ipv6_literal_is_the_destination_itself():
    destination = choose_destination(
        "https://[2400:cb00::1]:8443/in", resolver(), allow_private=False
    )
    assert (destination.address, destination.host) == ("2400:cb00::1", "2400:cb00::1")
    assert destination.url.netloc == "[2400:cb00::1]:8443"


def resolver(*addresses: str):
    calls = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return list(addresses)

    resolve.calls = calls
    return resolve


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.20", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoints live here
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("240.0.0.1", "private"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private"),  # IPv4 dressed as IPv6 is judged as IPv4
        ("64:ff9b::7f00:1", "reserved"),
    ],
)
def test_urls_resolving_to_internal_addresses_are_refused(address, kind):
    with pytest.raises(InvalidInput) as caught:
        check_destination(
            "https://hooks.drap.example/in", resolver("196.1.100.17", address), allow_private=False
        )
    (error,) = caught.value.errors
    assert error["loc"] == ["body", "url"]
    assert f"resolves to {address}, a {kind} address" in error["msg"]


def test_a_public_address_is_allowed_and_the_port_is_the_schemes():
    resolve = resolver("196.1.100.17", "2400:cb00::1")
    check_destination("https://hooks.drap.gov.pk/in", resolve, allow_private=False)
    check_destination("http://hooks.drap.gov.pk:8443/in", resolve, allow_private=False)
    assert resolve.calls == [("hooks.drap.gov.pk", 443), ("hooks.drap.gov.pk", 8443)]


def test_an_unresolvable_host_is_refused():
    def fails(host, port):
        raise OSError("Name or service not known")

    with pytest.raises(InvalidInput, match="nowhere.example does not resolve"):
        check_destination("https://nowhere.example/", fails, allow_private=False)


def test_private_addresses_are_allowed_when_the_setting_says_so():
    check_destination("http://127.0.0.1:9000/hooks", resolver("127.0.0.1"), allow_private=True)


def test_the_default_schedule_backs_off_from_seconds_to_hours():
    schedule = list(DEFAULT_WEBHOOK_RETRY_SCHEDULE)
    assert Settings().webhook_retry_schedule_seconds == schedule
    assert [retry_delay(attempt, schedule) for attempt in range(1, 11)] == [
        5,
        30,
        120,
        600,
        1800,
        3600,
        7200,
        14400,
        28800,
        None,  # the tenth attempt was the last
    ]
    assert schedule == sorted(schedule)


def test_each_attempt_outcome():
    now = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
    schedule = [5.0, 30.0]
    assert judge_attempt(1, 204, now, schedule) == ("delivered", None)
    assert judge_attempt(1, 410, now, schedule) == ("gone", None)
    assert judge_attempt(1, 500, now, schedule) == ("retry", now + timedelta(seconds=5))
    assert judge_attempt(2, None, now, schedule) == ("retry", now + timedelta(seconds=30))
    assert judge_attempt(2, 301, now, schedule) == ("retry", now + timedelta(seconds=30))
    assert judge_attempt(3, 503, now, schedule) == ("failed", None)


def test_the_schedule_setting_reads_lists_and_comma_separated_text():
    config = {"JVREG_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0.2, 1,3"}
    assert Settings.from_config(config).webhook_retry_schedule_seconds == [0.2, 1, 3]
    config = {"JVREG_WEBHOOK_RETRY_SCHEDULE_SECONDS": "[1, 2]"}
    assert Settings.from_config(config).webhook_retry_schedule_seconds == [1, 2]
    with pytest.raises(ValidationError):
        Settings.from_config({"JVREG_WEBHOOK_RETRY_SCHEDULE_SECONDS": "5,0"})


EVENT_BODY = json.dumps(
    {
        "specversion": "1.0",
        "id": "3f1c2a9e-0d5b-4c61-9a57-1d2e3f4a5b6c",
        "type": "jvreg.license.granted",
        "data": {"license": {"product": "Amoxicillin 500 mg — 阿莫西林"}},
    },
    ensure_ascii=False,
)


def test_a_deliverys_headers_verify_with_standard_webhooks():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    headers = webhook_headers(secret, "3f1c2a9e", EVENT_BODY, datetime.now(UTC))
    assert headers["webhook-id"] == "3f1c2a9e"
    assert headers["Content-Type"] == "application/json"
    assert Webhook(secret).verify(EVENT_BODY.encode(), headers) == json.loads(EVENT_BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(EVENT_BODY.encode(), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(EVENT_BODY.replace("500", "250").encode(), headers)


def test_the_signature_is_the_documented_hmac_recipe():
    secret = new_secret()
    moment = datetime(2025, 5, 1, 9, 30, 15, 678000, tzinfo=UTC)
    headers = webhook_headers(secret, "evt-1", EVENT_BODY, moment)
    assert headers["webhook-timestamp"] == str(int(moment.timestamp()))
    signed = f"evt-1.{headers['webhook-timestamp']}.{EVENT_BODY}".encode()
    digest = hmac.new(base64.b64decode(secret.removeprefix("whsec_")), signed, hashlib.sha256)
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest.digest()).decode()


def test_a_delivery_is_not_sent_to_an_address_that_became_private():
    """The address is checked again at each attempt (DNS can change after subscribing)."""
    deliverer = Deliverer(
        store=None,
        owner="test",
        schedule=[5.0],
        allow_private=False,
        resolve=resolver("10.0.0.7"),
    )
    subscription = {"url": "https://hooks.drap.example/in", "secret": new_secret()}
    delivery = {"event_id": "evt-1", "body": EVENT_BODY, "attempt_count": 1}
    attempt = deliverer.attempt(subscription, delivery)
    assert attempt.outcome == "retry" and attempt.status_code is None
    assert attempt.category == "refused_destination"
    assert "10.0.0.7, a private address" in attempt.error


def test_a_stored_url_that_breaks_the_rules_is_not_sent_to():
    """A subscription stored before the URL rules is refused at delivery too."""
    deliverer = Deliverer(None, "test", [5.0], allow_private=True, resolve=resolver("127.0.0.1"))
    subscription = {"url": "http://127.0.0.1:8000\\@196.1.100.17/", "secret": new_secret()}
    delivery = {"event_id": "evt-1", "body": EVENT_BODY, "attempt_count": 1}
    attempt = deliverer.attempt(subscription, delivery)
    assert (attempt.category, attempt.outcome) == ("refused_url", "retry")
    assert attempt.error == "not sent: a URL may not contain a backslash"


def test_a_subscription_wants_only_matching_events_while_active():
    now = datetime.now(UTC)
    subscription = Subscription(
        id="sub_1",
        url="https://hooks.drap.example/in",
        event_types=["license.granted", "license.revoked"],
        status="active",
        owner="DRAP Licensing Division",
        created_by="key_1",
        created_at=now,
        updated_at=now,
    )
    assert wants(subscription, "license.granted")
    assert not wants(subscription, "license.submitted")
    disabled = subscription.model_copy(update={"status": "disabled"})
    assert not wants(disabled, "license.granted")
