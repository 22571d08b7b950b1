"""How the demo talks to the gateway: a bounded number of requests in flight, retries where a
retry is safe, and an Idempotency-Key on every write.

The key is a hash of the exact bytes sent, so the same request always carries the same key: a
retry after a timeout (the first attempt may have been committed) or a re-run of the demo gets
the first answer back instead of writing twice, and a changed request never collides with an
old key (which the services would refuse with 422).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx

RETRIED_STATUSES = (429, 502, 503, 504)
MAX_ATTEMPTS = 6


class DemoError(RuntimeError):
    """The system refused or kept failing a request; the message names it and says why."""


def encoded(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def idempotency_key(kind: str, content: bytes) -> str:
    return f"crm-demo-{kind}-{hashlib.sha256(content).hexdigest()[:40]}"


class Poster:
    def __init__(self, client: httpx.AsyncClient, *, in_flight: int = 8) -> None:
        self.client = client
        self.in_flight = in_flight
        self.slots = asyncio.Semaphore(in_flight)
        self.requests = 0

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self._send("GET", path, params={k: v for k, v in params.items() if v is not None})

    async def get_json(self, path: str, **params: Any) -> Any:
        response = await self.get(path, **params)
        if response.status_code != 200:
            raise DemoError(f"GET {path}: {response.status_code} {problem_detail(response)}")
        return response.json()

    async def write(self, path: str, body: Any, *, kind: str | None = None) -> httpx.Response:
        """POST `body`; with `kind`, under an Idempotency-Key (for endpoints that honour one)."""
        content = encoded(body)
        headers = {"content-type": "application/json"}
        if kind:
            headers["Idempotency-Key"] = idempotency_key(kind, content)
        return await self._send("POST", path, content=content, headers=headers, keyed=bool(kind))

    async def _send(self, method: str, path: str, *, keyed: bool = False, **options: Any) -> httpx.Response:
        delay, failure = 0.5, ""
        for _attempt in range(MAX_ATTEMPTS):
            async with self.slots:
                self.requests += 1
                try:
                    response = await self.client.request(method, path, **options)
                except httpx.TransportError as exc:
                    response, failure = None, f"{type(exc).__name__}: {exc}"
            if response is not None:
                # 409 on a keyed write: the same request is still running (a timed-out attempt).
                if response.status_code not in RETRIED_STATUSES and not (keyed and response.status_code == 409):
                    return response
                failure = f"{response.status_code} {problem_detail(response)}"
                delay = max(delay, retry_after(response))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise DemoError(f"{method} {path} failed {MAX_ATTEMPTS} times; last: {failure}")


def retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", 0))
    except ValueError:
        return 0.0


def problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail") or body.get("title") or body)[:300] if isinstance(body, dict) else str(body)[:200]
