"""An httpx transport that sends each request to the in-process app serving its host:port, so a
gateway under test talks to several service apps without sockets. A host with no app behaves
like a service that is down (ConnectError)."""
from __future__ import annotations

import httpx


class AppsByHost(httpx.AsyncBaseTransport):
    def __init__(self, apps: dict[str, object]) -> None:
        """`apps`: "host:port" -> ASGI app."""
        self.transports = {netloc: httpx.ASGITransport(app=app) for netloc, app in apps.items()}
        self.requests: list[httpx.Request] = []

    def down(self, netloc: str) -> None:
        self.transports.pop(netloc, None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        netloc = request.url.netloc.decode()
        transport = self.transports.get(netloc)
        if transport is None:
            raise httpx.ConnectError(f"nothing listens on {netloc}", request=request)
        return await transport.handle_async_request(request)
