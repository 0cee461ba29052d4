"""Input types several services accept the same way, so one tenant's input cannot break
what others see: dates within the registry's bounds, and names of parties (ventures,
partners, plants, people) that cannot pass for another's. Types and pure checks; no I/O."""

import re
import unicodedata
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import disarm
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
)

from shared.clock import utcnow

# --- dates ------------------------------------------------------------------------------

# No joint venture, licence or rate of the registry predates this day (the oldest DRAP
# records it takes in are from the 1990s); earlier dates are typing mistakes such as
# 0001-01-01, which no exchange rate could ever cover.
DATE_FLOOR = date(1990, 1, 1)
# Business dates are Pakistani: "today" is today in Karachi (UTC+05:00).
PAKISTAN = ZoneInfo("Asia/Karachi")


def today_in_pakistan(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(PAKISTAN).date()


def years_after(day: date, years: int) -> date:
    """The same day `years` later (28 February for a 29 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def date_bounds(years_ahead: int) -> AfterValidator:
    """A date (or a time, by its UTC date) on or after DATE_FLOOR and at most
    `years_ahead` years after today in Pakistan (0: not in the future). `today` comes
    from the validation context when given (tests fix it), otherwise from the clock."""

    def check(value: date | datetime, info: ValidationInfo) -> date | datetime:
        day = value.astimezone(UTC).date() if isinstance(value, datetime) else value
        if day < DATE_FLOOR:
            raise ValueError(f"must be on or after {DATE_FLOOR.isoformat()}")
        today = (info.context or {}).get("today") or today_in_pakistan()
        ceiling = years_after(today, years_ahead)
        if day > ceiling:
            if years_ahead == 0:
                raise ValueError(
                    f"must not be in the future (today in Pakistan is {today.isoformat()})"
                )
            raise ValueError(
                f"must be at most {years_ahead} years ahead: on or before {ceiling.isoformat()}"
            )
        return value

    return AfterValidator(check)


# A day that has already begun in Pakistan: a value date, the day of an exchange rate.
PastDate = Annotated[date, Field(strict=True), date_bounds(years_ahead=0)]


def refuse_numbers(value: Any) -> Any:
    """A date or a moment is ISO 8601 text: pydantic would read the JSON number
    1900000000 (or `true`) as Unix seconds. Text and date objects pass on (which
    `strict` would refuse from Python, e.g. from the command line)."""
    if isinstance(value, int | float):  # bool is an int too
        raise ValueError("must be ISO 8601 text, not a number")
    return value


ISO_TEXT_ONLY = BeforeValidator(refuse_numbers)

# --- decimals ---------------------------------------------------------------------------

# A decimal in a JSON string: digits with an optional sign and decimal point; no
# exponent and no spaces, which Python's Decimal would read but a reader would not.
PLAIN_DECIMAL_PATTERN = r"^[+-]?\d+(\.\d+)?$"


def plain_decimal_text(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(PLAIN_DECIMAL_PATTERN, value):
        raise ValueError('must be a plain decimal such as "33.33": no exponent, no spaces')
    return value


def document_plain_decimal(schema: dict) -> None:
    """The string branch of a decimal's schema says which strings are decimals."""
    for option in schema.get("anyOf", ()):
        if option.get("type") == "string":
            option["pattern"] = PLAIN_DECIMAL_PATTERN


def number_or_decimal_text(**constraints: Any) -> Any:
    """A decimal sent as a JSON number (read exactly) or as a plain decimal string,
    within `constraints` (gt, le, decimal_places...: pydantic's, on the decimal)."""
    return Annotated[
        Decimal,
        Field(**constraints),
        BeforeValidator(plain_decimal_text),
        Field(json_schema_extra=document_plain_decimal),
        # answered as written in plain notation: 5E-324 is 0.000…5, as the pattern says
        PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json"),
    ]


# --- names of parties -------------------------------------------------------------------

# Characters that make a name look different from what it is, by Unicode category:
# controls (NUL, newlines), format characters (zero-width space and joiners, bidi
# overrides, soft hyphen, tags), private-use, surrogates, unassigned code points, and
# line and paragraph separators.
REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Co": "a private-use character",
    "Cs": "a surrogate",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
# Default-ignorable code points that are not format characters (Unicode's
# DerivedCoreProperties.txt): drawn as nothing, so "A\u3164B" looks like "A B".
INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)


def refusal(char: str) -> str | None:
    """Why `char` may not stand in a name, or None when it may."""
    category = unicodedata.category(char)
    if category in REFUSED_CATEGORIES:
        return REFUSED_CATEGORIES[category]
    if category == "Zs" and char != " ":
        return "a space other than U+0020"
    if INVISIBLE.match(char):
        return "an invisible character"
    return None


def normalised_name(value: Any) -> Any:
    """A name in NFKC (full-width and other compatibility forms become the plain
    letters; combining sequences are composed), refused when it holds a character that
    hides what it is, or marks stacked on one letter (zalgo)."""
    if not isinstance(value, str):
        return value  # the str validation that follows names the wrong type
    text = unicodedata.normalize("NFKC", value)
    for position, char in enumerate(text):
        why = refusal(char)
        if why:
            code = f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()
            raise ValueError(f"must not contain {code} ({why}) at position {position}")
    if disarm.is_zalgo(text):
        raise ValueError("must not stack more than 3 combining marks of a kind on one letter")
    return text


# The name of a party: a venture, a partner, a plant, a person.
PartyName = Annotated[
    str,
    BeforeValidator(normalised_name),
    StringConstraints(strip_whitespace=True, min_length=2, max_length=200),
]


def confusable_key(name: str) -> str:
    """What two names that look alike have in common: the Unicode TS #39 confusable
    skeleton of the case-folded NFKC name, with runs of spaces collapsed, so Cyrillic
    "А", full-width "Ａ", "a" and "A" all give "a". Case is folded first, so "I" is "i"
    (not "l", as the skeleton of a capital I would be). Not for display."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return " ".join(disarm.skeleton_key(folded).split())
