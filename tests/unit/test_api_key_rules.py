"""API key rules without a database: expiry bounds, rotation, last_used_at, the
bootstrap key's entropy; and the gateway's rate limits and one-line refusals, on the
real `limits` limiter in memory."""

import logging
import logging.config
import secrets
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import ValidationError
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.gateway.keys import (
    MAX_KEY_LIFETIME_DAYS,
    ApiKey,
    CreateApiKey,
    RotateApiKey,
    end_after_rotation,
    estimated_entropy_bits,
    expiry,
    is_usable,
    last_used_due,
    weak_bootstrap_key,
)
from services.gateway.throttle import RateLimits, is_expensive_read
from shared.errors import Conflict, InvalidInput, TooManyRequests, Unauthorized
from shared.refusals import NAMEKO_WORKERS, OneLineRefusals
from shared.settings import Settings

from support import nameko_config

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def key(**fields) -> ApiKey:
    return ApiKey(
        id="key_1", role="investor", owner="Indus", created_at=NOW, created_by="key_0", **fields
    )


def create(**fields) -> CreateApiKey:
    return CreateApiKey(role="investor", owner="Indus", **fields)


def test_a_key_without_expiry_never_expires():
    assert expiry(create(), NOW) is None


def test_expires_in_days_counts_from_now_and_is_bounded():
    assert expiry(create(expires_in_days=30), NOW) == NOW + timedelta(days=30)
    for days in (0, MAX_KEY_LIFETIME_DAYS + 1):
        with pytest.raises(ValidationError) as caught:
            create(expires_in_days=days)
        assert caught.value.errors()[0]["loc"] == ("expires_in_days",)


@pytest.mark.parametrize(
    "fields, why",
    [
        ({"expires_at": NOW - timedelta(seconds=1)}, "future"),
        ({"expires_at": NOW + timedelta(days=MAX_KEY_LIFETIME_DAYS + 1)}, "at most"),
        ({"expires_at": NOW + timedelta(days=1), "expires_in_days": 1}, "not both"),
    ],
)
def test_expires_at_must_be_in_the_future_within_bounds_and_alone(fields, why):
    with pytest.raises(InvalidInput) as caught:
        expiry(create(**fields), NOW)
    assert caught.value.errors[0]["loc"] == ["body", "expires_at"]
    assert why in caught.value.errors[0]["msg"]


def test_expires_at_needs_a_time_zone():
    with pytest.raises(ValidationError):
        create(expires_at="2026-04-01T00:00:00")


def test_a_key_works_until_revoked_or_expired():
    assert is_usable(key(), NOW)
    assert is_usable(key(expires_at=NOW + timedelta(seconds=1)), NOW)
    assert not is_usable(key(expires_at=NOW), NOW)
    assert not is_usable(key(revoked_at=NOW), NOW)


def test_rotation_without_grace_revokes_the_old_key_at_once():
    assert end_after_rotation(key(), 0, NOW) == {"revoked_at": NOW}


def test_rotation_with_grace_ends_the_old_key_when_the_grace_ends_never_later():
    assert end_after_rotation(key(), 600, NOW) == {"expires_at": NOW + timedelta(seconds=600)}
    soon = NOW + timedelta(seconds=60)
    assert end_after_rotation(key(expires_at=soon), 600, NOW) == {"expires_at": soon}
    with pytest.raises(ValidationError):
        RotateApiKey(grace_seconds=-1)


def test_last_used_at_is_written_at_most_once_a_minute():
    assert last_used_due(None, NOW)
    assert not last_used_due(NOW - timedelta(seconds=59), NOW)
    assert last_used_due(NOW - timedelta(seconds=60), NOW)


@pytest.mark.parametrize(
    "weak",
    ["x", "jvk_ops_x", "changeme-please", "a" * 64, "abcdefgh" * 8, "jvk_ops_" + "0123" * 16],
)
def test_a_weak_bootstrap_key_is_refused_with_a_way_to_make_a_good_one(weak):
    problem = weak_bootstrap_key(weak)
    assert problem is not None and "JVREG_OPS_KEY" in problem
    assert "secrets.token_urlsafe(32)" in problem


@pytest.mark.parametrize(
    "strong",
    [
        "jvk_ops_" + secrets.token_urlsafe(32),  # what `make dev` generates
        "jvk_ops_" + secrets.token_urlsafe(24),  # the end-to-end tests'
        "jvk_ops_" + secrets.token_hex(16),
        "jvk_ops_" + uuid.uuid4().hex,  # the chaos harness'
    ],
)
def test_a_random_bootstrap_key_of_128_bits_or_more_is_accepted(strong):
    assert estimated_entropy_bits(strong) >= 128
    assert weak_bootstrap_key(strong) is None


def limits_of(failures: str = "3/minute", reads: str = "2/minute") -> RateLimits:
    return RateLimits(MovingWindowRateLimiter(MemoryStorage()), parse(failures), parse(reads))


def test_an_address_that_failed_too_often_gets_429_with_retry_after():
    limits = limits_of("3/minute")
    for _ in range(3):
        limits.check_address("203.0.113.9")
        limits.failed_authentication("203.0.113.9")
    with pytest.raises(TooManyRequests) as caught:
        limits.check_address("203.0.113.9")
    retry_after = caught.value.extra["retry_after"]
    assert 1 <= retry_after <= 60
    assert caught.value.headers == {"Retry-After": str(retry_after)}
    assert caught.value.problem()["status"] == 429
    limits.check_address("198.51.100.7")  # another address is not affected


def test_expensive_reads_are_counted_per_key():
    limits = limits_of(reads="2/minute")
    limits.expensive_read("key_a")
    limits.expensive_read("key_a")
    with pytest.raises(TooManyRequests):
        limits.expensive_read("key_a")
    limits.expensive_read("key_b")


def routed(method: str, path: str, **path_values) -> Request:
    request = Request(EnvironBuilder(method=method, path=path).get_environ())
    request.path_values = path_values
    return request


@pytest.mark.parametrize(
    "request_, expensive",
    [
        (routed("GET", "/v1/ventures"), True),
        (routed("GET", "/v1/api-keys"), True),
        (routed("GET", "/v1/investments/summary"), True),
        (routed("GET", "/v1/ventures/jv_1/investments/summary", venture_id="jv_1"), True),
        (routed("GET", "/v1/licenses/lic_1/history", license_id="lic_1"), True),
        (routed("GET", "/v1/ventures/jv_1", venture_id="jv_1"), False),
        (routed("POST", "/v1/ventures"), False),
        (routed("GET", "/health"), False),
    ],
)
def test_lists_searches_and_summaries_are_expensive_reads(request_, expensive):
    assert is_expensive_read(request_) is expensive


def test_rate_limits_are_settings_in_the_limits_notation():
    settings = Settings(auth_failure_limit="5 per 10 seconds", expensive_read_limit="100/hour")
    assert parse(settings.auth_failure_limit).amount == 5
    with pytest.raises(ValidationError) as caught:
        Settings(auth_failure_limit="lots")
    assert caught.value.errors()[0]["loc"] == ("auth_failure_limit",)


class FakeEntrypoint:
    method_name = "list_ventures"


class FakeWorkerContext:
    """What nameko passes as the first argument of its `(expected) error` record."""

    def __init__(self, *args):
        self.args = args
        self.entrypoint = FakeEntrypoint()


def nameko_expected_error_record(worker_ctx, error: Exception) -> logging.LogRecord:
    try:
        raise error
    except Exception:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        NAMEKO_WORKERS,
        logging.WARNING,
        __file__,
        1,
        "(expected) error handling worker %s: %s",
        (worker_ctx, error),
        exc_info,
    )


def test_a_refused_request_is_logged_in_one_line_without_traceback():
    request = Request(
        EnvironBuilder(
            method="GET", path="/v1/ventures", environ_base={"REMOTE_ADDR": "203.0.113.9"}
        ).get_environ()
    )
    record = nameko_expected_error_record(
        FakeWorkerContext(request), Unauthorized("unknown, revoked or expired API key")
    )
    assert OneLineRefusals().filter(record)
    line = logging.Formatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == (
        "WARNING nameko.containers: refused GET /v1/ventures from 203.0.113.9: "
        "401 unknown, revoked or expired API key"
    )


def test_an_unexpected_error_keeps_its_traceback():
    record = nameko_expected_error_record(FakeWorkerContext(), RuntimeError("bug"))
    assert OneLineRefusals().filter(record)
    assert "Traceback" in logging.Formatter().format(record)


def test_every_service_logs_a_refusal_in_one_line(capsys):
    """The services' logging configuration (deploy/config.yaml, as `nameko run` loads
    it) puts the filter on the handler, so an RPC service's 409 is one line too."""
    config = nameko_config()["LOGGING"]
    config["root"]["level"] = "INFO"
    logging.config.dictConfig(config)
    try:
        error = Conflict("a venture with this name is already registered")
        logging.getLogger(NAMEKO_WORKERS).handle(
            nameko_expected_error_record(FakeWorkerContext(), error)
        )
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    output = capsys.readouterr().err
    assert "Traceback" not in output
    assert output.count("\n") == 1 and "refused" in output and "409" in output
