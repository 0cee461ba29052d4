"""Time as the registry stores it."""

from datetime import UTC, datetime


def to_bson_precision(moment: datetime) -> datetime:
    """UTC to the millisecond, as BSON stores it, so what is returned equals what is read."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def utcnow() -> datetime:
    """Now in UTC, to the millisecond: BSON's precision, so what a service returns
    right after a write equals what it reads back later."""
    return to_bson_precision(datetime.now(UTC))
