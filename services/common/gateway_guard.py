"""Services answer only requests that came through the gateway.

The gateway presents a shared secret, `GATEWAY_TOKEN`, in the `X-Gateway-Token` header of every
request it sends a service; a service started with that setting refuses (403 problem+json) any
request without it, so a caller who reaches a service's port directly can't skip the gateway's
authentication, scopes and rate limits. Health, readiness and metrics stay open: probes and
Prometheus scrape the service itself. A service refuses to start without the setting
(service_app.create_service_app), so the check is never off; `make run`, LocalSystem and every
deployment file set it, and tests drive an app in-process as the gateway would, with the token.
"""
from __future__ import annotations

import hmac
import json

from .errors import PROBLEM_BASE, PROBLEM_JSON

GATEWAY_TOKEN_HEADER = "x-gateway-token"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class GatewayOnlyMiddleware:
    def __init__(self, app, *, token: str, service: str) -> None:
        self.app = app
        self.token = token.encode()
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        presented = next((value for name, value in scope.get("headers") or []
                          if name == GATEWAY_TOKEN_HEADER.encode()), b"")
        if hmac.compare_digest(presented, self.token):
            return await self.app(scope, receive, send)
        body = json.dumps({"type": PROBLEM_BASE + "gateway-only", "title": "Only through the gateway",
                           "status": 403, "detail": f"the {self.service} service answers only requests that come "
                                                    "through the API gateway (port 8000)",
                           "instance": scope["path"]}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
