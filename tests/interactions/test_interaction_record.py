"""The pure rules of an interaction: validation, defaults, the ticket status machine,
re-attribution and erasure (no I/O)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.common.errors import Conflict, InvalidInput
from services.interactions.interaction_record import (TICKET_TRANSITIONS, Reference, apply_update, erased, prepare,
                                                      reattributed, new_interaction)
from services.interactions.schemas import InteractionCreate, InteractionUpdate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
C1 = "00000000-0000-4000-8000-0000000000c1"


def prep(**item):
    return prepare(0, {"customer": {"visitor_id": "v1"}, "type": "page_view", "channel": "web", **item},
                   region="IR", now=NOW, max_future_s=300)


def error_fields(prepared) -> set[str]:
    assert prepared.error is not None, "expected a problem"
    assert prepared.error["status"] == 422
    return {e["field"] for e in prepared.error["errors"]}


@pytest.mark.parametrize("item, field", [
    ({"type": "fax"}, "type"),
    ({"channel": "carrier_pigeon"}, "channel"),
    ({"type": "survey_response", "rating": 0}, "rating"),
    ({"type": "survey_response", "rating": 6}, "rating"),
    ({"type": "survey_response", "nps": 11}, "nps"),
    ({"type": "survey_response", "nps": -1}, "nps"),
    ({"occurred_at": (NOW + timedelta(minutes=6)).isoformat()}, "occurred_at"),
    ({"occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
    ({"occurred_at": "2026-01-01T10:00:00"}, "occurred_at"),  # no timezone
    ({"occurred_at": "1969-12-31T23:59:59Z"}, "occurred_at"),
    ({"type": "call", "channel": "phone"}, "direction"),  # a call has no natural direction
    ({"type": "feedback"}, "kind"),
    ({"kind": "complaint"}, "kind"),  # only feedback has a kind
    ({"status": "open"}, "status"),  # only tickets have a status
    ({"rating": 5}, "rating"),  # a page view is not rated
    ({"type": "feedback", "kind": "comment", "nps": 7}, "nps"),
    ({"customer": {}}, "customer"),
    ({"customer": {"email": "not-an-email"}}, "customer.email"),
    ({"customer": {"phone": "12"}}, "customer.phone"),
    ({"customer": {"visitor_id": "v1", "cookie": "x"}}, "customer.cookie"),
    ({"customer": {"id": "customer-42"}}, "customer.id"),
    ({"metadata": {"ok": {"nested": "objects are not scalar"}}}, "metadata.ok"),
    ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
    ({"url": "javascript:alert(1)"}, "url"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_items_name_the_field(item, field):
    fields = error_fields(prep(**item))
    assert any(f == field or f.startswith(field + ".") for f in fields), fields


def test_defaults_and_normalization():
    prepared = prep(customer={"email": "Ali@Example.COM", "phone": "۰۹۱۲۱۲۳۴۵۶۷"}, metadata={"a": 1, "b": None})
    assert prepared.error is None
    assert prep(customer={"id": C1.upper()}).reference.customer_id == C1  # UUIDs in their canonical form
    assert prepared.reference == Reference(None, "Ali@example.com", "+989121234567", None)
    record = new_interaction(prepared.fields, prepared.reference, interaction_id="i1", customer_id=None, now=NOW)
    assert (record.direction, record.occurred_at, record.version) == ("inbound", NOW, 1)
    assert record.customer == {"email": "Ali@example.com", "phone": "+989121234567"}
    assert record.metadata == {"a": 1, "b": None}
    assert prepared.reference.identity_keys() == [("email", "", "ali@example.com"), ("phone", "", "+989121234567")]


def test_a_time_a_little_ahead_of_our_clock_is_accepted():
    assert prep(occurred_at=(NOW + timedelta(minutes=4)).isoformat()).error is None


def ticket(status="open"):
    fields = InteractionCreate(customer={"id": C1}, type="support_ticket", channel="email", status=status)
    return new_interaction(fields, Reference("c1"), interaction_id="t1", customer_id="c1", now=NOW)


@pytest.mark.parametrize("start", ["open", "pending", "resolved", "closed"])
def test_ticket_status_machine(start):
    for target in ("open", "pending", "resolved", "closed"):
        if target == start:
            updated, changed = apply_update(ticket(start), InteractionUpdate(status=target), now=NOW)
            assert changed == [] and updated.version == 1
        elif target in TICKET_TRANSITIONS[start]:
            updated, changed = apply_update(ticket(start), InteractionUpdate(status=target), now=NOW)
            assert (updated.status, updated.version, changed) == (target, 2, ["status"])
        else:
            with pytest.raises(Conflict) as raised:
                apply_update(ticket(start), InteractionUpdate(status=target), now=NOW)
            assert raised.value.extra["current_status"] == start


def test_a_ticket_is_open_by_default_and_other_types_do_not_change():
    assert ticket().status == "open"
    visit = new_interaction(InteractionCreate(customer={"visitor_id": "v"}, type="visit", channel="web"),
                            Reference(visitor_id="v"), interaction_id="i", customer_id=None, now=NOW)
    with pytest.raises(Conflict):
        apply_update(visit, InteractionUpdate(status="closed"), now=NOW)
    with pytest.raises(InvalidInput):
        apply_update(ticket(), InteractionUpdate.model_validate({"status": None}), now=NOW)


def test_erasure_keeps_the_facts_and_removes_what_identifies():
    fields = InteractionCreate(customer={"email": "a@example.com"}, type="survey_response", channel="email",
                               subject="Your visit", body="I am Ali from Tehran", rating=2, nps=3,
                               url="https://shop.example/?email=a@example.com", metadata={"order": "o-1"},
                               duration_seconds=30, outcome="answered")
    record = new_interaction(fields, Reference(email="a@example.com"), interaction_id="i", customer_id="c",
                             now=NOW)
    gone, changed = erased(record, now=NOW)
    assert (gone.customer, gone.subject, gone.body, gone.url, gone.metadata) == (None, None, None, None, {})
    assert (gone.type, gone.channel, gone.rating, gone.nps, gone.occurred_at, gone.customer_id) == \
        ("survey_response", "email", 2, 3, NOW, "c")
    assert (gone.duration_seconds, gone.outcome, gone.erased, gone.version) == (30, "answered", True, 2)
    assert changed == ["body", "customer", "erased", "metadata", "subject", "url"]


def test_reattribution_bumps_the_version_and_names_the_change():
    moved, changed = reattributed(ticket(), "c2", merged_from="c1", now=NOW)
    assert (moved.customer_id, moved.merged_from, moved.version, changed) == ("c2", "c1", 2,
                                                                             ["customer_id", "merged_from"])
