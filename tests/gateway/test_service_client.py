"""The gateway's production forwarding path (aiohttp, gateway/service_client.py) against a real
HTTP server on 127.0.0.1: what the in-process tests (an httpx transport) cannot show. Headers
and the path go on as sent, small answers come back whole, exports stream, a service that is
down or slow is a problem+json 503 or 504, and connections are kept alive."""
from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from gateway.app import create_app
from gateway.gateway_consumer import may_matter
from gateway.service_client import AiohttpServiceClient, TimedOut, Unreachable
from tests.conftest import running_app
from tests.gateway.conftest import auth, gateway_settings

CHUNKS = 40
CHUNK = b"x" * 16384 + b"\n"


def service() -> FastAPI:
    app = FastAPI()
    app.state.peers = set()

    @app.post("/v1/contacts")
    async def echo(request: Request):
        app.state.peers.add(request.client.port)
        body = await request.body()
        return JSONResponse({"headers": dict(request.headers), "body": body.decode(),
                             "path": request.scope["raw_path"].decode(), "query": request.scope["query_string"].decode()},
                            status_code=201, headers={"etag": '"7"', "x-request-id": "the service's"})

    @app.api_route("/v1/contacts/{anything}/x", methods=["GET", "HEAD"])
    async def raw(request: Request):
        return {"path": request.scope["raw_path"].decode()}

    @app.get("/v1/contacts/old")
    async def moved(request: Request):
        return RedirectResponse("/v1/contacts/new?" + request.url.query, status_code=308)

    @app.get("/v1/contacts/new")
    async def new(request: Request):
        return {"query": request.scope["query_string"].decode(), "token": request.headers.get("x-gateway-token")}

    @app.get("/v1/contacts/export")
    async def export():
        async def rows():
            for _ in range(CHUNKS):
                yield CHUNK
                await asyncio.sleep(0)
        return StreamingResponse(rows(), media_type="text/csv")

    @app.get("/v1/contacts/slow")
    async def slow():
        await asyncio.sleep(3)
        return {}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(app: FastAPI):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def gateway(tmp_path, monkeypatch):
    app = service()
    async with serving(app) as url:
        monkeypatch.setenv("CONTACTS_URL", url)
        monkeypatch.setenv("ORDERS_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
        gateway_app = create_app(gateway_settings(tmp_path, read_timeout_s=0.5))  # no transport: aiohttp
        async with running_app(gateway_app) as client:
            from gateway import api_keys
            from tests.gateway.conftest import TEST_OPERATOR

            key = await api_keys.create_key(engine=gateway_app.state.gateway.engine, name="Zoë's shop",
                                            scopes=["admin"], caller=TEST_OPERATOR)
            yield client, auth(key.secret), app


async def test_headers_path_and_body_go_on_and_a_small_answer_comes_back_whole(gateway):
    client, headers, app = gateway
    answer = await client.post("/v1/contacts?b=1&a=%20", content=b'{"given_name":"Ali"}',
                               headers={**headers, "content-type": "application/json", "x-request-id": "r-9",
                                        "x-crm-api-key-id": "forged", "x-custom": "  kept  ",
                                        "accept-encoding": "identity"})
    assert answer.status_code == 201
    assert answer.headers["etag"] == '"7"' and answer.headers.get_list("x-request-id") == ["r-9"]
    assert int(answer.headers["content-length"]) == len(answer.content)
    seen = answer.json()
    assert seen["body"] == '{"given_name":"Ali"}' and seen["query"] == "b=1&a=%20"
    sent = seen["headers"]
    assert sent["x-request-id"] == "r-9" and sent["x-custom"] == "kept" and "authorization" not in sent
    assert sent["x-crm-api-key-name"] == "Zo%C3%AB%27s shop" and sent["x-crm-api-key-id"] != "forged"
    assert sent["x-gateway-token"] and sent["content-length"] == str(len(seen["body"]))
    assert sent["accept-encoding"] == "identity"
    assert sent["user-agent"].startswith("python-httpx")  # the caller's, not aiohttp's


async def test_the_path_goes_on_as_sent(gateway):
    client, headers, _app = gateway
    answer = await client.get("/v1/contacts/%07%20/x", headers=headers)
    assert answer.status_code == 200 and answer.json()["path"] == "/v1/contacts/%07%20/x"


async def test_head_answers_the_length_without_a_body(gateway):
    client, headers, _app = gateway
    got = await client.get("/v1/contacts/%07%20/x", headers=headers)
    head = await client.head("/v1/contacts/%07%20/x", headers=headers)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))


async def test_an_export_streams_through(gateway):
    client, headers, _app = gateway
    async with client.stream("GET", "/v1/contacts/export", headers=headers) as answer:
        assert answer.status_code == 200 and "content-length" not in answer.headers
        assert answer.headers["content-type"].startswith("text/csv")
        received = [chunk async for chunk in answer.aiter_raw()]
    assert b"".join(received) == CHUNK * CHUNKS  # (the in-process client to the gateway buffers it)


async def test_connections_are_kept_alive(gateway):
    client, headers, app = gateway
    for _ in range(5):
        assert (await client.post("/v1/contacts", json={}, headers=headers)).status_code == 201
    assert len(app.state.peers) == 1


async def test_a_service_down_is_503_and_a_slow_one_504(gateway):
    client, headers, _app = gateway
    for method in ("GET", "POST"):
        down = await client.request(method, "/v1/orders", headers=headers, json={} if method == "POST" else None)
        assert down.status_code == 503 and down.headers["content-type"] == "application/problem+json"
        assert down.json()["service"] == "orders"
    slow = await client.get("/v1/contacts/slow", headers=headers)
    assert slow.status_code == 504 and slow.json()["service"] == "contacts"


async def test_the_gateways_own_calls_are_answered_whole():
    async with serving(service()) as url, AiohttpServiceClient(connect_timeout_s=1, read_timeout_s=30,
                                                                headers={"x-gateway-token": "t"}) as client:
        posted = await client.call("POST", url + "/v1/contacts", json={"a": "ü"}, headers={"x-request-id": "r"},
                                   timeout=5)
        assert posted.status == 201 and posted.json()["body"] == '{"a":"ü"}'
        assert posted.json()["headers"]["content-type"] == "application/json"
        assert posted.json()["headers"]["x-request-id"] == "r"
        moved = await client.call("GET", url + "/v1/contacts/old", params=[("a", "1 2"), ("b", "x")], headers={},
                                  timeout=5, follow_redirects=True)
        assert moved.status == 200 and moved.url.endswith("/v1/contacts/new?a=1+2&b=x")
        assert moved.json() == {"query": "a=1+2&b=x", "token": "t"}
        assert (await client.call("GET", url + "/v1/contacts/old", headers={}, timeout=5)).status == 308
        with pytest.raises(TimedOut):
            await client.call("GET", url + "/v1/contacts/slow", headers={}, timeout=0.3)
        with pytest.raises(Unreachable):
            await client.call("GET", f"http://127.0.0.1:{free_port()}/", headers={}, timeout=5)


def test_only_records_a_subscription_may_take_are_decoded():
    def raw(event_type: str, data: str = "{}") -> bytes:
        return f'{{"id":"e","type":"{event_type}","subject":"c","data":{data}}}'.encode()

    seen: dict = {}
    patterns = ["crm.order.*", "crm.contact.created.v1"]
    assert may_matter(raw("crm.order.placed.v1"), patterns, seen)
    assert may_matter(raw("crm.contact.created.v1"), patterns, seen)
    assert not may_matter(raw("crm.contact.updated.v1"), patterns, seen)
    assert not may_matter(raw("crm.interaction.recorded.v1", '{"type":"call"}'), patterns, seen)
    # Membership changes and erasures are always applied, subscriptions or not.
    assert may_matter(raw("crm.segment.member_entered.v1"), [], {})
    assert may_matter(raw("crm.contact.erased.v1"), [], {})
    # A type only inside a string value does not count; a nested "type" key does (to be safe).
    assert not may_matter(raw("crm.contact.updated.v1", '{"note":"\\"type\\":\\"crm.order.placed.v1\\""}'),
                          patterns, {})
    assert may_matter(raw("crm.contact.updated.v1", '{"type":"crm.order.placed.v1"}'), patterns, {})
    # Not compact JSON, not JSON, empty: decoding decides (a poison record is dead-lettered).
    assert may_matter(b'{"type": "crm.contact.updated.v1"}', patterns, {})
    assert may_matter(b"not an event", patterns, {}) and may_matter(None, patterns, {})
