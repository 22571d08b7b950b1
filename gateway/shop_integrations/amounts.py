"""Amounts as the shops send them, made exact and converted: payloads are parsed with
`parse_float=Decimal`, so no amount ever passes through a float; tomans become rials (x10).

WooCommerce names the toman `IRT` (not an ISO 4217 code); many Iranian shops also price in tomans
while their currency says IRR: the shop's `prices_in_tomans` setting says so. Both post IRR."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .webhook_actions import PayloadRejected

RIALS_PER_TOMAN = 10


@dataclass(frozen=True)
class Money:
    """The order's currency as posted, and the factor from the shop's amounts to it."""

    currency: str
    factor: int = 1

    def amount(self, value: Any, where: str) -> Decimal:
        return decimal_of(value, where) * self.factor


def money_of(currency: Any, *, prices_in_tomans: bool) -> Money:
    if not isinstance(currency, str) or not currency.strip():
        raise PayloadRejected("currency: missing")
    code = currency.strip().upper()
    if code == "IRT" or (prices_in_tomans and code == "IRR"):
        return Money("IRR", RIALS_PER_TOMAN)
    return Money(code)


def decimal_of(value: Any, where: str) -> Decimal:
    """A payload amount ("12.50", 12.50 read as Decimal, 12, null as 0) as a Decimal."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise PayloadRejected(f"{where}: {value!r} is not an amount")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise PayloadRejected(f"{where}: {value!r} is not an amount") from None
    if not amount.is_finite():
        raise PayloadRejected(f"{where}: {value!r} is not an amount")
    return amount


def wire(amount: Decimal, where: str) -> str:
    """The decimal string the orders API takes: no exponent, no trailing zeros, never negative."""
    if amount < 0:
        raise PayloadRejected(f"{where}: {amount} is negative")
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def total_of(items: list[dict], key: str, where: str) -> Decimal:
    return sum((decimal_of(item.get(key), f"{where}.{key}") for item in items), Decimal(0))
