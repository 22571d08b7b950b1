"""Every process serves /healthz, /readyz and /metrics, tags each request with an id, and logs
one JSON object per line."""
from __future__ import annotations

import json
import logging
import re
import time

import httpx

from deploy.local_system import free_port
from deploy.run_local import PROCESSES, child_env, start_app
from deploy.startup_wait import wait_until_healthy
from services.common.observability import JsonLogFormatter
from tests.conftest import running_app, service_settings

RFC3339_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


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
        await client.get("/v1/contacts/00000000-0000-4000-8000-000000000000", headers={"X-Request-ID": "abc-1"})
    formatter = JsonLogFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "crm.access"]
    assert any(entry["request_id"] == "abc-1" and entry["status"] == 404 and entry["path"] == "/v1/contacts/00000000-0000-4000-8000-000000000000"
               for entry in lines), lines


def test_every_line_a_process_logs_is_json_with_a_utc_millisecond_time(tmp_path):
    """The gateway as uvicorn runs it: uvicorn's own start-up and shutdown lines included."""
    env = child_env() | {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"}
    port, log = free_port(), tmp_path / "gateway.log"
    gateway = next(process for process in PROCESSES if process.name == "gateway")
    process = start_app(gateway, env, port=port, log_path=log)
    try:
        wait_until_healthy({"gateway": process}, {"gateway": port}, timeout=60)
        with httpx.Client(trust_env=False) as client:
            client.get(f"http://127.0.0.1:{port}/v1/nothing-here", headers={"X-Request-ID": "log-check"})
    finally:
        process.terminate()
        process.wait(timeout=15)
    entries = [json.loads(line) for line in log.read_text().splitlines()]  # each line alone is one object
    assert all(RFC3339_UTC_MS.fullmatch(entry["time"]) for entry in entries), entries
    messages = {(entry["logger"], entry["message"].split(" [")[0]) for entry in entries}
    assert {("uvicorn.error", "Application startup complete."), ("uvicorn.error", "Finished server process"),
            ("crm.access", "request")} <= messages, messages
    assert any(entry.get("request_id") == "log-check" for entry in entries)


def test_log_times_are_rfc3339_utc_with_milliseconds(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tehran")  # a machine on local time still logs UTC
    time.tzset()
    try:
        record = logging.LogRecord("crm.test", logging.INFO, __file__, 1, "hello", None, None)
        record.created = 1_795_000_000.0429
        entry = json.loads(JsonLogFormatter().format(record))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert entry["time"] == "2026-11-18T11:06:40.042Z" and entry["message"] == "hello"
