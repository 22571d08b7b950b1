"""Every process serves /healthz, /readyz and /metrics, and tags each request with an id."""
from __future__ import annotations

import json
import logging

from services.common.observability import JsonLogFormatter
from tests.conftest import running_app, service_settings


async def test_health_ready_and_metrics(contacts):
    assert (await contacts.get("/healthz")).json() == {"status": "ok"}
    ready = await contacts.get("/readyz")  # the test app's broker address answers nothing
    assert ready.status_code == 503 and ready.json()["checks"] == {"database": "ok", "broker": "unreachable"}
    await contacts.post("/v1/contacts", json={"given_name": "a"})
    metrics = (await contacts.get("/metrics")).text
    assert 'crm_http_requests_total{method="POST",route="/v1/contacts",status="201"} 1.0' in metrics
    assert "crm_outbox_pending_events" in metrics


async def test_ready_when_broker_answers(contacts_db, broker):
    from services.contacts.app import create_app

    async with running_app(create_app(service_settings("contacts", contacts_db, broker["bootstrap"]))) as client:
        assert (await client.get("/readyz")).json()["status"] == "ready"


async def test_request_id_is_kept_or_made(contacts):
    given = await contacts.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert given.headers["x-request-id"] == "req-123"
    made = await contacts.get("/healthz")
    assert len(made.headers["x-request-id"]) == 36


async def test_access_log_is_one_json_line_with_request_id(contacts_db, caplog):
    from services.contacts.app import create_app

    caplog.set_level(logging.INFO, logger="crm.access")
    app = create_app(service_settings("contacts", contacts_db, log_requests=True))
    async with running_app(app) as client:
        await client.get("/v1/contacts/nope", headers={"X-Request-ID": "abc-1"})
    formatter = JsonLogFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "crm.access"]
    assert any(entry["request_id"] == "abc-1" and entry["status"] == 404 and entry["path"] == "/v1/contacts/nope"
               for entry in lines), lines
