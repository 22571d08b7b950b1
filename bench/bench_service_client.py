"""What one forwarded request costs the gateway's HTTP client: aiohttp (gateway/service_client.py,
AiohttpServiceClient, what the gateway forwards with) against httpx as the gateway used it before
(per-service pools, `send(stream=True)`, the raw body read back), through the same `send`.

A bare ASGI service under uvicorn in a subprocess answers every POST with a contact-sized JSON
body; the clients run in this process on uvloop, --concurrency at a time, in alternating rounds.
The figure is this process's CPU per request (time.process_time), so other work on the machine
moves it less than wall time. It prints its figures; it never passes or fails.

    .venv/bin/python bench/bench_service_client.py [--requests 3000] [--rounds 3] [--concurrency 4]
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvloop  # noqa: E402

from gateway.service_client import AiohttpServiceClient, HttpxServiceClient  # noqa: E402

BODY = (b'{"given_name":"Some","family_name":"One","emails":["someone@example.com"],"phones":["+4912345678"],'
        b'"tags":["a","b"],"attributes":{"x":"y"}}')
HEADERS = [("content-type", "application/json"), ("accept", "*/*"), ("user-agent", "bench"),
           ("x-request-id", "r-1"), ("x-crm-api-key-name", "bench"), ("x-forwarded-for", "127.0.0.1")]
SERVICE = r'''
import json
ANSWER = json.dumps({"id": "0" * 26, "given_name": "Some", "family_name": "One", "emails": ["someone@example.com"],
    "phones": ["+4912345678"], "tags": ["a", "b"], "attributes": {"x": "y"}, "version": 1,
    "created_at": "2026-12-07T12:00:00Z", "updated_at": "2026-12-07T12:00:00Z"}).encode()
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json"),
        (b"content-length", str(len(ANSWER)).encode()), (b"etag", b'"1"')]})
    await send({"type": "http.response.body", "body": ANSWER})
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def measure(client, url: str, requests: int, concurrency: int) -> float:
    """CPU microseconds per request, after a warm-up."""
    async def one() -> None:
        response = await client.send("POST", url, HEADERS, BODY)
        await response.read()

    for _ in range(50):
        await one()
    todo = iter(range(requests))

    async def worker() -> None:
        for _ in todo:
            await one()

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / requests * 1e6


async def with_httpx(url: str, requests: int, concurrency: int) -> float:
    origin = url.split("/v1")[0]
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=httpx.Timeout(connect=2, read=30, write=30, pool=5), trust_env=False,
                                 mounts={origin: httpx.AsyncHTTPTransport(limits=limits)},
                                 headers={"x-gateway-token": "t"}) as client:
        return await measure(HttpxServiceClient(client), url, requests, concurrency)


async def with_aiohttp(url: str, requests: int, concurrency: int) -> float:
    async with AiohttpServiceClient(connect_timeout_s=2, read_timeout_s=30, headers={"x-gateway-token": "t"}) as client:
        return await measure(client, url, requests, concurrency)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        (Path(workdir) / "bench_service.py").write_text(SERVICE)
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench_service:app", "--port", str(port),
                                   "--no-access-log", "--log-level", "warning"], cwd=workdir)
        try:
            url = f"http://127.0.0.1:{port}/v1/contacts"
            for _ in range(100):
                try:
                    httpx.post(url, content=b"{}")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            figures: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
            for round_ in range(args.rounds):
                for name, run in (("httpx", with_httpx), ("aiohttp", with_aiohttp)):
                    figures[name].append(uvloop.run(run(url, args.requests, args.concurrency)))
                    print(f"round {round_ + 1} {name}: {figures[name][-1]:.0f} µs CPU per request", flush=True)
        finally:
            server.terminate()
            server.wait(10)
    httpx_us, aiohttp_us = (statistics.median(figures[name]) for name in ("httpx", "aiohttp"))
    print(f"median CPU per forwarded request: httpx {httpx_us:.0f} µs, aiohttp {aiohttp_us:.0f} µs "
          f"({httpx_us / aiohttp_us:.1f}x less with aiohttp)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
