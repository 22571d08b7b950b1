"""The gateway forwards /v1 paths to the owning service and answers for it when it is down."""
from __future__ import annotations

from gateway.routes import route_for, service_for
from tests.gateway.conftest import auth, start_gateway


def test_route_table_picks_the_owning_service():
    assert service_for("/v1/contacts") == "contacts"
    assert service_for("/v1/contacts/abc/merge") == "contacts"
    assert service_for("/v1/contactsX") is None
    assert service_for("/v1/segments/1/members") == "segmentation"
    assert service_for("/v1/customers/c-1/timeline") == "interactions"
    assert service_for("/v1/customers/c-1/segments") == "segmentation"
    assert service_for("/v1/customers/c-1") is None  # the 360 view belongs to the gateway itself
    assert service_for("/v1/customers") is None


def test_route_table_declares_the_scope_per_method():
    assert route_for("/v1/contacts/x").scope_for("GET") == "contacts:read"
    assert route_for("/v1/contacts/x").scope_for("PATCH") == "contacts:write"
    assert route_for("/v1/contacts/x/erase").scope_for("POST") == "contacts:admin"
    assert route_for("/v1/orders").scope_for("POST") == "orders:write"
    assert route_for("/v1/orders").scope_for("HEAD") == "orders:read"
    assert route_for("/v1/customers/c/timeline").scope_for("GET") == "interactions:read"
    assert route_for("/v1/profiles/c").scope_for("GET") == "segments:read"
    assert route_for("/v1/segments").scope_for("POST") == "segments:admin"
    assert route_for("/v1/segments/s/members").scope_for("DELETE") == "segments:admin"
    assert route_for("/v1/segments/preview").scope_for("POST") == "segments:read"


async def test_forwards_to_contacts_with_request_id(contacts, tmp_path):
    async with start_gateway(tmp_path, {"contacts": contacts.app}) as gw:
        headers = auth(await gw.key("frontend", "contacts:read", "contacts:write"))
        created = await gw.client.post("/v1/contacts", json={"given_name": "Ali"},
                                       headers={**headers, "X-Request-ID": "r-1"})
        assert created.status_code == 201 and created.headers.get_list("x-request-id") == ["r-1"]
        fetched = await gw.client.get(f"/v1/contacts/{created.json()['id']}", headers=headers)
        assert fetched.json()["given_name"] == "Ali"
        assert len(fetched.headers.get_list("x-request-id")) == 1
        bad = await gw.client.post("/v1/contacts", json={"emails": ["nope"]}, headers=headers)
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        # The service got the request id but never the caller's secret.
        sent = gw.transport.requests[0]
        assert sent.headers["x-request-id"] == "r-1" and "authorization" not in sent.headers
        assert sent.headers["x-crm-api-key-name"] == "frontend"


async def test_service_down_is_503_naming_it_and_unknown_path_404(tmp_path):
    async with start_gateway(tmp_path, {}) as gw:  # no service answers
        headers = auth(await gw.key("ops", "admin"))
        down = await gw.client.get("/v1/orders", headers=headers)
        assert down.status_code == 503
        assert down.json()["service"] == "orders" and down.headers["content-type"] == "application/problem+json"
        assert "orders" in down.json()["detail"]
        missing = await gw.client.get("/v1/nothing", headers=headers)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_each_service_gets_a_connection_pool_of_its_own(monkeypatch):
    """httpx checks every connection of a pool on each request: one pool per service keeps the
    idle connections of the others out of that (bench/bench_gateway.py measured a quarter of the
    gateway's CPU there)."""
    from gateway.app import service_pools
    from gateway.routes import upstreams

    monkeypatch.setenv("ORDERS_URL", "http://orders.internal:9002/")
    pools = service_pools(upstreams(), transport=None)
    assert set(pools) == {"http://contacts.internal:8001", "http://orders.internal:9002",
                          "http://interactions.internal:8003", "http://segmentation.internal:8004"}
    assert len({id(pool) for pool in pools.values()}) == 4
