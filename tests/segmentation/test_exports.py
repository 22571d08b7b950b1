"""A segment's export carries only what consent allows: for each channel, only the customers who
granted it, and of them only who they are and that channel's contact point; every page handed
out is in the audit trail."""
from __future__ import annotations

import csv
import io
from urllib.parse import quote

import orjson
import pytest

from services.segmentation.exports import CONTACT_POINTS
from services.segmentation.models import CONSENT_CHANNELS
from tests.conftest import audit_entries
from tests.segmentation.conftest import contact, contact_event, deliver, new_id

GRANTED = {"status": "granted", "at": "2026-01-01T00:00:00Z"}
WITHDRAWN = {"status": "withdrawn", "at": "2026-02-01T00:00:00Z"}
PERSONAL_ELSEWHERE = ("email", "phone", "city", "country", "lifecycle_stage", "rfm_segment")


async def static_list(seg, *customer_ids: str) -> str:
    segment_id = (await seg.post("/v1/segments", json={"name": f"list {new_id()}", "type": "static"})).json()["id"]
    added = await seg.post(f"/v1/segments/{segment_id}/members", json={"customer_ids": list(customer_ids)})
    assert added.json()["entered"] == len(customer_ids), added.text
    return segment_id


async def export(seg, segment_id: str, fmt: str, channel: str | None = None, headers=None) -> list[dict]:
    params = {"format": fmt, **({"channel": channel} if channel else {})}
    response = await seg.get(f"/v1/segments/{segment_id}/export", params=params, headers=headers)
    assert response.status_code == 200, response.text
    if fmt == "jsonl":
        return [orjson.loads(line) for line in response.text.splitlines()]
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.mark.parametrize("channel", CONSENT_CHANNELS)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_a_channels_export_holds_only_consenting_customers_and_that_channels_contact_point(seg, channel, fmt):
    consenting, withdrawn, other_channel = new_id(), new_id(), new_id()
    other = "sms" if channel != "sms" else "email"
    await deliver(seg, contact_event("created", contact(consenting, consent={channel: GRANTED})),
                  contact_event("created", contact(withdrawn, consent={channel: WITHDRAWN, other: GRANTED})),
                  contact_event("created", contact(other_channel, consent={other: GRANTED})))
    segment_id = await static_list(seg, consenting, withdrawn, other_channel)
    rows = await export(seg, segment_id, fmt, channel)
    assert [row["customer_id"] for row in rows] == [consenting]
    [row] = rows
    points = CONTACT_POINTS[channel]
    assert set(row) == {"customer_id", "given_name", "family_name", "display_name", "preferred_language",
                        *points, "entered_at"}
    assert row["given_name"] == "Sara"
    for name in points:  # the channel's own contact point is there...
        assert row[name], name
    for name in set(PERSONAL_ELSEWHERE) - set(points):  # ...and no other personal data
        assert name not in row
    text = str(row)
    if "email" not in points:
        assert "@example.com" not in text
    if "phone" not in points:
        assert "+98912" not in text


async def test_without_a_channel_the_export_has_no_contact_point_at_all(seg):
    withdrew = new_id()
    await deliver(seg, contact_event("created", contact(withdrew, consent={"email": WITHDRAWN, "sms": WITHDRAWN})))
    segment_id = await static_list(seg, withdrew)
    for fmt in ("csv", "jsonl"):
        [row] = await export(seg, segment_id, fmt)
        assert row["customer_id"] == withdrew and row["city"] == "Tehran"
        assert "email" not in row and "phone" not in row
        assert "@example.com" not in str(row) and "+98912" not in str(row)


async def test_every_exported_page_is_in_the_audit_trail_with_its_caller(seg, monkeypatch):
    from services.segmentation import exports

    monkeypatch.setattr(exports, "PAGE", 2)
    ids = sorted(new_id() for _ in range(5))
    await deliver(seg, *(contact_event("created", contact(cid)) for cid in ids))
    segment_id = await static_list(seg, *ids)
    # The headers the gateway sends (the key's name percent-encoded UTF-8).
    caller = {"X-CRM-API-Key-Id": "k-1", "X-CRM-API-Key-Name": quote("کمپین‌ها"), "X-Request-ID": "r-9"}
    assert len(await export(seg, segment_id, "csv", "email", headers=caller)) == 5
    pages = [e for e in await audit_entries(seg) if e["action"] == "segments.export"]
    assert [len(e["customer_ids"]) for e in pages] == [2, 2, 1]
    assert sorted(cid for e in pages for cid in e["customer_ids"]) == ids
    assert {(e["key_id"], e["key_name"], e["request_id"], e["resource"]) for e in pages} == {
        ("k-1", "کمپین‌ها", "r-9", f"segment:{segment_id}")}
    assert pages[0]["detail"] == {"channel": "email", "format": "csv"}
