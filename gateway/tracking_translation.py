"""Segment calls into this system's writes, without I/O: identify, alias and group become
contact upserts (POST /v1/contacts/batch items), track, page and screen interactions (POST
/v1/interactions/batch items), and the e-commerce spec's "Order Completed" an order (POST
/v1/orders/batch items).

Who is who:
- a `userId` is the contact's external id `{"system": "segment", "id": <userId>}` (orders of
  platform `segment` find the customer by it) and also the visitor id `segment-user:<userId>`;
- an `anonymousId` is a visitor id `{"system": "visitor", "id": <anonymousId>}`.
Interactions name their customer by visitor id (`segment-user:<userId>` when there is a user id,
else the anonymous id), so events tracked before the identify attach to the contact once it
arrives: the interactions service stitches a visitor's history when a contact gains that visitor
id (docs/interactions.md, "Anonymous visitors").

Traits: email, phone, firstName/first_name, lastName/last_name, name (split when no first and
last name), birthday, gender, address; every other trait becomes an attribute (keys in
snake_case, nested objects flattened `company_name`, lists joined with ", ").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from services.common.errors import InvalidInput
from services.orders import money

from .tracking_schemas import AliasCall, GroupCall, IdentifyCall, Message, PageCall, ScreenCall, TrackCall

SEGMENT_SYSTEM, VISITOR_SYSTEM, USER_VISITOR = "segment", "visitor", "segment-user:"
ORDER_COMPLETED = "Order Completed"
GENDERS = {"female", "male", "non_binary", "other", "undisclosed"}
RESERVED_TRAITS = {"email", "phone", "firstName", "first_name", "lastName", "last_name", "name", "birthday",
                   "gender", "address", "id", "userId", "user_id"}
EMAIL_EVENTS = {"Email Delivered": "campaign_delivered", "Email Opened": "campaign_opened",
                "Email Link Clicked": "campaign_clicked", "Email Bounced": "campaign_bounced",
                "Unsubscribed": "campaign_unsubscribed", "Email Marked as Spam": "campaign_unsubscribed"}
ATTRIBUTE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
SLUG = re.compile(r"^[\w.:\-/]{1,128}$")
URL = re.compile(r"^https?://\S+$")
MAX_METADATA = 50


@dataclass
class Plan:
    """The writes of one request, each with the index of the message it came from."""
    contacts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    interactions: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    orders: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name.strip())
    name = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower()
    return ("_" + name if name[:1].isdigit() else name)[:64]


def flatten(values: dict[str, Any], *, prefix: str = "", key_pattern=ATTRIBUTE_KEY) -> dict[str, Any]:
    """Scalars under snake_case keys; nested objects flattened, lists of scalars joined."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = snake(f"{prefix}_{name}" if prefix else str(name))
        if not key_pattern.match(key) or value is None:
            continue
        if isinstance(value, dict):
            out.update(flatten(value, prefix=key, key_pattern=key_pattern))
        elif isinstance(value, list):
            scalars = [str(item) for item in value if isinstance(item, (str, int, float, bool))]
            if scalars:
                out[key] = ", ".join(scalars)[:1000]
        elif isinstance(value, (str, int, float, bool)):
            out[key] = value[:1000] if isinstance(value, str) else value
    return out


def user_visitor(user_id: str) -> str:
    return USER_VISITOR + user_id


def identities(message: Message, *more_visitors: str) -> list[dict[str, str]]:
    ids = []
    if message.userId:
        ids += [{"system": SEGMENT_SYSTEM, "id": message.userId},
                {"system": VISITOR_SYSTEM, "id": user_visitor(message.userId)}]
    visitors = [message.anonymousId, *more_visitors]
    ids += [{"system": VISITOR_SYSTEM, "id": visitor} for visitor in visitors if visitor]
    return list({(i["system"], i["id"]): i for i in ids}.values())


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def contact_from_traits(traits: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if email := _text(traits.get("email")):
        item["emails"] = [email]
    if phone := _text(traits.get("phone")) or (str(traits["phone"]) if isinstance(traits.get("phone"), int) else None):
        item["phones"] = [phone]
    given = _text(traits.get("firstName")) or _text(traits.get("first_name"))
    family = _text(traits.get("lastName")) or _text(traits.get("last_name"))
    name = _text(traits.get("name"))
    if name and not (given or family):
        given, _, rest = name.partition(" ")
        family = rest.strip() or None
    if name:
        item["display_name"] = name[:200]
    item.update({key: value[:200] for key, value in (("given_name", given), ("family_name", family)) if value})
    if birthday := _text(traits.get("birthday")):
        item["birth_date"] = birthday[:10]
    if (gender := _text(traits.get("gender"))) and gender.lower() in GENDERS:
        item["gender"] = gender.lower()
    address = traits.get("address")
    if isinstance(address, dict) and isinstance(address.get("country"), str) and len(address["country"]) == 2:
        item["addresses"] = [{key: value for key, value in {
            "line1": _text(address.get("street")), "city": _text(address.get("city")),
            "region": _text(address.get("state")),
            "postal_code": _text(address.get("postalCode") or address.get("postal_code")),
            "country": address["country"].upper()}.items() if value}]
    locale = _text(context.get("locale"))
    if locale and re.match(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", locale):
        item["preferred_language"] = locale
    rest = {k: v for k, v in traits.items() if k not in RESERVED_TRAITS}
    if isinstance(address, dict) and "addresses" not in item:
        rest["address"] = address
    if attributes := flatten(rest):
        item["attributes"] = dict(list(attributes.items())[:200])
    return item


def identify(message: IdentifyCall) -> dict[str, Any] | None:
    traits = message.traits or (message.context or {}).get("traits") or {}
    item = contact_from_traits(traits if isinstance(traits, dict) else {}, message.context or {})
    if not message.userId and not item:
        return None  # an anonymous visitor with nothing to tell
    return {"external_ids": identities(message), **item}


def alias(message: AliasCall) -> dict[str, Any]:
    return {"external_ids": identities(message, message.previousId, user_visitor(message.previousId))}


def group(message: GroupCall) -> dict[str, Any] | None:
    if not message.userId:
        return None  # an anonymous visitor's group: nobody to keep it on
    traits = flatten(message.traits or {}, prefix="group")
    return {"external_ids": identities(message), "attributes": {"group_id": message.groupId[:1000], **traits}}


def _reference(message: Message) -> dict[str, str]:
    return {"visitor_id": user_visitor(message.userId) if message.userId else message.anonymousId}


def _channel(message: Message, default: str = "web") -> str:
    context = message.context or {}
    if "app" in context or (context.get("device") or {}).get("type") in ("ios", "android"):
        return "app"
    return default


def _metadata(message: Message, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    values = {k: v for k, v in extra.items() if v is not None}
    if message.messageId:
        values["segment_message_id"] = message.messageId[:1000]
    flat = flatten(properties, key_pattern=METADATA_KEY)
    for key, value in flat.items():
        if len(values) >= MAX_METADATA:
            break
        values.setdefault(key, value)
    return values


def _url(*candidates: Any) -> str | None:
    for candidate in candidates:
        if isinstance(candidate, str) and URL.match(candidate.strip()) and len(candidate) <= 2048:
            return candidate.strip()
    return None


def _campaign(message: Message) -> str | None:
    campaign = (message.context or {}).get("campaign") or {}
    name = _text(campaign.get("name")) if isinstance(campaign, dict) else None
    return name if name and SLUG.match(name) else None


def interaction(message: TrackCall | PageCall | ScreenCall, occurred_at: datetime) -> dict[str, Any]:
    properties = message.properties or {}
    page = (message.context or {}).get("page") or {}
    if isinstance(message, TrackCall):
        kind, channel, subject = EMAIL_EVENTS.get(message.event, "click"), _channel(message), message.event
        metadata = _metadata(message, properties, segment_event=message.event)
    else:
        screen = isinstance(message, ScreenCall)
        kind, channel = "page_view", _channel(message, "app" if screen else "web")
        subject = message.name or _text(properties.get("title")) or _text(page.get("title") if isinstance(page, dict)
                                                                           else None)
        metadata = _metadata(message, properties, segment_category=message.category)
    item = {"customer": _reference(message), "type": kind, "channel": channel, "direction": "inbound",
            "occurred_at": occurred_at.isoformat(), "subject": subject[:500] if subject else None,
            "url": _url(properties.get("url"), page.get("url") if isinstance(page, dict) else None),
            "campaign_id": _campaign(message), "metadata": metadata or None}
    return {key: value for key, value in item.items() if value is not None}


def _amount(value: Any, loc: list) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput.field(loc, "must be a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput.field(loc, f"{value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput.field(loc, "must be a number of 0 or more")
    return amount


def order(message: TrackCall, placed_at: datetime, loc: list) -> dict[str, Any]:
    """An "Order Completed" track (Segment's e-commerce spec) as an order of platform `segment`.
    Its total is what the lines, discount, shipping and tax add up to (sales-tax style)."""
    p = message.properties or {}
    ploc = [*loc, "properties"]
    currency = (_text(p.get("currency")) or "USD").upper()
    if not re.match(r"^[A-Z]{3}$", currency):
        raise InvalidInput.field([*ploc, "currency"], "must be an ISO 4217 code such as USD or IRR")
    places = money.precision(currency)
    external_id = _text(str(p["order_id"])) if p.get("order_id") is not None else None
    external_id = external_id or _text(p.get("checkout_id")) or message.messageId
    if not external_id:
        raise InvalidInput.field([*ploc, "order_id"], "an Order Completed event needs properties.order_id")
    products = p.get("products") or []
    if not isinstance(products, list):
        raise InvalidInput.field([*ploc, "products"], "must be a list")
    lines, subtotal = [], Decimal(0)
    for index, product in enumerate(products):
        if not isinstance(product, dict):
            raise InvalidInput.field([*ploc, "products", index], "must be an object")
        sku = _text(str(product.get("sku") or product.get("product_id") or product.get("id") or "")) or \
            _text(product.get("name")) or f"item-{index + 1}"
        quantity = _amount(product.get("quantity", 1), [*ploc, "products", index, "quantity"])
        price = _amount(product.get("price", 0), [*ploc, "products", index, "price"])
        if quantity <= 0:
            raise InvalidInput.field([*ploc, "products", index, "quantity"], "must be greater than 0")
        lines.append({"sku": sku[:100], "name": _text(product.get("name")), "category": _text(product.get("category")),
                      "quantity": format(quantity, "f"), "unit_price": format(price, "f")})
        subtotal += money.quantize(quantity * price, places)
    if not lines:
        total = _amount(p.get("total", p.get("revenue", 0)), [*ploc, "total"])
        lines = [{"sku": "order", "name": ORDER_COMPLETED, "quantity": "1", "unit_price": format(total, "f")}]
        subtotal = money.quantize(total, places)
    parts = {name: _amount(p.get(name, 0), [*ploc, name]) for name in ("discount", "shipping", "tax")}
    total = subtotal - parts["discount"] + parts["shipping"] + parts["tax"]
    customer = {"external_id": message.userId} if message.userId else {}
    if message.anonymousId:
        customer["visitor_id"] = message.anonymousId
    if email := _text((message.context or {}).get("traits", {}).get("email") if isinstance(
            (message.context or {}).get("traits"), dict) else None) or _text(p.get("email")):
        customer["email"] = email
    item = {"platform": SEGMENT_SYSTEM, "external_id": external_id[:255], "customer": customer, "currency": currency,
            "lines": [{k: v for k, v in line.items() if v is not None} for line in lines],
            "discount": format(parts["discount"], "f"), "shipping": format(parts["shipping"], "f"),
            "tax": format(parts["tax"], "f"), "total": money.format_amount(total, places),
            "placed_at": placed_at.isoformat()}
    if coupon := _text(p.get("coupon")):
        item["discount_codes"] = [coupon[:64]]
    return item


def plan(messages: list[tuple[str, Message]], now: datetime, *, batch: bool) -> Plan:
    """The writes of these (type, call) messages; InvalidInput naming the field (`batch.<i>.` first
    in a batch) of one that cannot become a write, before anything is written."""
    out = Plan()
    for index, (kind, message) in enumerate(messages):
        loc = ["batch", index] if batch else []
        at = message.timestamp or now
        if kind == "identify" and (item := identify(message)):
            out.contacts.append((index, item))
        elif kind == "alias":
            out.contacts.append((index, alias(message)))
        elif kind == "group" and (item := group(message)):
            out.contacts.append((index, item))
        elif kind == "track" and message.event == ORDER_COMPLETED:
            out.orders.append((index, order(message, at, loc)))
        elif kind in ("track", "page", "screen"):
            out.interactions.append((index, interaction(message, at)))
    return out
