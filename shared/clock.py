"""Time as the registry stores it."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now in UTC, to the millisecond: BSON's precision, so what a service returns
    right after a write equals what it reads back later."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
