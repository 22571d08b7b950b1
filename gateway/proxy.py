"""Forwarding one request to its service: pooled connections, timeouts, streaming both ways,
retries only for idempotent methods, and a problem+json 503/504 naming the service when it is
down or slow."""
from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from services.common.audit import KEY_ID_HEADER, KEY_NAME_HEADER
from services.common.errors import PROBLEM_BASE, PROBLEM_JSON
from services.common.gateway_guard import GATEWAY_TOKEN_HEADER

from .metrics import GatewayMetrics
from .routes import Upstream

IDEMPOTENT_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
# Never passed on to a service: the caller's secret, and identity headers only the gateway may set.
REQUEST_DROPPED = HOP_BY_HOP | {"authorization", "x-api-key", "x-request-id", KEY_ID_HEADER, KEY_NAME_HEADER,
                                GATEWAY_TOKEN_HEADER}
# The gateway's RequestContextMiddleware sets the response's X-Request-ID itself.
RESPONSE_DROPPED = HOP_BY_HOP | {"x-request-id"}
RETRIES = 2


def upstream_problem(status: int, title: str, detail: str, service: str, instance: str) -> JSONResponse:
    return JSONResponse({"type": PROBLEM_BASE + ("upstream-timeout" if status == 504 else "upstream-unavailable"),
                         "title": title, "status": status, "detail": detail, "service": service,
                         "instance": instance}, status_code=status, media_type=PROBLEM_JSON)


def caller_headers(request_id: str, name: str, key_id: str | None = None) -> dict[str, str]:
    """The request id and who is calling, for the services' audit entries (services/common/audit.py):
    what the gateway sends with every call it makes to a service on someone's behalf."""
    headers = {"x-request-id": request_id, KEY_NAME_HEADER: quote(name, safe=" ")}  # UTF-8, percent-encoded
    if key_id:
        headers[KEY_ID_HEADER] = key_id
    return headers


def forwarded_headers(request: Request, request_id: str) -> list[tuple[str, str]]:
    # Values without surrounding white space (RFC 9110 5.5): httpx refuses to send one with it.
    headers = [(k, v.strip(" \t")) for k, v in request.headers.items() if k.lower() not in REQUEST_DROPPED]
    principal = getattr(request.state, "principal", None)
    if principal is None:
        headers.append(("x-request-id", request_id))
    else:
        headers += caller_headers(request_id, principal.name, principal.key_id).items()
    if request.client:
        prior = request.headers.get("x-forwarded-for")
        headers = [(k, v) for k, v in headers if k.lower() != "x-forwarded-for"]
        headers.append(("x-forwarded-for", f"{prior}, {request.client.host}" if prior else request.client.host))
    return headers


async def forward(client: httpx.AsyncClient, upstream: Upstream, request: Request, request_id: str,
                  metrics: GatewayMetrics | None = None):
    headers = forwarded_headers(request, request_id)
    # The path as the caller sent it, percent-encoding kept: decoded, a control character in an id
    # (`/v1/orders/%07/refunds`) made a URL httpx refuses to build, and the caller got a 500.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = httpx.URL(upstream.base_url + raw_path.decode("latin-1"), query=request.url.query.encode())
    idempotent = request.method in IDEMPOTENT_METHODS
    # A retry must send the body again, so idempotent requests buffer it; the rest stream.
    body = request.stream() if not idempotent else await request.body()
    attempt = 0

    def outcome(name: str) -> None:
        if metrics is not None:
            metrics.upstream_requests.labels(upstream.service, name).inc()

    while True:
        try:
            upstream_request = client.build_request(request.method, url, headers=headers, content=body)
            response = await client.send(upstream_request, stream=True)
            break
        except httpx.TimeoutException:
            outcome("timeout")
            return upstream_problem(504, "Service timed out", f"the {upstream.service} service did not answer in time",
                                    upstream.service, request.url.path)
        except httpx.TransportError:
            attempt += 1
            if not idempotent or attempt > RETRIES:
                outcome("unreachable")
                return upstream_problem(503, "Service unavailable", f"the {upstream.service} service is not reachable",
                                        upstream.service, request.url.path)
            await asyncio.sleep(0.05 * attempt)
    outcome(f"{response.status_code // 100}xx")
    response_headers = {k: v for k, v in response.headers.items() if k.lower() not in RESPONSE_DROPPED}
    return StreamingResponse(response.aiter_raw(), status_code=response.status_code, headers=response_headers,
                             background=BackgroundTask(response.aclose))
