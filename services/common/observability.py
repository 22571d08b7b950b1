"""Request ids, one JSON log line per request, request metrics and the body-size limit, as one
pure ASGI middleware (cheaper than a stack of BaseHTTPMiddleware layers)."""
from __future__ import annotations

import logging
import sys
import time
import uuid

import orjson

from .errors import PROBLEM_BASE, PROBLEM_JSON
from .metrics import ServiceMetrics

REQUEST_ID_HEADER = b"x-request-id"
access_log = logging.getLogger("crm.access")


# uvicorn gives these loggers handlers of its own that print plain text; configure_logging
# sends them through the root's JSON handler instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def rfc3339_utc(created: float) -> str:
    """A log record's time as RFC 3339 in UTC with milliseconds: 2026-11-23T18:40:00.123Z."""
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": rfc3339_utc(record.created), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON object per line on stderr for everything the process logs: its own loggers,
    uvicorn's (an app factory runs after uvicorn set up its plain-text handlers) and warnings."""
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        if uvicorn_logger.handlers:  # one uvicorn turned off (--no-access-log) has none, and stays off
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
    logging.captureWarnings(True)
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonLogFormatter) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonLogFormatter())
    root.addHandler(handler)
    root.setLevel(level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (so test runners can capture it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class RequestContextMiddleware:
    """Sets or forwards X-Request-ID, limits body size, logs and measures each request."""

    def __init__(self, app, *, service: str, metrics: ServiceMetrics, max_body_bytes: int,
                 unlimited_paths: tuple[str, ...] = (), log_requests: bool = True) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.unlimited_paths = unlimited_paths
        self.log_requests = log_requests

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(REQUEST_ID_HEADER, b"").decode("latin-1")[:128] or str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = {"status": 500}
        path = scope["path"]
        limited = not path.startswith(self.unlimited_paths) if self.unlimited_paths else True

        declared = headers.get(b"content-length")
        if limited and declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send, request_id, path)
            status_holder["status"] = 413
            return self._finish(scope, status_holder, started, request_id)

        if limited:
            # Buffer the (bounded) body first, so an oversized one is refused before any handler runs.
            body, too_large = await _read_body(receive, self.max_body_bytes)
            if too_large:
                await self._too_large(send, request_id, path)
                status_holder["status"] = 413
                return self._finish(scope, status_holder, started, request_id)
            receive = _replay(body, receive)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message["headers"] = list(message.get("headers", [])) + [(REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._finish(scope, status_holder, started, request_id)

    def _finish(self, scope, status_holder, started, request_id) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "unmatched"
        self.metrics.http_requests.labels(scope["method"], route_path, str(status_holder["status"])).inc()
        self.metrics.http_latency.labels(scope["method"], route_path).observe(elapsed)
        if self.log_requests:
            access_log.info("request", extra={"fields": {
                "service": self.service, "request_id": request_id, "method": scope["method"],
                "path": scope["path"], "status": status_holder["status"], "duration_ms": round(elapsed * 1000, 2)}})

    async def _too_large(self, send, request_id: str, path: str) -> None:
        body = orjson.dumps({"type": PROBLEM_BASE + "payload-too-large", "title": "Payload too large",
                             "status": 413, "detail": f"the request body exceeds {self.max_body_bytes} bytes",
                             "instance": path})
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
            (REQUEST_ID_HEADER, request_id.encode())]})
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive, limit: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive):
    sent = False

    async def replaying_receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying_receive
