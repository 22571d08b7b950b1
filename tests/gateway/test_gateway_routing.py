"""The gateway forwards /v1 paths to the owning service and answers for it when it is down."""
from __future__ import annotations

import httpx

from gateway.app import create_app
from gateway.routes import service_for
from tests.conftest import _free_port, running_app


def test_route_table_picks_the_owning_service():
    assert service_for("/v1/contacts") == "contacts"
    assert service_for("/v1/contacts/abc/merge") == "contacts"
    assert service_for("/v1/contactsX") is None
    assert service_for("/v1/segments/1/members") == "segmentation"
    assert service_for("/v1/customers/c-1/timeline") == "interactions"
    assert service_for("/v1/customers/c-1/segments") == "segmentation"
    assert service_for("/v1/customers/c-1") is None  # the 360 view belongs to the gateway itself
    assert service_for("/v1/customers") is None


async def test_forwards_to_contacts_with_request_id(contacts):
    contacts_transport = httpx.ASGITransport(app=contacts.app)
    async with running_app(create_app(transport=contacts_transport)) as gateway:
        created = await gateway.post("/v1/contacts", json={"given_name": "Ali"}, headers={"X-Request-ID": "r-1"})
        assert created.status_code == 201 and created.headers["x-request-id"] == "r-1"
        fetched = await gateway.get(f"/v1/contacts/{created.json()['id']}")
        assert fetched.json()["given_name"] == "Ali"
        bad = await gateway.post("/v1/contacts", json={"emails": ["nope"]})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


async def test_service_down_is_503_naming_it_and_unknown_path_404(monkeypatch):
    monkeypatch.setenv("ORDERS_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    async with running_app(create_app()) as gateway:
        down = await gateway.get("/v1/orders")
        assert down.status_code == 503
        assert down.json()["service"] == "orders" and down.headers["content-type"] == "application/problem+json"
        missing = await gateway.get("/v1/nothing")
        assert missing.status_code == 404
