"""Segment calls into contact, interaction and order writes, without I/O."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.tracking_schemas import IdentifyCall, PageCall, TrackCall
from gateway.tracking_translation import contact_from_traits, flatten, identify, interaction, order, snake
from services.common.errors import InvalidInput

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)


def test_trait_names_and_values():
    assert snake("planType") == "plan_type" and snake("Plan Type!") == "plan_type" and snake("2fa") == "_2fa"
    assert flatten({"company": {"name": "Acme", "size": 12}, "tags": ["a", 1], "empty": None, "x": {"y": None}}) == {
        "company_name": "Acme", "company_size": 12, "tags": "a, 1"}


def test_a_name_alone_is_split_and_an_address_with_a_country_becomes_an_address():
    item = contact_from_traits({"name": "علی رضایی", "address": {"street": "ولیعصر ۱۲", "city": "تهران",
                                                                 "country": "ir"}, "gender": "Female"}, {})
    assert (item["given_name"], item["family_name"], item["display_name"]) == ("علی", "رضایی", "علی رضایی")
    assert item["addresses"] == [{"line1": "ولیعصر ۱۲", "city": "تهران", "country": "IR"}]
    assert item["gender"] == "female" and "attributes" not in item
    odd = contact_from_traits({"address": {"city": "Dubai", "country": "United Arab Emirates"}}, {})
    assert odd == {"attributes": {"address_city": "Dubai", "address_country": "United Arab Emirates"}}


def test_identify_keeps_both_ids_and_an_empty_anonymous_identify_writes_nothing():
    item = identify(IdentifyCall(userId=42, anonymousId="a-1", traits={"email": "x@example.com"}))
    assert item["external_ids"] == [{"system": "segment", "id": "42"}, {"system": "visitor", "id": "segment-user:42"},
                                    {"system": "visitor", "id": "a-1"}]
    assert identify(IdentifyCall(anonymousId="a-1")) is None


def test_interactions():
    call = TrackCall(userId="u", event="Email Opened", context={"campaign": {"name": "yalda-1405"}},
                     timestamp="2026-12-01T08:00:00")  # no offset: UTC, as Segment reads it
    track = interaction(call, call.timestamp)
    assert (track["type"], track["campaign_id"], track["occurred_at"]) == (
        "campaign_opened", "yalda-1405", "2026-12-01T08:00:00+00:00")
    page = interaction(PageCall(anonymousId="a", properties={"title": "Home", "url": "javascript:x"}), NOW)
    assert (page["type"], page["subject"], page["customer"]) == ("page_view", "Home", {"visitor_id": "a"})
    assert "url" not in page
    many = interaction(TrackCall(userId="u", event="e", properties={f"p{i}": i for i in range(80)}), NOW)
    assert len(many["metadata"]) == 50


def test_an_order_adds_up_in_the_currency_and_refuses_what_is_not_a_number():
    made = order(TrackCall(userId="u", event="Order Completed", properties={
        "order_id": 7, "currency": "irr", "tax": 90000, "products": [{"sku": "t", "price": 333333.4, "quantity": 3}]}),
        NOW, [])
    assert (made["external_id"], made["currency"], made["total"]) == ("7", "IRR", "1090000")
    with pytest.raises(InvalidInput) as refused:
        order(TrackCall(userId="u", event="Order Completed", properties={"order_id": "o", "shipping": "free"}),
              NOW, ["batch", 2])
    assert refused.value.errors[0]["field"] == "batch.2.properties.shipping"
