"""Schemathesis hooks for the contract test (tests/e2e/test_api_contract.py), loaded through
tests/e2e/schemathesis.toml. Only for the few rules the OpenAPI document cannot state in JSON
Schema (docs/gateway.md, "API documents", lists them and why); each rule is tested on its own
elsewhere. They touch only cases meant to be valid: invalid ones go out as generated."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

from services.contacts.import_formats import XLSX_MEDIA_TYPE
from services.orders import money
from tests.contacts.xlsx_files import xlsx_bytes

# `format: phone` (services/common/wire_types.py): whether a number is valid is libphonenumber's
# metadata, not a pattern. Numbers it accepts, as people type them (DEFAULT_PHONE_REGION IR).
VALID_PHONES = ("+989121234567", "09123456789", "0912 345 6789", "۰۹۱۲۳۴۵۶۷۸۹", "+971501234567",
                "+966 50 123 4567", "+44 20 7946 0958", "+14155552671", "+49 30 901820")
schemathesis.openapi.format("phone", st.sampled_from(VALID_PHONES))

IMPORT_FILES = {"text/csv": "email,given_name\r\nsara@example.com,Sara\r\n",
                "application/x-ndjson": '{"emails": ["sara@example.com"], "given_name": "Sara"}\n'}
LOOKUP_KEYS = ("email", "phone", "external_id")


def import_case(case) -> None:
    """An import (or its dry run) of a file that can be read in its format, with options it takes:
    the schema says minLength 1 (an empty file is refused), which schemathesis does not apply to a
    binary body, and cannot say that a workbook must be one, that `sheet` is for XLSX only, or that
    `mapping` is a JSON object naming contact columns (column_mapping.py checks it)."""
    if case.media_type == XLSX_MEDIA_TYPE:
        case.body = xlsx_bytes(("Sheet1", [["email", "given_name"], ["sara@example.com", "Sara"]]))
    elif not case.body or case.media_type not in IMPORT_FILES:
        case.body = IMPORT_FILES.get(case.media_type, IMPORT_FILES["text/csv"])
    query = case.query if isinstance(case.query, dict) else {}
    query.pop("sheet", None)  # a CSV has none, and the workbook above has one
    query.pop("format", None)  # the Content-Type names the body's format
    if "mapping" in query:
        if case.media_type == "application/x-ndjson":
            query.pop("mapping")
        else:
            query["mapping"] = json.dumps({"email": "emails", "given_name": "given_name"})
    case.query = query


def contact_lookup(query: dict) -> None:
    """GET /v1/contacts/lookup takes exactly one of email, phone or external_id (with system):
    a rule across query parameters, which OpenAPI describes one by one."""
    given = [name for name in LOOKUP_KEYS if query.get(name)]
    keep = given[0] if given else "email"
    for name in LOOKUP_KEYS:
        if name != keep:
            query.pop(name, None)
    if keep == "email":
        query.setdefault("email", "someone@example.com")
    if keep == "external_id":
        query.setdefault("system", "shop")


def consistent_order(order: object) -> None:
    """An order's total must be what its lines, discounts, tax and shipping add up to, in the
    currency's minor units, and payments and refunds must fit in it: arithmetic across fields.
    Keeps the generated lines, prices and currency; makes the rest add up."""
    if not isinstance(order, dict) or not isinstance(order.get("lines"), list) or "currency" not in order:
        return
    places = money.precision(str(order["currency"]).upper())
    subtotal = Decimal(0)
    for line in order["lines"]:
        if not isinstance(line, dict):
            return
        quantity, price = (Decimal(money.amount_text(line.get(name, "1"))) for name in ("quantity", "unit_price"))
        if quantity <= 0 or len(str(int(quantity * price))) > 10:
            line["quantity"], line["unit_price"], quantity, price = "1", "1", Decimal(1), Decimal(1)
        line["discount"], line["tax"] = "0", "0"
        subtotal += money.quantize(quantity * price, places)
    order.update(discount="0", tax="0", shipping="0", total=money.format_amount(subtotal, places))
    for name in ("payments", "refunds", "status"):  # paid / refunded follow from payments that add up
        order.pop(name, None)


def payable(entry: object) -> None:
    """A payment or refund on its own is in its order's currency and that currency's minor units:
    the state of another resource. Whole units in the order's currency are payable in any."""
    if isinstance(entry, dict):
        entry.pop("currency", None)
        if "amount" in entry:
            entry["amount"] = str(max(1, int(Decimal(money.amount_text(entry["amount"])))))


def past_moment(interaction: object) -> None:
    """An interaction happened: not in the future (by the server's clock, which no schema knows)
    and not before 1970. A generated time outside that is moved to now."""
    if isinstance(interaction, dict) and isinstance(interaction.get("occurred_at"), str):
        try:
            moment = datetime.fromisoformat(interaction["occurred_at"].replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return
        if not EARLIEST <= moment <= datetime.now(timezone.utc):
            interaction["occurred_at"] = datetime.now(timezone.utc).isoformat()


EARLIEST = datetime(1970, 1, 2, tzinfo=timezone.utc)


def ordered_betweens(node: object) -> object:
    """A rule's `between` names [low, high]: low above high is refused, and no schema compares
    two items of an array. (GET /v1/profiles carries its rule as JSON text.)"""
    if isinstance(node, str) and node.startswith("{"):
        try:
            return json.dumps(ordered_betweens(json.loads(node)))
        except ValueError:
            return node
    if isinstance(node, dict):
        value = node.get("value")
        if node.get("op") == "between" and isinstance(value, list) and len(value) == 2:
            node["value"] = sorted(value, key=comparable)
        for child in node.values():
            ordered_betweens(child)
    elif isinstance(node, list):
        for child in node:
            ordered_betweens(child)
    return node


def comparable(value: object) -> object:
    """A `between` bound as the server compares it: decimals and times by value."""
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except ArithmeticError:
            return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return Decimal(value) if isinstance(value, int) and not isinstance(value, bool) else value


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Just before a case meant to be valid is sent, in every phase (examples, fuzzing, stateful):
    no `cursor` (a token the server gives out for one listing: a generated one can only be
    refused; tests/common/test_http_semantics.py tests cursors), an Idempotency-Key of its own
    (the same key with another body is rightly a 422, and a client makes a new key for each new
    request), and the cross-field rules above. Schemathesis checks the case against the schema
    again afterwards, so what is sent is still schema-valid."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return
    if case.query:
        case.query.pop("cursor", None)
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    path = case.operation.path
    if path == "/v1/contacts/lookup":
        if case.query is None:
            case.query = {}
        contact_lookup(case.query)
    elif path == "/v1/orders" and case.method.upper() == "POST":
        consistent_order(case.body)
    elif path == "/v1/orders/batch" and isinstance(case.body, dict):
        for item in case.body.get("items") or []:
            consistent_order(item)
    elif path in ("/v1/contacts/import", "/v1/contacts/import/dry-run"):
        import_case(case)
    elif path == "/v1/interactions" and case.method.upper() == "POST":
        past_moment(case.body)
    elif path == "/v1/interactions/batch" and isinstance(case.body, dict):
        for item in case.body.get("items") or []:
            past_moment(item)
    elif path in ("/v1/orders/{order_id}/payments", "/v1/orders/{order_id}/refunds"):
        payable(case.body)
    elif path.startswith(("/v1/segments", "/v1/profiles")):
        ordered_betweens(case.body)
        if case.query and "rule" in case.query:
            case.query["rule"] = ordered_betweens(case.query["rule"])
