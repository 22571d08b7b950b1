"""`/v1/webhooks`: subscriptions made, read, changed and deleted through the gateway, with their
scopes and the refusals of bad input (nothing written when refused)."""
from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from gateway.webhook_targets import TargetRefused, check_resolved, check_url
from tests.gateway.conftest import auth, start_gateway

PROBLEM = "application/problem+json"


async def make(gw, **body):
    body = {"url": "https://hooks.example.com/crm", "event_types": ["crm.contact.*"], **body}
    response = await gw.client.post("/v1/webhooks", json=body, headers=gw.admin)
    assert response.status_code == 201, response.text
    return response.json()


async def test_the_secret_is_shown_once_and_the_subscription_reads_back(gateway):
    created = await make(gateway, event_types=["crm.contact.*", "crm.order.created.v1"], description="مشتری‌ها")
    assert created["secret"].startswith("whsec_") and created["status"] == "enabled"
    read = await gateway.client.get(f"/v1/webhooks/{created['id']}", headers=gateway.admin)
    assert read.status_code == 200
    assert "secret" not in read.json()
    assert read.json() == {k: v for k, v in created.items() if k != "secret"}
    assert read.json()["description"] == "مشتری‌ها"


async def test_list_paginates_change_and_delete(gateway):
    ids = [(await make(gateway))["id"] for _ in range(3)]
    first = (await gateway.client.get("/v1/webhooks", params={"limit": 2}, headers=gateway.admin)).json()
    second = (await gateway.client.get("/v1/webhooks", params={"limit": 2, "cursor": first["next_cursor"]},
                                       headers=gateway.admin)).json()
    assert [w["id"] for w in first["items"] + second["items"]] == ids and second["next_cursor"] is None

    changed = await gateway.client.patch(f"/v1/webhooks/{ids[0]}", headers=gateway.admin,
                                         json={"event_types": ["*"], "status": "disabled"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["*"] and changed.json()["status"] == "disabled"
    assert changed.json()["disabled_reason"] == "disabled by ops"
    resumed = await gateway.client.patch(f"/v1/webhooks/{ids[0]}", headers=gateway.admin, json={"status": "enabled"})
    assert resumed.json()["status"] == "enabled" and resumed.json()["disabled_reason"] is None

    assert (await gateway.client.delete(f"/v1/webhooks/{ids[0]}", headers=gateway.admin)).status_code == 204
    gone = await gateway.client.get(f"/v1/webhooks/{ids[0]}", headers=gateway.admin)
    assert gone.status_code == 404 and gone.headers["content-type"] == PROBLEM
    assert (await gateway.client.delete(f"/v1/webhooks/{ids[0]}", headers=gateway.admin)).status_code == 404
    log = await gateway.client.get(f"/v1/webhooks/{ids[0]}/deliveries", headers=gateway.admin)
    assert log.status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"url": "ftp://hooks.example.com/x"}, "url"),
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "https://user:pw@hooks.example.com/"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"event_types": []}, "event_types"),
    ({"event_types": ["contact.updated"]}, "event_types"),
    ({"customer_id": "not-a-uuid"}, "customer_id"),
    ({"customer_id": "5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d10", "segment_id": "5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d11"},
     "segment_id"),
    ({"secret": "whsec_mine"}, "secret"),
])
async def test_bad_input_is_refused_and_nothing_is_written(gateway, body, field):
    full = {"url": "https://hooks.example.com/crm", "event_types": ["*"], **body}
    response = await gateway.client.post("/v1/webhooks", json=full, headers=gateway.admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()
    listed = await gateway.client.get("/v1/webhooks", headers=gateway.admin)
    assert listed.json()["items"] == []


async def test_private_targets_are_refused_unless_allowed(tmp_path, gateway_db):
    async with start_gateway(tmp_path, {}, database_url=gateway_db, webhooks_allow_private_targets=False) as gw:
        admin = auth(await gw.key("ops", "webhooks:admin"))
        for url in ("http://localhost:8001/v1/contacts", "http://127.0.0.1/", "http://10.0.0.7/hook",
                    "http://169.254.169.254/latest/meta-data", "http://[::1]:8000/"):
            response = await gw.client.post("/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=admin)
            assert response.status_code == 422, url
            assert "private" in response.json()["detail"] or "this machine" in response.json()["detail"]
        made = await gw.client.post("/v1/webhooks", json={"url": "https://hooks.example.com/", "event_types": ["*"]},
                                    headers=admin)
        assert made.status_code == 201
        moved = await gw.client.patch(f"/v1/webhooks/{made.json()['id']}", json={"url": "http://127.0.0.1:9/"},
                                      headers=admin)
        assert moved.status_code == 422


async def test_a_name_resolving_to_a_private_address_is_refused_at_delivery():
    with pytest.raises(TargetRefused, match="private"):
        await check_resolved("http://localhost:8000/", allow_private=False)  # a name, looked up
    await check_resolved("http://localhost:8000/", allow_private=True)
    assert check_url(" https://hooks.example.com/a ", allow_private=False) == "https://hooks.example.com/a"


async def test_slow_name_lookups_of_subscribers_leave_the_event_loops_resolver_free(monkeypatch):
    """Deliveries to names whose name server does not answer must not hold the threads the event
    loop resolves with: the gateway's connections to the services wait on those."""
    real_lookup, release = socket.getaddrinfo, threading.Event()

    def lookup(host, *args, **kwargs):
        if host == "slow.example":
            release.wait(10)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    slow = [asyncio.ensure_future(check_resolved("https://slow.example/", allow_private=allow))
            for allow in (False, True) for _ in range(20)]
    try:
        await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo("127.0.0.1", 80), timeout=2)
    finally:
        release.set()
        outcomes = await asyncio.gather(*slow, return_exceptions=True)
    assert all(isinstance(outcome, TargetRefused) and "does not resolve" in str(outcome) for outcome in outcomes)


async def test_scopes(gateway):
    reader = auth(await gateway.key("reader", "webhooks:read"))
    frontend = auth(await gateway.key("frontend", "contacts:write", "contacts:read"))
    body = {"url": "https://hooks.example.com/", "event_types": ["*"]}
    assert (await gateway.client.post("/v1/webhooks", json=body, headers=reader)).status_code == 403
    assert (await gateway.client.get("/v1/webhooks", headers=frontend)).status_code == 403
    assert (await gateway.client.get("/v1/webhooks", headers=reader)).status_code == 200
    assert (await gateway.client.get("/v1/webhooks")).status_code == 401


async def test_openapi_documents_the_operations(gateway):
    document = gateway.client.app.openapi()
    operations = {op["operationId"]: op for path, item in document["paths"].items() if path.startswith("/v1/webhooks")
                  for op in item.values()}
    assert set(operations) == {"gateway.create_webhook", "gateway.list_webhooks", "gateway.get_webhook",
                               "gateway.update_webhook", "gateway.delete_webhook", "gateway.list_webhook_deliveries"}
    assert "application/problem+json" in operations["gateway.create_webhook"]["responses"]["422"]["content"]


async def test_patch_refuses_null_for_what_a_subscription_always_has(gateway):
    made = await make(gateway)
    for body in ({"url": None}, {"event_types": None}, {"status": None}, {"description": None},
                 {"customer_id": "5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d10", "segment_id": "5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d11"}):
        response = await gateway.client.patch(f"/v1/webhooks/{made['id']}", json=body, headers=gateway.admin)
        assert response.status_code == 422, (body, response.text)
    cleared = await gateway.client.patch(f"/v1/webhooks/{made['id']}", headers=gateway.admin,
                                         json={"customer_id": "5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d10"})
    assert cleared.json()["customer_id"] == "5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d10"
    cleared = await gateway.client.patch(f"/v1/webhooks/{made['id']}", json={"customer_id": None},
                                         headers=gateway.admin)
    assert cleared.status_code == 200 and cleared.json()["customer_id"] is None
    assert (await gateway.client.get(f"/v1/webhooks/{made['id']}", headers=gateway.admin)).json() == cleared.json()
