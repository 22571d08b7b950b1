"""Money and totals, without I/O: currencies' minor units, amount syntax, VAT-style and
sales-tax-style totals, and the 422 that says by how much a total is off."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.common.errors import InvalidInput
from services.orders import money
from services.orders.order_record import prepare_order
from services.orders.schemas import OrderCreate


@pytest.mark.parametrize("currency, places", [("IRR", 0), ("USD", 2), ("EUR", 2), ("JPY", 0), ("BHD", 3),
                                              ("KWD", 3)])
def test_minor_units_follow_cldr(currency, places):
    assert money.known_currency(currency)
    assert money.precision(currency) == places


@pytest.mark.parametrize("code", ["ABC", "XXX", "XTS", "usd", "IRT", "EURO"])
def test_unknown_currencies(code):
    assert not money.known_currency(code)


@pytest.mark.parametrize("raw, text", [("19.99", "19.99"), ("1250000", "1250000"), (1250000, "1250000"),
                                       ("007.50", "7.5"), ("۱۲۵۰۰۰۰", "1250000"), ("١٩٫٩٩", "19.99"),
                                       (" 3 ", "3"), ("0", "0"), (1e3, "1000"), (429.0, "429")])
def test_amounts_in_their_canonical_form(raw, text):
    assert money.amount_text(raw) == text


@pytest.mark.parametrize("raw, message", [(19.99, "float"), (0.5, "float"), (True, "float"),
                                         (float("inf"), "float"), (1e300, "too large"), ("-1", "negative"),
                                         ("1e3", "not a decimal"), ("1,250,000", "not a decimal"), ("", "not a decimal"),
                                         ("1" * 15, "too large"), ("0.1234567", "more than 6"), (None, "decimal string")])
def test_amounts_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        money.amount_text(raw)


def test_rounding_is_half_up_and_formatting_never_uses_exponents():
    assert money.format_amount(Decimal("2.345"), 2) == "2.35"
    assert money.format_amount(Decimal("2.344"), 2) == "2.34"
    assert money.format_amount(Decimal("1E+6"), 0) == "1000000"
    assert money.format_amount(Decimal("0"), 3) == "0.000"


def test_amounts_finer_than_the_currency_are_refused():
    with pytest.raises(InvalidInput, match="finer than USD allows"):
        money.minor_units_only("19.999", "USD", ["total"])
    with pytest.raises(InvalidInput, match="finer than IRR allows"):
        money.minor_units_only("1250.5", "IRR", ["total"])
    assert money.minor_units_only("19.990", "USD", ["total"]) == Decimal("19.99")


def order(**fields) -> OrderCreate:
    values = {"platform": "shop", "external_id": "1", "placed_at": "2026-03-01T10:00:00Z", **fields}
    return OrderCreate.model_validate(values)


def test_sales_tax_style_adds_line_and_order_tax():
    prepared = prepare_order(order(currency="USD", lines=[
        {"sku": "a", "quantity": "3", "unit_price": "9.99", "discount": "1.00", "tax": "2.32"},
        {"sku": "b", "quantity": "0.5", "unit_price": "3.333", "tax": "0.13"},
    ], shipping="5.00", tax="0.40", discount="2.00", total="36.49"), region="US")
    # a: 29.97 - 1.00 + 2.32 = 31.29; b: round(1.6665) = 1.67 + 0.13 = 1.80; 33.09 - 2.00 + 5.00 + 0.40 = 36.49
    assert [line["amount"] for line in prepared.content["lines"]] == ["31.29", "1.80"]
    assert prepared.content["subtotal"] == "33.09"


def test_a_total_that_is_off_says_expected_given_and_by_how_much():
    with pytest.raises(InvalidInput) as caught:
        prepare_order(order(currency="USD", lines=[{"sku": "a", "quantity": 3, "unit_price": "9.99", "tax": "2.32"}],
                            total="32.00"), region="US")
    problem = caught.value.problem()
    assert problem["errors"][0]["field"] == "total"
    assert (problem["expected_total"], problem["given_total"], problem["difference"]) == ("32.29", "32.00", "-0.29")
    assert "0.29 too low" in problem["detail"]


def test_vat_style_taxes_are_informational_and_rials_have_no_decimals():
    # Iran: 10% VAT inside the prices; 2 x 1,250,000 + 450,000 shipping - 100,000 discount.
    prepared = prepare_order(order(currency="IRR", prices_include_tax=True, lines=[
        {"sku": "rice", "quantity": 2, "unit_price": "1250000", "tax": "227273"}],
        shipping="450000", discount="100000", tax="227273", total="2850000"), region="IR")
    assert prepared.content["total"] == "2850000" and prepared.content["tax"] == "227273"
    assert prepared.content["lines"][0]["amount"] == "2500000"


def test_the_same_order_with_prices_excluding_tax_must_add_the_tax():
    with pytest.raises(InvalidInput, match="227273 too low"):
        prepare_order(order(currency="IRR", lines=[{"sku": "rice", "quantity": 2, "unit_price": "1250000",
                                                    "tax": "227273"}], shipping="450000", discount="100000",
                            total="2850000"), region="IR")


def test_line_amounts_round_to_the_currency_before_adding():
    # 3 x 0.335 = 1.005 -> 1.01 (half up) per line; two lines 2.02, not round(2.01) = 2.01.
    prepared = prepare_order(order(currency="EUR", lines=[{"sku": "a", "quantity": 3, "unit_price": "0.335"},
                                                          {"sku": "b", "quantity": 3, "unit_price": "0.335"}],
                                   total="2.02"), region="DE")
    assert prepared.content["subtotal"] == "2.02"


@pytest.mark.parametrize("fields, field", [
    ({"lines": [{"sku": "a", "quantity": "0", "unit_price": "1.00"}], "total": "0.00"}, "lines.0.quantity"),
    ({"lines": [{"sku": "a", "quantity": 1, "unit_price": "1.00", "discount": "2.00"}], "total": "0.00"},
     "lines.0.discount"),
    ({"lines": [{"sku": "a", "quantity": 1, "unit_price": "1.00", "tax": "0.001"}], "total": "1.00"}, "lines.0.tax"),
    ({"lines": [{"sku": "a", "quantity": 1, "unit_price": "1.00"}], "discount": "5.00", "total": "0.00"}, "discount"),
    ({"lines": [{"sku": "a", "quantity": 1, "unit_price": "1.00"}], "total": "1.00",
      "payments": [{"method": "card", "amount": "1.00", "currency": "EUR"}]}, "payments.0.currency"),
    ({"lines": [{"sku": "a", "quantity": 1, "unit_price": "1.00"}], "total": "1.00",
      "customer": {"email": "not-an-email"}}, "customer.email"),
    ({"lines": [{"sku": "a", "quantity": 1, "unit_price": "1.00"}], "total": "1.00",
      "customer": {"phone": "12"}}, "customer.phone"),
])
def test_domain_checks_name_the_field(fields, field):
    with pytest.raises(InvalidInput) as caught:
        prepare_order(order(currency="USD", **fields), region="US")
    assert caught.value.errors[0]["field"] == field
