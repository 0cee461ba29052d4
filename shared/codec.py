"""JSON for the wire: Decimal as a string (never a float), datetimes as RFC 3339 UTC."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:  # BSON dates come back naive unless tz_aware; they are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_jsonable(value: Any) -> Any:
    """The JSON-safe form of values that json cannot encode by itself."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Decimal128):
        return str(value.to_decimal())
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return value


def _default(value: Any) -> Any:
    converted = to_jsonable(value)
    if converted is value:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return converted


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping every number exact (floats become Decimal)."""
    return json.loads(text, parse_float=Decimal)
