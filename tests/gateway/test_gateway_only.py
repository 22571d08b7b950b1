"""Services started with GATEWAY_TOKEN answer only the gateway, which presents it."""
from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import auth, service_app, start_gateway

TOKEN = "s3cret-shared-with-the-gateway"


@pytest.mark.asyncio
async def test_a_service_refuses_requests_that_skip_the_gateway(database_factory, tmp_path):
    async with service_app("contacts", database_factory, gateway_token=TOKEN) as contacts:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=contacts), base_url="http://c") as direct:
            refused = await direct.post("/v1/contacts", json={"given_name": "Sara"})
            assert refused.status_code == 403
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"].endswith("/gateway-only")
            wrong = await direct.get("/v1/contacts", headers={"X-Gateway-Token": "guess"})
            assert wrong.status_code == 403
            # Probes and Prometheus reach the service itself.
            assert (await direct.get("/healthz")).status_code == 200
            assert (await direct.get("/metrics")).status_code == 200
            assert (await direct.get("/v1/contacts")).status_code == 403  # nothing was written
        async with start_gateway(tmp_path, {"contacts": contacts}, token=TOKEN) as gateway:
            admin = await gateway.key("admin", "admin")
            created = await gateway.client.post("/v1/contacts", json={"given_name": "Sara"}, headers=auth(admin))
            assert created.status_code == 201, created.text
            listed = await gateway.client.get("/v1/contacts", headers=auth(admin))
            assert [c["id"] for c in listed.json()["items"]] == [created.json()["id"]]


@pytest.mark.asyncio
async def test_the_gateway_never_passes_on_a_token_a_caller_sent(database_factory, tmp_path):
    async with service_app("contacts", database_factory, gateway_token=TOKEN) as contacts:
        async with start_gateway(tmp_path, {"contacts": contacts}, token=TOKEN) as gateway:
            admin = await gateway.key("admin", "admin")
            await gateway.client.get("/v1/contacts", headers={**auth(admin), "X-Gateway-Token": "forged"})
            sent = gateway.transport.requests[-1]
            assert sent.headers.get_list("x-gateway-token") == [TOKEN]
