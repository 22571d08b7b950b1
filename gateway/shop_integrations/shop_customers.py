"""Who bought, as the orders and contacts APIs take it, from what a shop knows of its customers.

An email or phone that cannot be read is left out rather than refusing the whole order (the
order matters more than one contact point); it is never guessed."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from services.common.contact_points import InvalidContactPoint, normalize_phone, validated_email

DEFAULT_REGION = "IR"


def text(value: Any, limit: int = 200) -> str | None:
    if value is None:
        return None
    cleaned = str(value).strip()
    return cleaned[:limit] or None


def email_of(value: Any) -> str | None:
    raw = text(value, 320)
    if raw is None:
        return None
    try:
        return validated_email(raw)
    except InvalidContactPoint:
        return None


def phone_of(value: Any, region: str | None) -> str | None:
    raw = text(value, 64)
    if raw is None:
        return None
    try:
        return normalize_phone(raw, (region or DEFAULT_REGION).upper())
    except InvalidContactPoint:
        return None


def slug_of(value: Any, fallback: str) -> str:
    """A payment method name as the orders API's slug ("Cash on Delivery" -> cash_on_delivery)."""
    cleaned = re.sub(r"[^\w.:\-]+", "_", (text(value, 64) or "").lower()).strip("_")
    return cleaned[:64] or fallback


def customer_ref(*, external_id: Any, email: Any, phone: Any, given_name: Any, family_name: Any,
                 region: str | None) -> dict[str, Any] | None:
    """The order's `customer`, or None for a guest nobody can be told by."""
    ref = {"external_id": text(external_id, 255) if external_id not in (None, 0, "0") else None,
           "email": email_of(email), "phone": phone_of(phone, region),
           "given_name": text(given_name), "family_name": text(family_name)}
    ref = {name: value for name, value in ref.items() if value is not None}
    return ref if {"external_id", "email", "phone"} & ref.keys() else None


def order_address(*, name: Any, line1: Any, line2: Any, city: Any, region: Any, postal_code: Any, country: Any,
                  phone: Any) -> dict[str, Any] | None:
    """An order address; None without an ISO country code (the orders API requires one)."""
    code = text(country, 2)
    if not code or len(code) != 2 or not code.isalpha():
        return None
    address = {"name": text(name), "line1": text(line1, 500), "line2": text(line2, 500), "city": text(city),
               "region": text(region), "postal_code": text(postal_code, 32), "country": code.upper(),
               "phone": text(phone, 64)}
    return {key: value for key, value in address.items() if value is not None}


def contact_address(address: dict[str, Any] | None) -> dict[str, Any] | None:
    """An order address as a contact's (no name or phone there)."""
    if not address:
        return None
    return {key: address[key] for key in ("line1", "line2", "city", "region", "postal_code", "country")
            if key in address}


def _unique(addresses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({tuple(sorted(address.items())): address for address in addresses}.values())


def consent_entry(granted: bool | None, at: str | datetime | None, source: str) -> dict[str, Any] | None:
    if granted is None:
        return None
    entry: dict[str, Any] = {"status": "granted" if granted else "withdrawn", "source": source}
    if at:
        entry["at"] = at if isinstance(at, str) else at.isoformat()
    return entry


def contact(*, system: str, external_id: Any, source: str, given_name: Any, family_name: Any, emails: list[Any],
            phones: list[Any], region: str | None, addresses: list[dict[str, Any] | None] = (),
            tags: list[str] = (), consent: dict[str, dict | None] | None = None) -> dict[str, Any]:
    """A contact for POST /v1/contacts/batch, known by the shop's customer id as an external id."""
    found = {"given_name": text(given_name), "family_name": text(family_name), "source": source,
             "emails": list(dict.fromkeys(e for e in map(email_of, emails) if e)),
             "phones": list(dict.fromkeys(p for p in (phone_of(raw, region) for raw in phones) if p)),
             "addresses": _unique([a for a in (contact_address(a) for a in addresses) if a]),
             "tags": list(dict.fromkeys(t for t in (text(tag, 64) for tag in tags) if t)),
             "external_ids": [{"system": system, "id": str(external_id)}] if external_id not in (None, 0, "") else [],
             "consent": {channel: entry for channel, entry in (consent or {}).items() if entry}}
    return {name: value for name, value in found.items() if value not in (None, [], {})}
