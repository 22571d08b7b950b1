"""Bad input of every kind: a 4xx problem+json naming the field and nothing written; in a
batch, the bad items reported and the good ones stored; a retried batch stores nothing twice."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from sqlalchemy import func, select

from services.interactions.models import InteractionRow, kernel
from services.interactions.schemas import MAX_BATCH_ITEMS
from tests.interactions.conftest import PROBLEM, problem

VISIT = {"customer": {"visitor_id": "v-1"}, "type": "page_view", "channel": "web"}


def future(minutes: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()


async def counts(client) -> tuple[int, int]:
    async with client.app.state.ctx.session_factory() as session:
        rows = (await session.execute(select(func.count()).select_from(InteractionRow))).scalar()
        events = (await session.execute(select(func.count()).select_from(kernel.outbox)
                                        .where(kernel.outbox.c.topic == client.app.state.ctx.topic))).scalar()
    return rows, events


@pytest.mark.parametrize("change, field", [
    ({"type": "telepathy"}, "type"),
    ({"channel": "fax"}, "channel"),
    ({"direction": "sideways"}, "direction"),
    ({"type": "survey_response", "rating": 9}, "rating"),
    ({"type": "survey_response", "rating": 0}, "rating"),
    ({"type": "survey_response", "nps": 11}, "nps"),
    ({"type": "survey_response", "nps": -3}, "nps"),
    # Times made when the test runs, not when it is collected: a long run would bring "10 minutes
    # ahead" within the allowed clock skew before the test got to it.
    ({"occurred_at": lambda: future(60 * 24 * 365 * 10)}, "occurred_at"),
    ({"occurred_at": lambda: future(10)}, "occurred_at"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"type": "feedback", "kind": "rant"}, "kind"),
    ({"type": "feedback"}, "kind"),
    ({"customer": {"email": "no-at-sign"}}, "customer.email"),
    ({"customer": {}}, "customer"),
    ({"metadata": {"list": [1, 2]}}, "metadata.list"),
    ({"subject": "x" * 501}, "subject"),
    ({"visitor": "v-1"}, "visitor"),
])
async def test_invalid_interaction_is_422_naming_the_field_and_writes_nothing(interactions, change, field):
    change = {name: value() if callable(value) else value for name, value in change.items()}
    response = await interactions.post("/v1/interactions", json={**VISIT, **change})
    body = problem(response, 422)
    assert body["title"] and body["detail"]
    assert any(e["field"] == field or e["field"].startswith(field + ".") for e in body["errors"]), body
    assert await counts(interactions) == (0, 0)


async def test_malformed_json_is_400(interactions):
    response = await interactions.post("/v1/interactions", content=b'{"type": ', headers={"content-type": "application/json"})
    assert problem(response, 400)["title"] == "Malformed JSON"
    assert await counts(interactions) == (0, 0)


async def test_oversized_body_is_413_and_writes_nothing(interactions):
    limit = interactions.app.state.ctx.settings.max_body_bytes
    body = b'{"items": [' + b",".join([orjson.dumps({**VISIT, "body": "x" * 1000})] * (limit // 1000)) + b"]}"
    assert len(body) > limit
    response = await interactions.post("/v1/interactions/batch", content=body,
                                       headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.headers["content-type"] == PROBLEM
    assert await counts(interactions) == (0, 0)


async def test_batch_over_the_item_limit_is_422_naming_items(interactions):
    response = await interactions.post("/v1/interactions/batch", json={"items": [VISIT] * (MAX_BATCH_ITEMS + 1)})
    body = problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["items"]
    assert await counts(interactions) == (0, 0)
    problem(await interactions.post("/v1/interactions/batch", json={"items": []}), 422)


async def test_batch_reports_bad_items_and_stores_good_ones(interactions):
    items = [
        VISIT,
        {**VISIT, "type": "telepathy"},
        {**VISIT, "type": "survey_response", "rating": 7},
        {**VISIT, "occurred_at": future(60 * 24)},
        "not an object",
        {**VISIT, "customer": {"visitor_id": "v-2"}, "type": "survey_response", "nps": 9, "rating": 5},
    ]
    response = await interactions.post("/v1/interactions/batch", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["counts"] == {"recorded": 2, "error": 4}
    assert [r["status"] for r in body["results"]] == ["recorded", "error", "error", "error", "error", "recorded"]
    assert [r["index"] for r in body["results"]] == list(range(6))
    fields = [[e["field"] for e in r["error"]["errors"]] for r in body["results"] if r["status"] == "error"]
    assert fields == [["type"], ["rating"], ["occurred_at"], ["item"]]
    assert all(r["error"]["status"] == 422 for r in body["results"] if r["error"])
    assert await counts(interactions) == (2, 2)
    for result in body["results"]:
        if result["status"] == "recorded":
            assert (await interactions.get(f"/v1/interactions/{result['id']}")).status_code == 200


async def test_retried_batch_with_the_same_key_stores_nothing_twice(interactions):
    items = [{**VISIT, "customer": {"visitor_id": f"v-{n}"}} for n in range(50)] + [{**VISIT, "channel": "fax"}]
    headers = {"Idempotency-Key": "batch-2026-03-01-0001"}
    first = await interactions.post("/v1/interactions/batch", json={"items": items}, headers=headers)
    retried = await interactions.post("/v1/interactions/batch", json={"items": items}, headers=headers)
    assert first.status_code == retried.status_code == 200
    assert retried.json() == first.json() and retried.headers["idempotent-replayed"] == "true"
    assert await counts(interactions) == (50, 50)
    changed = await interactions.post("/v1/interactions/batch", json={"items": items[:10]}, headers=headers)
    problem(changed, 422)
    assert await counts(interactions) == (50, 50)


async def test_a_full_batch_of_ten_thousand_fits_the_body_limit(interactions):
    """10,000 realistic tracking items (a page view with url and a few metadata values) stay
    well under the 10 MiB body limit and are stored in one request."""
    items = [{"customer": {"visitor_id": f"3f9c2a7e-5b1d-4e8a-9c0f-{n:012d}"}, "type": "page_view", "channel": "web",
              "occurred_at": "2026-03-01T10:15:30.123Z", "url": f"https://shop.example.com/products/item-{n}?ref=home",
              "metadata": {"referrer": "https://www.google.com/", "device": "mobile", "session": f"s-{n // 20}"}}
             for n in range(MAX_BATCH_ITEMS)]
    body = orjson.dumps({"items": items})
    assert len(body) < interactions.app.state.ctx.settings.max_body_bytes / 3
    response = await interactions.post("/v1/interactions/batch", content=body,
                                       headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text[:500]
    assert response.json()["counts"] == {"recorded": MAX_BATCH_ITEMS, "error": 0}
    assert await counts(interactions) == (MAX_BATCH_ITEMS, MAX_BATCH_ITEMS)


async def test_patching_a_fact_keeps_the_problem_type(interactions):
    call = (await interactions.post("/v1/interactions", json={
        "customer": {"id": "5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d10"}, "type": "call", "channel": "phone",
        "direction": "inbound", "occurred_at": "2026-01-02T10:00:00Z"})).json()
    response = await interactions.patch(f"/v1/interactions/{call['id']}", json={"status": "closed"})
    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == "https://crm.example/problems/conflict" and problem["interaction_type"] == "call"
    assert problem["instance"] == f"/v1/interactions/{call['id']}"
