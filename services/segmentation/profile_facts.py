"""What each upstream event contributes to a profile, read defensively from its snapshot.

The orders and interactions services own their shapes (services/orders/schemas.py
OrderPublic, services/interactions/schemas.py InteractionPublic); a key that is missing or
malformed here degrades to "unknown" rather than failing the whole event.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from .models import CONSENT_CHANNELS

CONTACT_FIELDS = ("given_name", "family_name", "display_name", "email", "phone", "lifecycle_stage", "source",
                  "city", "country", "gender", "preferred_language", "birth_date", "contact_created_at",
                  *(f"consent_{c}" for c in CONSENT_CHANNELS))


def parse_time(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def parse_amount(raw: Any) -> Decimal:
    try:
        value = Decimal(str(raw)) if raw is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)
    return value.quantize(Decimal("0.000001")) if value.is_finite() else Decimal(0)


def _short(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def contact_fields(contact: dict[str, Any]) -> dict[str, Any]:
    """The profile's contact part from a contact snapshot (data.contact of a contacts event)."""
    from datetime import date

    addresses = [a for a in contact.get("addresses") or [] if isinstance(a, dict)]
    first = addresses[0] if addresses else {}
    consent = contact.get("consent") or {}
    try:
        birth = date.fromisoformat(contact["birth_date"]) if contact.get("birth_date") else None
    except (TypeError, ValueError):
        birth = None
    emails, phones = contact.get("emails") or [], contact.get("phones") or []
    fields = {
        "given_name": _short(contact.get("given_name"), 200), "family_name": _short(contact.get("family_name"), 200),
        "display_name": _short(contact.get("display_name"), 400),
        "email": _short(emails[0], 320) if emails else None, "phone": _short(phones[0], 64) if phones else None,
        "lifecycle_stage": _short(contact.get("lifecycle_stage"), 16), "source": _short(contact.get("source"), 64),
        "city": _short(first.get("city"), 200), "country": _short(first.get("country"), 2),
        "gender": _short(contact.get("gender"), 16), "preferred_language": _short(contact.get("preferred_language"), 35),
        "birth_date": birth, "contact_created_at": parse_time(contact.get("created_at")),
    }
    for channel in CONSENT_CHANNELS:
        state = consent.get(channel)
        fields[f"consent_{channel}"] = isinstance(state, dict) and state.get("status") == "granted"
    fields["tags"] = sorted({t[:200] for t in contact.get("tags") or [] if isinstance(t, str) and t})
    return fields


def order_fact(order: dict[str, Any], version: int) -> dict[str, Any]:
    refunds = [r for r in order.get("refunds") or [] if isinstance(r, dict)]
    refunded = order.get("refunded_amount")
    if refunded is None:
        refunded = sum((parse_amount(r.get("amount")) for r in refunds), Decimal(0))
    lines = [{"sku": (line.get("sku") or "")[:200] or None, "category": (line.get("category") or "")[:200] or None}
             for line in order.get("lines") or [] if isinstance(line, dict)]
    return {
        "order_id": order["id"], "customer_id": order.get("customer_id"), "version": version,
        "currency": str(order.get("currency") or "XXX")[:3].upper(), "total": parse_amount(order.get("total")),
        "refunded": parse_amount(refunded), "refund_count": len(refunds),
        "status": str(order.get("status") or "placed")[:32],
        "placed_at": parse_time(order.get("placed_at")) or parse_time(order.get("created_at"))
        or datetime(1970, 1, 1, tzinfo=timezone.utc),
        "lines": lines,
    }


def interaction_fact(interaction: dict[str, Any], version: int) -> dict[str, Any]:
    def small_int(name: str) -> int | None:
        value = interaction.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return {
        "interaction_id": interaction["id"], "customer_id": interaction.get("customer_id"), "version": version,
        "type": str(interaction.get("type") or "unknown")[:32], "channel": str(interaction.get("channel") or "unknown")[:32],
        "kind": _short(interaction.get("kind"), 32), "status": _short(interaction.get("status"), 16),
        "rating": small_int("rating"), "nps": small_int("nps"),
        "occurred_at": parse_time(interaction.get("occurred_at")) or parse_time(interaction.get("created_at"))
        or datetime(1970, 1, 1, tzinfo=timezone.utc),
    }
