"""The gateway's own answers: the customer 360 view, the merged API documents, health and metrics."""
from __future__ import annotations

from tests.gateway.conftest import auth, netloc, start_gateway

FRONTEND = ("contacts:read", "contacts:write", "orders:read", "interactions:read", "interactions:write",
            "segments:read")


async def _customer(gw, headers) -> str:
    created = await gw.client.post("/v1/contacts", json={"given_name": "Sara", "emails": ["sara@example.com"]},
                                   headers=headers)
    assert created.status_code == 201, created.text
    customer_id = created.json()["id"]
    recorded = await gw.client.post("/v1/interactions", headers=headers, json={
        "customer": {"id": customer_id}, "type": "call", "channel": "phone", "direction": "inbound",
        "occurred_at": "2026-01-02T10:00:00Z", "subject": "hello"})
    assert recorded.status_code == 201, recorded.text
    return customer_id


async def test_customer_360_gathers_every_part(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        headers = auth(await gw.key("frontend", *FRONTEND))
        customer_id = await _customer(gw, headers)
        view = await gw.client.get(f"/v1/customers/{customer_id}", headers=headers)
        assert view.status_code == 200, view.text
        body = view.json()
        assert body["id"] == customer_id and body["contact"]["given_name"] == "Sara"
        assert body["orders"]["items"] == []
        assert [i["subject"] for i in body["timeline"]["items"]] == ["hello"]
        assert isinstance(body["segments"], list)
        assert "profile" in body and body["unavailable"] == [] and body["complete"] is True
        assert (await gw.client.get("/v1/customers/00000000-0000-0000-0000-000000000000",
                                    headers=headers)).status_code == 404


async def test_customer_360_with_a_service_down_returns_the_rest_marked(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        headers = auth(await gw.key("frontend", *FRONTEND))
        customer_id = await _customer(gw, headers)
        gw.transport.down(netloc("orders"))
        body = (await gw.client.get(f"/v1/customers/{customer_id}", headers=headers)).json()
        assert body["orders"] == {"unavailable": "orders service not reachable"}
        assert body["contact"]["id"] == customer_id and body["timeline"]["items"]
        assert body["unavailable"] == ["orders"] and body["complete"] is False
        gw.transport.down(netloc("contacts"))
        no_contacts = await gw.client.get(f"/v1/customers/{customer_id}", headers=headers)
        assert no_contacts.status_code == 503 and no_contacts.json()["service"] == "contacts"


async def test_customer_360_omits_parts_the_key_may_not_read(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        writer = auth(await gw.key("frontend", *FRONTEND))
        customer_id = await _customer(gw, writer)
        support = auth(await gw.key("support", "contacts:read", "interactions:read"))
        body = (await gw.client.get(f"/v1/customers/{customer_id}", headers=support)).json()
        assert body["orders"] == {"omitted": "requires orders:read"}
        assert body["timeline"]["items"] and body["complete"] is False


async def test_merged_openapi_has_every_running_service_and_names_the_missing(all_services, tmp_path):
    running = {name: app for name, app in all_services.items() if name != "interactions"}
    async with start_gateway(tmp_path, running) as gw:
        document = (await gw.client.get("/openapi.json")).json()  # no key needed
        paths = document["paths"]
        for path in ("/v1/contacts", "/v1/orders", "/v1/segments", "/v1/profiles/{customer_id}",
                     "/v1/customers/{customer_id}", "/v1/admin/api-keys"):
            assert path in paths, path
        assert "/v1/interactions" not in paths and "/healthz" not in paths
        assert document["x-missing-services"] == ["interactions"]
        assert "bearer" in document["components"]["securitySchemes"]
        # Every reference resolves inside the merged document.
        schemas = document["components"]["schemas"]
        refs = set()

        def collect(node):
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str):
                    refs.add(ref.rsplit("/", 1)[-1])
                for value in node.values():
                    collect(value)
            elif isinstance(node, list):
                for value in node:
                    collect(value)

        collect(paths)
        collect(schemas)
        assert refs <= set(schemas)
        assert "swagger-ui" in (await gw.client.get("/docs")).text


async def test_swagger_authorize_takes_an_api_key_for_every_path(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        page = (await gw.client.get("/docs")).text
        assert '"persistAuthorization": true' in page and "/openapi.json" in page
        document = (await gw.client.get("/openapi.json")).json()
        schemes = document["components"]["securitySchemes"]
        assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
        assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
        assert document["security"] == [{"bearer": []}, {"apiKey": []}]
        assert [server["url"] for server in document["servers"]] == ["/"]  # same origin: Try it out calls the gateway
        assert "/v1/audit" in document["paths"]
        # What Swagger sends after Authorize, with either scheme.
        secret = await gw.key("swagger", "admin")
        for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
            assert (await gw.client.get("/v1/contacts", headers=headers)).status_code == 200
            assert (await gw.client.get("/v1/audit", headers=headers)).status_code == 200


async def test_merged_asyncapi_has_every_topic(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        document = (await gw.client.get("/asyncapi.json")).json()
        addresses = {channel["address"] for channel in document["channels"].values()}
        assert {"crm.contacts.v1", "crm.orders.v1", "crm.interactions.v1", "crm.segments.v1"} <= addresses
        assert document["x-missing-services"] == []
        messages = document["components"]["messages"]
        for channel in document["channels"].values():
            for ref in channel["messages"].values():
                assert ref["$ref"].rsplit("/", 1)[-1] in messages


async def test_health_readiness_and_metrics(all_services, tmp_path):
    running = {name: app for name, app in all_services.items() if name != "orders"}
    async with start_gateway(tmp_path, running) as gw:
        assert (await gw.client.get("/healthz")).json() == {"status": "ok"}
        ready = await gw.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["services"] == {"contacts": "ok", "orders": "unreachable", "interactions": "ok",
                                            "segmentation": "ok"}
        await gw.client.get("/v1/contacts")  # refused: no key
        metrics = (await gw.client.get("/metrics")).text
        assert 'crm_gateway_refusals_total{reason="unauthorized"} 1.0' in metrics
        assert 'route="/v1/{path:path}"' in metrics or 'route="/v1/contacts"' in metrics


async def test_export_gathers_every_record_of_the_person_across_pages(all_services, tmp_path, monkeypatch):
    from gateway import customer_export

    monkeypatch.setattr(customer_export, "PAGE", 2)  # three orders: two pages
    async with start_gateway(tmp_path, all_services) as gw:
        headers = auth(await gw.key("frontend", *FRONTEND, "orders:write"))
        customer_id = await _customer(gw, headers)
        consent = await gw.client.put(f"/v1/contacts/{customer_id}/consent/email", headers=headers,
                                      json={"status": "granted", "source": "checkout"})
        assert consent.status_code == 200, consent.text
        for n in range(3):
            posted = await gw.client.post("/v1/orders", headers=headers, json={
                "platform": "shop", "external_id": f"o-{n}", "customer": {"id": customer_id}, "currency": "IRR",
                "lines": [{"sku": "tea", "name": "چای", "quantity": 1, "unit_price": "250000"}],
                "total": "250000", "placed_at": "2026-03-0{}T10:00:00Z".format(n + 1)})
            assert posted.status_code == 201, posted.text
        assert (await gw.client.get(f"/v1/customers/{customer_id}/export", headers=headers)).status_code == 403
        dpo = auth(await gw.key("dpo", "privacy:read"))
        export = await gw.client.get(f"/v1/customers/{customer_id}/export", headers=dpo)
        assert export.status_code == 200, export.text
        assert export.headers["content-disposition"] == f'attachment; filename="customer-{customer_id}.json"'
        body = export.json()
        assert body["customer_id"] == customer_id and body["contact"]["emails"] == ["sara@example.com"]
        assert sorted(o["external_id"] for o in body["orders"]) == ["o-0", "o-1", "o-2"]
        assert [i["subject"] for i in body["interactions"]] == ["hello"]
        assert [(c["channel"], c["status"]) for c in body["consent_history"]] == [("email", "granted")]
        assert body["segments"] == [] and body["exported_at"].endswith("Z")
        assert body["profile"] is None  # no broker here: the profile was never built
        assert (await gw.client.get("/v1/customers/00000000-0000-0000-0000-000000000000/export",
                                    headers=dpo)).status_code == 404
        gw.transport.down(netloc("interactions"))
        partial = await gw.client.get(f"/v1/customers/{customer_id}/export", headers=dpo)
        assert partial.status_code == 503 and partial.json()["service"] == "interactions"


async def test_erasure_through_the_gateway_needs_a_privacy_key(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        headers = auth(await gw.key("frontend", *FRONTEND))
        customer_id = await _customer(gw, headers)
        contacts_admin = auth(await gw.key("contacts-admin", "contacts:admin"))
        refused = await gw.client.post(f"/v1/customers/{customer_id}/erase", headers=contacts_admin)
        assert refused.status_code == 403
        dpo = auth(await gw.key("dpo", "privacy:admin"))
        started = await gw.client.post(f"/v1/customers/{customer_id}/erase", headers=dpo, json={"reason": "asked"})
        assert started.status_code == 202, started.text
        progress = await gw.client.get(started.headers["location"], headers=auth(await gw.key("auditor", "privacy:read")))
        assert progress.status_code == 200 and progress.json()["contact_id"] == customer_id
        assert (await gw.client.get(f"/v1/customers/{customer_id}/export", headers=dpo)).status_code == 404
