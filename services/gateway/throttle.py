"""Rate limits of the gateway, with the `limits` library: failed authentications per
client address (a key cannot be guessed at speed) and expensive reads per API key (one
key cannot monopolise the registry with lists, searches and summaries).

The counters live in the memory of each gateway process (a moving window per address
or key). With several gateway instances each counts on its own, so a client spread
over n instances gets up to n times the limit; they reset when a gateway restarts."""

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Request

from shared.errors import TooManyRequests
from shared.settings import Settings


def is_expensive_read(request: Request) -> bool:
    """Lists, searches and summaries: a GET that does not end at one resource's id
    (`/v1/ventures`, `/v1/licenses/{id}/history`, `/v1/investments/summary`)."""
    if request.method != "GET" or not request.path.startswith("/v1/"):
        return False
    # The route's values, set by the gateway's WSGI app when it matched the route.
    path_values = getattr(request, "path_values", None) or {}
    return request.path.rstrip("/").rpartition("/")[2] not in path_values.values()


class RateLimits:
    def __init__(
        self,
        limiter: MovingWindowRateLimiter,
        auth_failures: RateLimitItem,
        expensive_reads: RateLimitItem,
    ):
        self.limiter = limiter
        self.auth_failures = auth_failures
        self.expensive_reads = expensive_reads

    def _too_many(self, limit: RateLimitItem, identifier: str, what: str) -> TooManyRequests:
        reset_at = self.limiter.get_window_stats(limit, what, identifier).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        return TooManyRequests(
            f"too many {what} (at most {limit}); try again in {retry_after} s",
            extra={"retry_after": retry_after},
        )

    def check_address(self, address: str) -> None:
        """429 while `address` is over its limit of failed authentications, before
        its key is even looked at: guessing gets no answer at all."""
        if not self.limiter.test(self.auth_failures, "failed authentications", address):
            raise self._too_many(self.auth_failures, address, "failed authentications")

    def failed_authentication(self, address: str) -> None:
        self.limiter.hit(self.auth_failures, "failed authentications", address)

    def expensive_read(self, key_id: str) -> None:
        if not self.limiter.hit(self.expensive_reads, "expensive reads", key_id):
            raise self._too_many(self.expensive_reads, key_id, "expensive reads")


class Throttle(DependencyProvider):
    """The gateway's rate-limit counters, shared by its workers."""

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.limits = RateLimits(
            MovingWindowRateLimiter(MemoryStorage()),
            parse(settings.auth_failure_limit),
            parse(settings.expensive_read_limit),
        )

    def get_dependency(self, worker_ctx):
        return self.limits
