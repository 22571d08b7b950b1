"""The HTTP client the gateway forwards requests to the services with.

aiohttp, not httpx: for the same forwarded POST the gateway spent about 1.1 ms of CPU in httpx
(its models, httpcore's pool, anyio's streams) against about 0.2 ms in aiohttp (measured in one
process, 4 at a time, against a bare ASGI service; bench/README.md). So the forward, and the
gateway's own calls to the services (`call`: the customer 360 view and the data export, the
tracking API's writes, the shop webhooks' orders and contacts) go through aiohttp; only the
rare ones (health, the merged API documents) keep the httpx client.

Both clients answer through the same small interface, `ServiceClient.send`, so that tests that
serve the services in-process (an httpx transport, tests/gateway/transports.py) still run the
same `forward`; HttpxServiceClient is that path, AiohttpServiceClient the production one, tested
against a real server (tests/gateway/test_service_client.py).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Protocol, Sequence

import aiohttp
import httpx
import orjson
from yarl import URL

Body = bytes | AsyncIterable[bytes]
CHUNK = 64 * 1024
# Below uvicorn's keep-alive timeout (5 s): a connection the service is about to close is not
# reused, so a POST (never retried) does not meet a connection closed under it.
KEEPALIVE_S = 4.0
POOL_WAIT_S = 5.0  # the wait for a free connection of the pool, as httpx's pool timeout was


class Unreachable(Exception):
    """The service refused the connection, or it broke before an answer came."""


class TimedOut(Exception):
    """No connection or no answer in time."""


@dataclass
class UpstreamResponse:
    """A service's answer whose body is not read yet: `read()` it whole, or iterate `chunks()`;
    `close()` (idempotent) gives the connection back or drops it."""

    status: int
    headers: list[tuple[str, str]]
    content_length: int | None
    read: Callable[[], Awaitable[bytes]]
    chunks: Callable[[], AsyncIterator[bytes]]
    close: Callable[[], Awaitable[None]]


@dataclass
class Answer:
    """A whole answer to one of the gateway's own calls (`ServiceClient.call`)."""

    status: int
    content: bytes
    url: str  # after any redirect followed

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return orjson.loads(self.content)


class ServiceClient(Protocol):
    async def send(self, method: str, url: str, headers: list[tuple[str, str]], body: Body | None
                   ) -> UpstreamResponse:
        """A forwarded request: the answer's status and headers, its body not read yet; raises
        Unreachable or TimedOut."""
        ...

    async def call(self, method: str, url: str, *, headers: dict[str, str], timeout: float,
                   params: Sequence[tuple[str, str]] | Mapping[str, Any] = (), json: Any = None,
                   follow_redirects: bool = False) -> Answer:
        """One of the gateway's own calls (the 360 view's parts, tracking writes, shop webhooks),
        answered whole within `timeout` seconds; raises Unreachable or TimedOut."""
        ...


def _content_length(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


class AiohttpServiceClient:
    """One aiohttp session for every service: aiohttp's connector keeps the idle connections per
    host and does not check them all on each request (the cost that made httpx need one pool
    per service, app.service_pools)."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float, headers: dict[str, str],
                 max_connections_per_service: int = 100) -> None:
        self.timeout = aiohttp.ClientTimeout(total=None, connect=POOL_WAIT_S + connect_timeout_s,
                                             sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self.headers = headers
        self.max_connections_per_service = max_connections_per_service
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "AiohttpServiceClient":
        # As many connections to each service as httpx's pool per service allowed; no overall cap.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.max_connections_per_service,
                                         keepalive_timeout=KEEPALIVE_S, use_dns_cache=True)
        # Exactly the caller's headers go on: no User-Agent, Accept or Accept-Encoding of aiohttp's
        # own, and the answer's bytes pass through undecoded (its Content-Encoding with them).
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, headers=self.headers,
                                             auto_decompress=False, trust_env=False,
                                             skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, method: str, url: str, headers: list[tuple[str, str]], body: Body | None
                   ) -> UpstreamResponse:
        assert self.session is not None, "used outside its `async with`"
        try:
            # encoded=True: the path goes on as the caller sent it (see proxy.upstream_url).
            response = await self.session.request(method, URL(url, encoded=True), headers=headers, data=body,
                                                  allow_redirects=False)
        except asyncio.TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise TimedOut(str(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise Unreachable(str(exc)) from exc

        async def read() -> bytes:
            try:
                return await response.read()
            except asyncio.TimeoutError as exc:
                raise TimedOut(str(exc)) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise Unreachable(str(exc)) from exc
            finally:
                response.release()

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
                response.release()  # read to the end: the connection is reused
            finally:
                response.close()  # a no-op after release; drops a connection left mid-answer

        async def close() -> None:
            response.close()

        # Latin-1 both ways, as the ASGI server will send them: the header bytes pass on unchanged.
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]
        return UpstreamResponse(status=response.status, headers=headers, content_length=response.content_length,
                                read=read, chunks=chunks, close=close)

    async def call(self, method: str, url: str, *, headers: dict[str, str], timeout: float,
                   params: Sequence[tuple[str, str]] | Mapping[str, Any] = (), json: Any = None,
                   follow_redirects: bool = False) -> Answer:
        assert self.session is not None, "used outside its `async with`"
        data = None
        if json is not None:
            data, headers = orjson.dumps(json), {**headers, "content-type": "application/json"}
        query = [(k, str(v)) for k, v in (params.items() if isinstance(params, Mapping) else params)]
        try:
            async with self.session.request(method, url, params=query or None, headers=headers, data=data,
                                            allow_redirects=follow_redirects,
                                            timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                return Answer(response.status, await response.read(), str(response.url))
        except asyncio.TimeoutError as exc:
            raise TimedOut(str(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise Unreachable(str(exc)) from exc


class HttpxServiceClient:
    """The same interface over an httpx client: what the gateway uses when it is given a
    transport (the tests' in-process services)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, method: str, url: str, headers: list[tuple[str, str]], body: Body | None
                   ) -> UpstreamResponse:
        try:
            request = self.client.build_request(method, httpx.URL(url), headers=headers, content=body)
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise TimedOut(str(exc)) from exc
        except httpx.TransportError as exc:
            raise Unreachable(str(exc)) from exc

        async def read() -> bytes:
            try:
                return b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return UpstreamResponse(status=response.status_code, headers=list(response.headers.items()),
                                content_length=_content_length(response.headers.get("content-length")),
                                read=read, chunks=chunks, close=response.aclose)

    async def call(self, method: str, url: str, *, headers: dict[str, str], timeout: float,
                   params: Sequence[tuple[str, str]] | Mapping[str, Any] = (), json: Any = None,
                   follow_redirects: bool = False) -> Answer:
        content = None
        if json is not None:
            content, headers = orjson.dumps(json), {**headers, "content-type": "application/json"}
        try:
            response = await self.client.request(method, url, params=params or None, headers=headers, content=content,
                                                 timeout=timeout, follow_redirects=follow_redirects)
        except httpx.TimeoutException as exc:
            raise TimedOut(str(exc)) from exc
        except httpx.TransportError as exc:
            raise Unreachable(str(exc)) from exc
        return Answer(response.status_code, response.content, str(response.url))
