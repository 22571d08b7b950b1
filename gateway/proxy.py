"""Forwarding one request to its service (service_client.py): pooled connections, timeouts,
small bodies passed whole and big ones streamed, both ways, retries only for idempotent
methods, and a problem+json 503/504 naming the service when it is down or slow."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from services.common.audit import KEY_ID_HEADER, KEY_NAME_HEADER
from services.common.errors import PROBLEM_BASE, PROBLEM_JSON
from services.common.gateway_guard import GATEWAY_TOKEN_HEADER

from .metrics import GatewayMetrics
from .routes import Upstream
from .service_client import ServiceClient, TimedOut, Unreachable, UpstreamResponse

IDEMPOTENT_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
# Never passed on to a service: the caller's secret, and identity headers only the gateway may set.
REQUEST_DROPPED = HOP_BY_HOP | {"authorization", "x-api-key", "x-request-id", KEY_ID_HEADER, KEY_NAME_HEADER,
                                GATEWAY_TOKEN_HEADER}
# The gateway's RequestContextMiddleware sets the response's X-Request-ID itself.
RESPONSE_DROPPED = HOP_BY_HOP | {"x-request-id"}
RESPONSE_DROPPED_BUFFERED = RESPONSE_DROPPED - {"content-length"}
RETRIES = 2
# Bodies up to this size (both ways) are read whole rather than streamed.
BUFFERED_BYTES = 256 * 1024
# Printable ASCII other than space: passed on as it is (a `%` escape included).
URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


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


def upstream_url(upstream: Upstream, request: Request) -> str:
    """The service's URL for the path and query as the caller sent them, percent-encoding kept:
    decoded, a control character in an id (`/v1/orders/%07/refunds`) made a URL the client refuses
    to build, and the caller got a 500. Bytes that may not stand in a URL as they are (only a
    lenient server passes them on) are percent-encoded."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = upstream.base_url + quote(raw_path, safe=URL_SAFE)
    query = request.scope.get("query_string")
    return url + "?" + quote(query, safe=URL_SAFE) if query else url


async def request_body(request: Request, idempotent: bool) -> bytes | AsyncIterator[bytes] | None:
    """A retry must send the body again, so idempotent requests buffer it; so do small bodies,
    which cost less sent whole than chunked. The rest (an import's upload) stream."""
    if idempotent:
        return await request.body() or None
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= BUFFERED_BYTES:
        return await request.body() or None
    return request.stream()


async def forward(client: ServiceClient, upstream: Upstream, request: Request, request_id: str,
                  metrics: GatewayMetrics | None = None) -> Response:
    headers = forwarded_headers(request, request_id)
    url = upstream_url(upstream, request)
    idempotent = request.method in IDEMPOTENT_METHODS
    body = await request_body(request, idempotent)
    attempt = 0

    def outcome(name: str) -> None:
        if metrics is not None:
            metrics.upstream_requests.labels(upstream.service, name).inc()

    def unreachable() -> JSONResponse:
        outcome("unreachable")
        return upstream_problem(503, "Service unavailable", f"the {upstream.service} service is not reachable",
                                upstream.service, request.url.path)

    def timed_out() -> JSONResponse:
        outcome("timeout")
        return upstream_problem(504, "Service timed out", f"the {upstream.service} service did not answer in time",
                                upstream.service, request.url.path)

    while True:
        try:
            response = await client.send(request.method, url, headers, body)
            break
        except TimedOut:
            return timed_out()
        except Unreachable:
            attempt += 1
            if not idempotent or attempt > RETRIES:
                return unreachable()
            await asyncio.sleep(0.05 * attempt)
    outcome(f"{response.status // 100}xx")
    if response.content_length is not None and response.content_length <= BUFFERED_BYTES:
        # A small answer as one Response: cheaper than streaming it, and its length is known.
        try:
            content = await response.read()
        except TimedOut:
            return timed_out()
        except Unreachable:
            return unreachable()
        return Response(content, status_code=response.status, headers=answer_headers(response, keep_length=True))
    # A big or open-ended answer (an export) streams through as it comes.
    return StreamingResponse(response.chunks(), status_code=response.status, headers=answer_headers(response),
                             background=BackgroundTask(response.close))


def answer_headers(response: UpstreamResponse, keep_length: bool = False) -> dict[str, str]:
    """The service's response headers for the caller; Content-Length only where the whole body
    is passed on as it came (its raw bytes: the client decodes nothing)."""
    dropped = RESPONSE_DROPPED_BUFFERED if keep_length else RESPONSE_DROPPED
    return {k: v for k, v in response.headers if k.lower() not in dropped}
