"""The API gateway (port 8000): the one public entry point. For now it routes each /v1 path to
the service that owns it and sets X-Request-ID; authentication, rate limits and the customer
360 view come with the gateway issue."""
from __future__ import annotations

import contextlib
import uuid

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.errors import PROBLEM_JSON
from services.common.observability import configure_logging

from .proxy import forward
from .routes import service_for, upstreams

TIMEOUT = httpx.Timeout(connect=2.0, read=30.0, write=30.0, pool=5.0)


def create_app(transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    configure_logging()
    services = upstreams()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits, transport=transport) as client:
            app.state.client = client
            yield

    app = FastAPI(title="CRM gateway", version="1.0.0", lifespan=lifespan,
                  description="The public entry point; routes /v1 paths to the owning service.")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                   include_in_schema=False)
    async def route(request: Request):
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        service = service_for(request.url.path)
        if service is None:
            return JSONResponse({"type": "about:blank", "title": "Not found", "status": 404,
                                 "detail": f"no service owns {request.url.path}"}, status_code=404,
                                media_type=PROBLEM_JSON, headers={"x-request-id": request_id})
        response = await forward(request.app.state.client, services[service], request, request_id)
        response.headers["x-request-id"] = request_id
        return response

    return app

