"""The orders API's wire shapes: OrderCreate (what a platform posts), OrderPublic (what every
answer and event carries), payments, refunds, status changes, batches and pages.

Unknown fields are refused (422), so a typo never silently drops data. Amounts are decimal
strings (money.py says why); whether they fit the order's currency is checked by
order_record.py, which knows the currency.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, BeforeValidator, Field, SkipValidation,
                      StringConstraints, WithJsonSchema, model_validator)

from services.common.wire_types import NOT_BLANK, CountryCode, EmailText, Instant, PhoneText, WireModel

from . import money

OrderStatus = Literal["placed", "paid", "partially_refunded", "refunded", "fulfilled", "returned", "cancelled"]
Channel = Literal["web", "app", "store", "marketplace", "phone"]
MAX_BATCH_ITEMS = 1000

# The pattern is money.amount_text's rule: up to 14 digits before the point (leading zeros aside)
# and 6 after it (trailing zeros aside), in any script's digits, Arabic decimal separator included.
AMOUNT_PATTERN = (rf"^\s*0*\d{{1,{money.MAX_INTEGER_DIGITS}}}"
                  rf"([.\u066b]\d{{1,{money.MAX_FRACTION_DIGITS}}}0*)?\s*$")
Amount = Annotated[str, BeforeValidator(money.amount_text), WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": AMOUNT_PATTERN},
              {"type": "integer", "minimum": 0, "maximum": 10 ** money.MAX_INTEGER_DIGITS - 1}],
    "description": "A non-negative decimal string (\"19.99\", \"1250000\"); JSON integers are accepted, "
                   "JSON numbers with a fraction are refused"})]
# An amount that must be more than 0 (a quantity, a payment, a refund): the same, zero left out.
_ZERO = r"^\s*[0\u0660\u06f0]*([.\u066b][0\u0660\u06f0]*)?\s*$"  # in any script's digits
PositiveAmount = Annotated[str, BeforeValidator(money.amount_text), WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": AMOUNT_PATTERN, "not": {"pattern": _ZERO}},
              {"type": "integer", "minimum": 1, "maximum": 10 ** money.MAX_INTEGER_DIGITS - 1}],
    "description": "A decimal string greater than 0 (\"19.99\", \"1250000\"); JSON integers are accepted, "
                   "JSON numbers with a fraction are refused"})]
Slug = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w.:\-]+$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=NOT_BLANK)]


def _currency(value: str) -> str:
    code = value.strip().upper()
    if not money.known_currency(code):
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (such as IRR, EUR, USD)")
    return code


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        raise ValueError(f"{value!r} is not a customer id (a UUID)") from None


Currency = Annotated[str, AfterValidator(_currency), WithJsonSchema({
    "type": "string", "enum": money.currency_codes() + [code.lower() for code in money.currency_codes()],
    "description": "ISO 4217 currency code", "examples": ["IRR", "AED", "USD"]})]
CustomerId = Annotated[str, AfterValidator(_uuid), WithJsonSchema({"type": "string", "format": "uuid"})]


class CustomerRef(WireModel):
    """Who bought: our customer id, or what the platform knows (email, phone, its own customer id)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [  # _names_someone, stated
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in ("id", "email", "phone", "external_id", "visitor_id")]})

    id: CustomerId | None = None
    email: EmailText | None = None
    phone: PhoneText | None = None
    external_id: Identifier | None = Field(default=None, description="The platform's own customer id")
    visitor_id: Identifier | None = Field(default=None, description="The web visitor id of the browsing session "
                                          "that bought: identifies that visitor's anonymous history")
    given_name: Name | None = None
    family_name: Name | None = None

    @model_validator(mode="after")
    def _names_someone(self) -> "CustomerRef":
        if not (self.id or self.email or self.phone or self.external_id or self.visitor_id):
            raise ValueError("give at least one of id, email, phone, external_id or visitor_id; "
                             "leave customer out for a guest sale")
        return self


class Address(WireModel):
    name: Name | None = None
    line1: Annotated[str, StringConstraints(max_length=500)] | None = None
    line2: Annotated[str, StringConstraints(max_length=500)] | None = None
    city: ShortText | None = None
    region: ShortText | None = None
    postal_code: Annotated[str, StringConstraints(max_length=32)] | None = None
    country: CountryCode
    phone: Annotated[str, StringConstraints(max_length=64)] | None = None


class OrderLineIn(WireModel):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NOT_BLANK)]
    name: Annotated[str, StringConstraints(max_length=500)] | None = None
    category: ShortText | None = None
    quantity: PositiveAmount = Field(description="Greater than 0; fractions allowed (weights)")
    unit_price: Amount = Field(description="Up to 6 digits after the point")
    discount: Amount = Field(default="0", description="Off this line as a whole, in the currency's minor units")
    tax: Amount = Field(default="0", description="Tax of this line; added to it unless prices_include_tax")


class PaymentIn(WireModel):
    method: Slug = Field(description="card, cash, cod, wallet, bank_transfer, ...")
    amount: PositiveAmount
    currency: Currency | None = Field(default=None, description="If given, must be the order's currency")
    paid_at: Instant | None = Field(default=None, description="Defaults to now")
    provider_reference: Identifier | None = Field(default=None, description="Recorded once: a repeat is ignored")


class RefundIn(WireModel):
    amount: PositiveAmount
    currency: Currency | None = Field(default=None, description="If given, must be the order's currency")
    refunded_at: Instant | None = Field(default=None, description="Defaults to now")
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None
    provider_reference: Identifier | None = Field(default=None, description="Recorded once: a repeat is ignored")


class StatusChange(WireModel):
    status: OrderStatus = Field(description="fulfilled, returned or cancelled; paid and refunded follow "
                                            "from payments and refunds")
    at: Instant | None = Field(default=None, description="Defaults to now")


ORDER_EXAMPLE = {
    "platform": "shopify", "external_id": "1001", "customer": {"email": "sara@example.com", "given_name": "Sara"},
    "currency": "USD", "lines": [{"sku": "MUG-1", "name": "Mug", "category": "kitchen", "quantity": "2",
                                  "unit_price": "12.50"}],
    "discount": "5.00", "tax": "1.60", "shipping": "4.00", "total": "25.60", "placed_at": "2026-03-01T10:00:00Z"}


class OrderCreate(WireModel):
    # A whole order whose parts add up (the fields' own examples, put together, would not).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ORDER_EXAMPLE]})

    platform: Slug = Field(description="The source platform (shopify, woocommerce, digikala, pos-tehran-1, ...)")
    external_id: Identifier = Field(description="The platform's order id; unique per platform")
    customer: CustomerRef | None = Field(default=None, description="Absent for a guest or point-of-sale sale")
    channel: Channel | None = None
    currency: Currency
    prices_include_tax: bool = Field(default=False, description="VAT style: unit prices already include tax")
    lines: list[OrderLineIn] = Field(min_length=1, max_length=500)
    discount: Amount = Field(default="0", description="Order-level discount (not already in the lines)")
    tax: Amount = Field(default="0", description="Order-level tax not already in the lines (e.g. on shipping)")
    shipping: Amount = "0"
    total: Amount
    discount_codes: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=NOT_BLANK)]] = \
        Field(default_factory=list, max_length=50)
    shipping_address: Address | None = None
    billing_address: Address | None = None
    placed_at: Instant
    status: OrderStatus | None = Field(default=None, description="Where the order is now on the platform; "
                                                                  "reached through the status machine")
    payments: list[PaymentIn] = Field(default_factory=list, max_length=50)
    refunds: list[RefundIn] = Field(default_factory=list, max_length=50)


class OrderBatch(WireModel):
    # Items are validated one by one by the use case, so a bad item is a per-item error and never
    # refuses the whole batch; the schema still documents them as OrderCreate.
    items: list[SkipValidation[OrderCreate]] = Field(min_length=1, max_length=MAX_BATCH_ITEMS,
                                                     description=f"1 to {MAX_BATCH_ITEMS} orders")


class CustomerRefPublic(BaseModel):
    id: str | None = None
    email: str | None = None
    phone: str | None = None
    external_id: str | None = None
    visitor_id: str | None = None
    given_name: str | None = None
    family_name: str | None = None


class AddressPublic(BaseModel):
    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None
    phone: str | None = None


class OrderLinePublic(BaseModel):
    sku: str
    name: str | None = None
    category: str | None = None
    quantity: str
    unit_price: str
    discount: str
    tax: str
    amount: str = Field(description="quantity x unit_price - discount (+ tax unless prices include it)")


class PaymentPublic(BaseModel):
    id: str
    method: str
    amount: str
    paid_at: datetime
    provider_reference: str | None = None


class RefundPublic(BaseModel):
    id: str
    amount: str
    refunded_at: datetime
    reason: str | None = None
    provider_reference: str | None = None


class StatusEntry(BaseModel):
    status: OrderStatus
    at: datetime


class OrderPublic(BaseModel):
    id: str
    platform: str
    external_id: str
    customer_id: str | None = Field(default=None, description="Null until attributed to a customer")
    customer: CustomerRefPublic | None = None
    merged_from: str | None = Field(default=None, description="The customer this order belonged to before a merge")
    channel: Channel | None = None
    currency: str
    prices_include_tax: bool = False
    lines: list[OrderLinePublic]
    subtotal: str
    discount: str
    tax: str
    shipping: str
    total: str
    discount_codes: list[str] = []
    shipping_address: AddressPublic | None = None
    billing_address: AddressPublic | None = None
    placed_at: datetime
    status: OrderStatus
    status_history: list[StatusEntry] = []
    payments: list[PaymentPublic] = []
    refunds: list[RefundPublic] = []
    paid_amount: str
    refunded_amount: str
    balance_due: str
    attributed_at: datetime | None = None
    personal_data_erased_at: datetime | None = None
    version: int
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next_cursor: str | None = None


class BatchItemResult(BaseModel):
    index: int
    status: Literal["created", "updated", "unchanged", "error"]
    id: str | None = None
    version: int | None = None
    error: dict[str, Any] | None = Field(default=None, description="problem+json fields when status is error")


class BatchResponse(BaseModel):
    results: list[BatchItemResult]
    counts: dict[str, int]
