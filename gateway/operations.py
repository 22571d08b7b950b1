"""The gateway's operational and documentation endpoints: /healthz, /readyz, /metrics,
/openapi.json (merged), /docs (Swagger UI), /asyncapi.json (merged). None needs a key."""
from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from services.common.database import ping
from services.common.errors import PROBLEM_BASE, problem_response

from . import api_docs
from .context import ContextDep

router = APIRouter(tags=["operations"], include_in_schema=False)


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _upstream_health(client: httpx.AsyncClient, base_url: str, timeout: float) -> str:
    try:
        response = await asyncio.wait_for(client.get(base_url + "/healthz", timeout=timeout), timeout + 0.5)
    except (httpx.TimeoutException, asyncio.TimeoutError):
        return "timeout"
    except httpx.HTTPError:
        return "unreachable"
    return "ok" if response.status_code == 200 else f"status {response.status_code}"


@router.get("/readyz", summary="Its key database answers; each service's /healthz, summarized")
async def readyz(ctx: ContextDep):
    """Not ready (503) only when the key database is unreachable: a service that is down makes
    only its own paths answer 503, so the gateway stays in rotation and serves the rest."""
    timeout = ctx.settings.part_timeout_s
    names = list(ctx.upstreams)
    statuses = await asyncio.gather(*(_upstream_health(ctx.client, ctx.upstreams[n].base_url, timeout)
                                      for n in names))
    services = dict(zip(names, statuses))
    database = "ok"
    try:
        await asyncio.wait_for(ping(ctx.engine), timeout)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        database = f"unreachable: {type(exc).__name__}"
    body = {"checks": {"database": database}, "services": services,
            "auth": "on" if ctx.settings.auth else "off"}
    if database == "ok":
        return JSONResponse({"status": "ready", **body})
    return problem_response({"type": PROBLEM_BASE + "not-ready", "title": "Not ready", "status": 503,
                             "detail": f"database: {database}", **body})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(ctx: ContextDep) -> Response:
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/openapi.json", summary="The OpenAPI document of every service behind the gateway")
async def openapi(request: Request, ctx: ContextDep) -> JSONResponse:
    documents, missing = await api_docs.fetch_documents(ctx.client, ctx.upstreams, "/openapi.json",
                                                        ctx.settings.part_timeout_s)
    return JSONResponse(api_docs.merge_openapi(request.app.openapi(), documents, missing))


@router.get("/asyncapi.json", summary="The AsyncAPI document of every topic and event type")
async def asyncapi(ctx: ContextDep) -> JSONResponse:
    documents, missing = await api_docs.fetch_documents(ctx.client, ctx.upstreams, "/asyncapi.json",
                                                        ctx.settings.part_timeout_s)
    return JSONResponse(api_docs.merge_asyncapi(documents, missing))


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    # Authorize takes an API key (bearer or X-API-Key, api_docs.SECURITY_SCHEMES), kept across reloads.
    return get_swagger_ui_html(openapi_url="/openapi.json", title="CRM API",
                               swagger_ui_parameters={"persistAuthorization": True})
