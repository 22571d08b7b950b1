"""`GET /v1/customers/{id}`: the customer 360 view (see customer_view); and
`GET /v1/customers/{id}/export`: everything held on the person (see customer_export)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.common.request_checks import check_request

from . import customer_export, customer_view
from .auth import Principal
from .context import ContextDep, caller_of, require
from .customer_view import ServiceUnavailable
from .proxy import upstream_problem

router = APIRouter(prefix="/v1/customers", tags=["customer 360"])


def unavailable(exc: ServiceUnavailable, request: Request) -> JSONResponse:
    return upstream_problem(503, "Service unavailable", f"the {exc.service} service {exc.reason}", exc.service,
                            request.url.path)


@router.get("/{customer_id}", summary="A customer's 360 view: contact, profile, recent orders, timeline, segments",
            description=customer_view.__doc__)
async def customer_360(customer_id: str, request: Request, ctx: ContextDep,
                       principal: Principal = require("contacts:read"), _checked: None = Depends(check_request)):
    try:
        return await customer_view.customer_360(
            client=ctx.services, upstreams=ctx.upstreams, customer_id=customer_id, scopes=principal.scopes,
            request_id=request.state.request_id, timeout=ctx.settings.part_timeout_s)
    except ServiceUnavailable as exc:
        return unavailable(exc, request)


@router.get("/{customer_id}/export", tags=["privacy"], description=customer_export.__doc__,
            summary="Everything held on one person, as one JSON document (data-subject access request)")
async def export_customer(customer_id: str, request: Request, ctx: ContextDep,
                          _principal: Principal = require("privacy:read"), _checked: None = Depends(check_request)):
    try:
        document = await customer_export.export_customer(
            client=ctx.services, upstreams=ctx.upstreams, engine=ctx.engine, customer_id=customer_id,
            caller=caller_of(request), timeout=ctx.settings.read_timeout_s)
    except ServiceUnavailable as exc:
        return unavailable(exc, request)
    filename = f"customer-{document['customer_id']}.json"
    return JSONResponse(document, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
