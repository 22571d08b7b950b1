"""Forwarding one request to its service: pooled connections, timeouts, streaming both ways,
retries only for idempotent methods, and a problem+json 503/504 naming the service when it is
down or slow."""
from __future__ import annotations

import asyncio

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from services.common.errors import PROBLEM_BASE, PROBLEM_JSON

from .routes import Upstream

IDEMPOTENT_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
RETRIES = 2


def _problem(status: int, title: str, detail: str, service: str) -> JSONResponse:
    return JSONResponse({"type": PROBLEM_BASE + ("upstream-timeout" if status == 504 else "upstream-unavailable"),
                         "title": title, "status": status, "detail": detail, "service": service},
                        status_code=status, media_type=PROBLEM_JSON)


async def forward(client: httpx.AsyncClient, upstream: Upstream, request: Request, request_id: str):
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    headers.append(("x-request-id", request_id))
    url = httpx.URL(upstream.base_url + request.url.path, query=request.url.query.encode())
    idempotent = request.method in IDEMPOTENT_METHODS
    body = request.stream() if not idempotent else await request.body()
    attempt = 0
    while True:
        try:
            upstream_request = client.build_request(request.method, url, headers=headers, content=body)
            response = await client.send(upstream_request, stream=True)
            break
        except httpx.TimeoutException:
            return _problem(504, "Service timed out", f"the {upstream.service} service did not answer in time",
                            upstream.service)
        except httpx.TransportError:
            attempt += 1
            if not idempotent or attempt > RETRIES:
                return _problem(503, "Service unavailable", f"the {upstream.service} service is not reachable",
                                upstream.service)
            await asyncio.sleep(0.05 * attempt)
    response_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
    return StreamingResponse(response.aiter_raw(), status_code=response.status_code, headers=response_headers,
                             background=BackgroundTask(response.aclose))
