"""ISO 4217 currencies and their minor units (how many decimals an amount may have),
from the `iso4217` package (ISO 4217 List One as published by SIX, the maintenance
agency). Codes without a minor unit (gold XAU, SDR XDR, testing XTS, ...) are not
money a partner commits or disburses."""

from iso4217 import Currency


def minor_units(code: str) -> int | None:
    """Decimals an amount in `code` may have; None for a code that is not a currency
    with a minor unit."""
    try:
        return Currency(code).exponent
    except ValueError:
        return None


def decimals_of(code: str) -> int:
    """The minor unit of a currency the registry accepts (one `minor_units` knows)."""
    places = minor_units(code)
    if places is None:
        raise ValueError(f"{code!r} is not a currency with a minor unit")
    return places


def currency_codes() -> list[str]:
    """Every code `minor_units` knows, for the OpenAPI document's enum."""
    return sorted(currency.code for currency in Currency if currency.exponent is not None)
