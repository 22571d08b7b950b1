"""API keys, scopes, rate limits, body limits and CORS at the gateway: each refusal is problem+json."""
from __future__ import annotations

import pytest

from gateway import api_keys
from gateway.app import create_app
from gateway.keys import main as keys_cli
from gateway.rate_limit import RateLimiter
from gateway.scopes import UnknownScope, grants, normalize_scopes
from gateway.settings import GatewaySettings
from services.common.settings import InsecureSettings
from tests.conftest import service_settings
from tests.gateway.conftest import auth, gateway_settings, start_gateway

PROBLEM = "application/problem+json"


def test_scopes_admin_grants_within_a_resource_but_write_does_not_grant_read():
    assert grants({"admin"}, "segments:admin")
    assert grants({"segments:admin"}, "segments:read") and grants({"segments:admin"}, "segments:write")
    assert not grants({"orders:write"}, "orders:read")
    assert not grants({"orders:write"}, "contacts:read")
    assert not grants({"contacts:admin"}, "admin")


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=2, clock=lambda: now[0])
    assert limiter.acquire("k") == 0 and limiter.acquire("k") == 0
    assert limiter.acquire("k") == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.acquire("k") == 0
    assert limiter.acquire("other") == 0  # buckets are per key


async def test_no_key_bad_key_and_revoked_key_are_401(contacts, tmp_path):
    async with start_gateway(tmp_path, {"contacts": contacts.app}) as gw:
        none = await gw.client.get("/v1/contacts")
        assert none.status_code == 401 and none.headers["content-type"] == PROBLEM
        assert none.headers["www-authenticate"].startswith("Bearer")
        wrong = await gw.client.get("/v1/contacts", headers=auth("crm_abcdef12_" + "x" * 43))
        assert wrong.status_code == 401
        malformed = await gw.client.get("/v1/contacts", headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert malformed.status_code == 401

        secret = await gw.key("frontend", "contacts:read")
        assert (await gw.client.get("/v1/contacts", headers={"X-API-Key": secret})).status_code == 200
        # A guessed secret with a real prefix is still refused.
        forged = secret[: secret.rindex("_") + 1] + "y" * 43
        assert (await gw.client.get("/v1/contacts", headers=auth(forged))).status_code == 401

        admin = auth(await gw.key("ops", "admin"))
        key_id = next(k["id"] for k in (await gw.client.get("/v1/admin/api-keys", headers=admin)).json()
                      if k["name"] == "frontend")
        assert (await gw.client.delete(f"/v1/admin/api-keys/{key_id}", headers=admin)).status_code == 204
        revoked = await gw.client.get("/v1/contacts", headers=auth(secret))
        assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


async def test_an_orders_write_key_posts_orders_and_nothing_else(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        shop = auth(await gw.key("shop", "orders:write"))
        order = {"platform": "shop", "external_id": "o-1", "currency": "IRR", "total": "1000",
                 "lines": [{"sku": "a", "name": "A", "quantity": 1, "unit_price": "1000"}],
                 "placed_at": "2026-01-01T10:00:00Z"}
        posted = await gw.client.post("/v1/orders", json=order, headers=shop)
        assert posted.status_code in (200, 201), posted.text
        for method, path in [("GET", "/v1/contacts"), ("GET", "/v1/orders"), ("POST", "/v1/contacts"),
                             ("GET", "/v1/admin/api-keys"), ("GET", "/v1/customers/x")]:
            refused = await gw.client.request(method, path, headers=shop, json={} if method == "POST" else None)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.headers["content-type"] == PROBLEM and refused.json()["required_scope"]


async def test_over_the_rate_limit_is_429_with_retry_after(contacts, tmp_path):
    async with start_gateway(tmp_path, {"contacts": contacts.app}, rate_per_second=0.5, rate_burst=3) as gw:
        headers = auth(await gw.key("frontend", "contacts:read"))
        statuses = [(await gw.client.get("/v1/contacts", headers=headers)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = await gw.client.get("/v1/contacts", headers=headers)
        assert limited.status_code == 429 and limited.headers["content-type"] == PROBLEM
        assert int(limited.headers["retry-after"]) == 2
        # A key's own record overrides the default limits.
        generous = auth(await gw.key("batch", "contacts:read", rate_per_second=1000, rate_burst=10))
        assert all([(await gw.client.get("/v1/contacts", headers=generous)).status_code == 200
                    for _ in range(8)])


async def test_oversized_body_is_413_before_any_service_sees_it(contacts, tmp_path):
    async with start_gateway(tmp_path, {"contacts": contacts.app}, max_body_bytes=2048) as gw:
        headers = auth(await gw.key("frontend", "contacts:write"))
        too_big = await gw.client.post("/v1/contacts", content=b"{" + b" " * 4096 + b"}",
                                       headers={**headers, "content-type": "application/json"})
        assert too_big.status_code == 413 and too_big.headers["content-type"] == PROBLEM
        assert gw.transport.requests == []


async def test_admin_endpoints_create_list_and_revoke_keys(tmp_path):
    async with start_gateway(tmp_path, {}) as gw:
        admin = auth(await gw.key("ops", "admin"))
        created = await gw.client.post("/v1/admin/api-keys", json={"name": "shop", "scopes": ["orders:write"]},
                                       headers=admin)
        assert created.status_code == 201 and created.json()["key"].startswith("crm_")
        bad = await gw.client.post("/v1/admin/api-keys", json={"name": "x", "scopes": ["orders:fly"]}, headers=admin)
        assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
        listed = (await gw.client.get("/v1/admin/api-keys", headers=admin)).json()
        assert {k["name"] for k in listed} == {"ops", "shop"}
        assert all("key" not in k and "secret_hash" not in k for k in listed)
        assert (await gw.client.delete("/v1/admin/api-keys/00000000-0000-4000-8000-000000000000", headers=admin)).status_code == 404
        records = await api_keys.list_keys(engine=gw.ctx.engine)
        assert all(created.json()["key"] not in (r.secret_hash, r.prefix) for r in records)


async def test_auth_off_lets_requests_through_in_development_only(contacts, tmp_path):
    async with start_gateway(tmp_path, {"contacts": contacts.app}, auth=False, environment="development") as gw:
        assert (await gw.client.get("/v1/contacts")).status_code == 200
    with pytest.raises(InsecureSettings, match="GATEWAY_AUTH=off"):
        create_app(gateway_settings(tmp_path, auth=False))


async def test_cors_answers_preflight_for_allowed_origins(tmp_path):
    async with start_gateway(tmp_path, {}, cors_origins="https://app.example, https://admin.example") as gw:
        preflight = await gw.client.options("/v1/contacts", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        refused = await gw.client.get("/v1/contacts", headers={"Origin": "https://app.example"})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "https://app.example"
        other = await gw.client.options("/v1/contacts", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in other.headers


def test_cli_creates_lists_and_revokes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GATEWAY_DATABASE_URL", gateway_settings(tmp_path).database_url)
    assert keys_cli(["create", "--name", "shop", "--scopes", "orders:write"]) == 0
    out = capsys.readouterr().out
    secret = next(line.split()[-1] for line in out.splitlines() if "crm_" in line)
    assert api_keys.parse_key(secret)
    assert keys_cli(["list"]) == 0
    listing = capsys.readouterr().out
    assert "shop" in listing and secret not in listing
    key_id = listing.splitlines()[1].split()[0]
    assert keys_cli(["revoke", key_id]) == 0
    assert "revoked" in capsys.readouterr().out
    assert keys_cli(["create", "--name", "x", "--scopes", "orders:fly"]) == 2
    with pytest.raises(UnknownScope):
        normalize_scopes(["nope"])


def test_settings_parse_auth_off_origins_and_the_environment(monkeypatch):
    monkeypatch.setenv("GATEWAY_AUTH", "off")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "https://a.example,https://b.example")
    settings = GatewaySettings()
    assert settings.auth is False and settings.cors_origin_list == ["https://a.example", "https://b.example"]
    assert settings.environment == "production"  # unless said otherwise
    monkeypatch.setenv("CRM_ENVIRONMENT", "development")
    assert GatewaySettings().environment == "development"


@pytest.mark.parametrize("token", ["", "CHANGE_ME", "short-token", "x" * 40, "change-me-to-a-long-random-value"])
def test_the_gateway_refuses_an_empty_or_placeholder_token(tmp_path, token):
    with pytest.raises(InsecureSettings, match="GATEWAY_TOKEN"):
        create_app(gateway_settings(tmp_path, token=token))


def test_development_accepts_a_placeholder_token_but_never_an_empty_one(tmp_path):
    create_app(gateway_settings(tmp_path, token="CHANGE_ME", environment="development"))
    with pytest.raises(InsecureSettings, match="not set"):
        create_app(gateway_settings(tmp_path, token="", environment="development"))


@pytest.mark.parametrize("token", ["", "CHANGE_ME"])
def test_a_service_refuses_to_start_without_a_real_gateway_token(contacts_db, token):
    from services.contacts.app import create_app as create_contacts_app

    with pytest.raises(InsecureSettings, match="GATEWAY_TOKEN"):
        create_contacts_app(service_settings("contacts", contacts_db, gateway_token=token))
