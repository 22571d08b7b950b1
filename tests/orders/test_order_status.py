"""The status machine, payments and refunds, without I/O: every change is one version, an
impossible move is 409 naming the current status, and so is a payment or refund above what the
order's state takes (422 inside an order's own body)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.common.errors import Conflict, InvalidInput
from services.orders.order_record import new_order, prepare_order
from services.orders.order_status import (add_payment, add_refund, attribute, change_status, erase_personal_data,
                                          possible_moves)
from services.orders.schemas import OrderCreate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def placed(total: str = "100.00", **fields):
    body = OrderCreate.model_validate({
        "platform": "shop", "external_id": "1", "currency": "USD", "placed_at": "2026-03-01T10:00:00Z",
        "lines": [{"sku": "a", "quantity": 1, "unit_price": total}], "total": total,
        "customer": {"email": "a@example.com", "given_name": "Ali"},
        "shipping_address": {"name": "Ali", "line1": "Valiasr 1", "city": "Tehran", "country": "IR"}, **fields})
    return new_order(prepare_order(body, region="IR"), customer_id=None, merged_from=None, now=NOW)


def pay(order, amount, **extra):
    return add_payment(order, {"method": "card", "amount": amount, **extra}, now=NOW)


def refund(order, amount, **extra):
    return add_refund(order, {"amount": amount, **extra}, now=NOW)


def test_payments_make_an_order_paid_once_they_cover_the_total():
    order = placed()
    first = pay(order, "40.00", provider_reference="p1")
    assert (first.kind, first.order.status, first.order.balance_due, first.order.version) == ("updated", "placed", "60.00", 2)
    second = pay(first.order, "60.00", provider_reference="p2")
    assert (second.kind, second.order.status, second.order.paid_amount, second.order.version) == ("paid", "paid", "100.00", 3)
    assert [e.status for e in second.order.status_history] == ["placed", "paid"]
    assert pay(second.order, "60.00", provider_reference="p2") is None  # the same payment again: nothing


def test_a_payment_above_the_balance_is_refused_and_a_paid_order_takes_none():
    with pytest.raises(Conflict, match="more than the balance due 100.00"):  # POST .../payments: the order's state
        pay(placed(), "100.01")
    with pytest.raises(InvalidInput, match="more than the balance due 100.00"):  # in the order's own body
        add_payment(placed(), {"method": "card", "amount": "100.01"}, now=NOW, field_path=["payments", 0, "amount"])
    paid = pay(placed(), "100.00").order
    with pytest.raises(Conflict) as caught:
        pay(paid, "1.00", provider_reference="late")
    assert caught.value.extra["current_status"] == "paid"


def test_refunds_up_to_what_was_paid():
    paid = pay(placed(), "100.00").order
    partial = refund(paid, "30.00", provider_reference="r1")
    assert (partial.kind, partial.order.status, partial.order.refunded_amount) == ("refunded", "partially_refunded", "30.00")
    with pytest.raises(Conflict) as caught:
        refund(partial.order, "70.01")
    assert caught.value.status == 409
    assert (caught.value.extra["refundable"], caught.value.extra["paid_amount"]) == ("70.00", "100.00")
    full = refund(partial.order, "70.00", provider_reference="r2")
    assert (full.order.status, full.order.refunded_amount) == ("refunded", "100.00")
    assert possible_moves(full.order) == []


def test_a_refund_on_an_unpaid_order_is_refused():
    with pytest.raises(Conflict, match="more than can be refunded: 0.00"):
        refund(placed(), "1.00")
    with pytest.raises(InvalidInput, match="more than can be refunded: 0.00"):
        add_refund(placed(), {"amount": "1.00"}, now=NOW, field_path=["refunds", 0, "amount"])


@pytest.mark.parametrize("path, target", [
    ([], "fulfilled"), ([], "returned"), (["pay"], "returned"), (["pay", "fulfilled"], "cancelled"),
    (["pay", "fulfilled", "returned"], "fulfilled"), (["cancelled"], "fulfilled"), (["pay", "cancelled"], "placed"),
    (["pay"], "placed"),
])
def test_impossible_moves_are_409_with_the_current_status(path, target):
    order = placed()
    for move in path:
        order = (pay(order, order.total) if move == "pay" else change_status(order, move, at=None, now=NOW)).order
    with pytest.raises(Conflict) as caught:
        change_status(order, target, at=None, now=NOW)
    assert caught.value.status == 409
    assert caught.value.extra["current_status"] == order.status
    assert order.status in caught.value.detail


def test_the_happy_path_and_its_events():
    order = placed()
    kinds = []
    for step in (lambda o: pay(o, "100.00"), lambda o: change_status(o, "fulfilled", at=None, now=NOW),
                 lambda o: change_status(o, "returned", at=None, now=NOW), lambda o: refund(o, "100.00")):
        result = step(order)
        kinds.append((result.kind, result.order.status, result.order.version))
        order = result.order
    assert kinds == [("paid", "paid", 2), ("fulfilled", "fulfilled", 3), ("returned", "returned", 4),
                     ("refunded", "refunded", 5)]


def test_paid_and_refunded_follow_from_money_not_from_a_status_change():
    with pytest.raises(Conflict, match="record a payment"):
        change_status(placed(), "paid", at=None, now=NOW)
    assert change_status(placed(), "placed", at=None, now=NOW) is None  # the current status: no change


def test_a_partially_refunded_order_keeps_its_place_in_the_machine():
    paid = pay(placed(), "100.00").order
    partial = refund(paid, "10.00").order
    assert change_status(partial, "fulfilled", at=None, now=NOW).order.status == "fulfilled"
    with pytest.raises(Conflict):
        change_status(partial, "returned", at=None, now=NOW)  # never fulfilled
    fulfilled_then_partial = refund(change_status(paid, "fulfilled", at=None, now=NOW).order, "10.00").order
    assert change_status(fulfilled_then_partial, "returned", at=None, now=NOW).order.status == "returned"
    with pytest.raises(Conflict):
        change_status(fulfilled_then_partial, "cancelled", at=None, now=NOW)


def test_a_cancelled_order_stays_cancelled_when_refunded():
    cancelled = change_status(pay(placed(), "100.00").order, "cancelled", at=None, now=NOW).order
    refunded = refund(cancelled, "100.00")
    assert (refunded.kind, refunded.order.status, refunded.order.refunded_amount) == ("refunded", "cancelled", "100.00")


def test_attribution_and_erasure_are_versions_too():
    order = placed()
    attributed = attribute(order, "c-1", merged_from=None, reason="reference_resolved", now=NOW)
    assert (attributed.kind, attributed.order.customer_id, attributed.extra["previous_customer_id"]) == \
        ("attributed", "c-1", None)
    assert attribute(attributed.order, "c-1", merged_from=None, reason="named", now=NOW) is None
    erased = erase_personal_data(attributed.order, now=NOW)
    assert erased.order.customer is None and erased.order.shipping_address.model_dump(exclude_none=True) == {"country": "IR"}
    assert erased.order.total == "100.00" and erased.order.lines[0].sku == "a"
    assert {"customer", "shipping_address", "personal_data_erased_at"} <= set(erased.changed_fields)
    assert erase_personal_data(erased.order, now=NOW) is None
