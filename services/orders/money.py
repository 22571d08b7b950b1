"""Money as the data rules want it: never a float, an ISO 4217 currency on every amount, exact
decimals, each currency's own minor units (CLDR, through babel: USD 2, IRR 0 as used in
practice, BHD 3), and no sums across currencies.

Amounts arrive as decimal strings ("19.99", "1250000"); a JSON integer is accepted too, since
it is exact (so is 429.0, which JSON Schema counts as an integer), but a JSON number with a
fraction (19.99) is refused: it has already been through binary floating point in somebody's code. Persian and Arabic-Indic digits and the Arabic
decimal separator are read as digits and a point. Rounding is half-up, the commercial rule.
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from babel.numbers import get_currency_precision, list_currencies

from services.common.errors import InvalidInput
from services.common.text_normalization import normalize_digits

# Storage is Numeric(20, 6): 14 integer digits (a trillion rials fits 1,000 times over) and 6
# fraction digits, enough for unit prices finer than a currency's minor unit.
MAX_INTEGER_DIGITS = 14
MAX_FRACTION_DIGITS = 6
_AMOUNT = re.compile(r"^(\d+)(?:\.(\d+))?$")
# CLDR lists "no currency" and "testing" codes too; neither is money.
_NOT_MONEY = {"XXX", "XTS"}
ZERO = Decimal(0)


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    return frozenset(code for code in list_currencies() if len(code) == 3 and code not in _NOT_MONEY)


def known_currency(code: str) -> bool:
    return code in _currencies()


def currency_codes() -> list[str]:
    return sorted(_currencies())


def precision(currency: str) -> int:
    """Digits after the point in `currency`'s minor unit (IRR 0, USD 2, BHD 3)."""
    return get_currency_precision(currency)


def amount_text(value: Any) -> str:
    """The syntax check of one amount, before any currency is known: a non-negative decimal
    string or JSON integer, returned as a canonical string. Raises ValueError (a 422 naming the field)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 429.0: a JSON integer as JSON Schema counts them, and exact
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError('send amounts as decimal strings such as "19.99" or "1250000" (or JSON integers); '
                         "a JSON number with a fraction is a float and loses cents")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = normalize_digits(value.strip()).replace("\u066b", ".")
    else:
        raise ValueError("must be a decimal string such as \"19.99\"")
    if text.startswith("-"):
        raise ValueError("must not be negative")
    match = _AMOUNT.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a decimal amount: digits with an optional point, no sign, exponent "
                         "or thousands separators")
    whole, fraction = match.group(1).lstrip("0") or "0", (match.group(2) or "").rstrip("0")
    if len(whole) > MAX_INTEGER_DIGITS:
        raise ValueError(f"is too large: at most {MAX_INTEGER_DIGITS} digits before the point")
    if len(fraction) > MAX_FRACTION_DIGITS:
        raise ValueError(f"has more than {MAX_FRACTION_DIGITS} digits after the point")
    return f"{whole}.{fraction}" if fraction else whole


def to_decimal(text: str) -> Decimal:
    return Decimal(text)


def quantize(amount: Decimal, places: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal, places: int) -> str:
    """The wire form: exactly `places` digits after the point, never an exponent."""
    return f"{quantize(amount, places):f}"


def minor_units_only(text: str, currency: str, field: list) -> Decimal:
    """An amount of money (a total, discount, payment...) must be payable: no finer than the
    currency's minor unit, so "19.999" USD or "1250.5" IRR is refused rather than silently rounded."""
    amount = to_decimal(text)
    places = precision(currency)
    if quantize(amount, places) != amount:
        unit = "whole units" if places == 0 else f"{places} digits after the point"
        raise InvalidInput.field(field, f"{text} is finer than {currency} allows ({unit})")
    return amount


def check_total(*, expected: Decimal, given: Decimal, currency: str) -> None:
    """422 saying what the parts add up to, what was given, and by how much they differ."""
    if expected != given:
        places = precision(currency)
        difference = given - expected
        direction = "high" if difference > 0 else "low"
        raise InvalidInput.field(
            "total", f"is {format_amount(given, places)} {currency} but the lines, discounts, tax and shipping add "
                     f"up to {format_amount(expected, places)} {currency}: "
                     f"{format_amount(abs(difference), places)} too {direction}",
            expected_total=format_amount(expected, places), given_total=format_amount(given, places),
            difference=format_amount(difference, places))
