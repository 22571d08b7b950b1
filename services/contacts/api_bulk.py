"""Routes for many contacts at once: batch upsert, import jobs, export. Included before api.router,
so /batch, /import, /imports/{id} and /export are not taken for a contact id."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.common.events import utcnow
from services.common.idempotency import StoredResponse, idempotent, to_json_response
from services.common.service_app import ContextDep
from services.common.wire_types import IdempotencyKeyHeader, Instant

from . import exports, imports, upsert
from .bulk_schemas import BatchRequest, BatchResponse, ImportFormat, ImportJobPublic
from .contact_queries import ContactFilter
from .import_formats import detect_format
from .schemas import ConsentChannel, LifecycleStage

router = APIRouter(prefix="/v1/contacts", tags=["bulk"])


def contact_filter(
    q: Annotated[str | None, Query(max_length=200, description="Search names, emails and phones")] = None,
    tag: Annotated[list[str] | None, Query(description="Has every one of these tags")] = None,
    lifecycle_stage: Annotated[list[LifecycleStage] | None, Query()] = None,
    city: Annotated[str | None, Query(max_length=200)] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
    source: Annotated[str | None, Query(max_length=64)] = None,
    consent: Annotated[ConsentChannel | None, Query(description="Has granted consent on this channel")] = None,
    created_after: Instant | None = None, created_before: Instant | None = None,
    updated_after: Instant | None = None, updated_before: Instant | None = None,
) -> ContactFilter:
    """The list endpoint's filters, as query parameters of the same names."""
    return ContactFilter(tag=tag, lifecycle_stage=lifecycle_stage, city=city, country=country, source=source,
                         consent=consent, created_after=created_after, created_before=created_before,
                         updated_after=updated_after, updated_before=updated_before, q=q)


@router.post("/batch", response_model=BatchResponse,
             summary="Create or update up to 1,000 contacts by email, phone or external id, answering per item",
             description=upsert.__doc__)
async def upsert_batch(body: BatchRequest, request: Request, ctx: ContextDep,
                       idempotency_key: IdempotencyKeyHeader = None):
    async def run() -> StoredResponse:
        return StoredResponse(200, (await upsert.upsert_contacts(ctx, body.items)).as_dict())

    response, replayed = await idempotent(ctx, request, scope="contacts.batch", key=idempotency_key, action=run)
    return to_json_response(response, replayed)


@router.post("/import", status_code=202, response_model=ImportJobPublic,
             summary="Import CSV or JSON Lines of any size as a background job",
             description=imports.__doc__,
             responses={415: {"description": "Neither ?format= nor the Content-Type names CSV or JSON Lines"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 media: {"schema": {"type": "string", "format": "binary", "minLength": 1}}
                 for media in ("text/csv", "application/x-ndjson")}}})
async def start_import(request: Request, ctx: ContextDep, format: ImportFormat | None = None):
    fmt = detect_format(format, request.headers.get("content-type"))
    job = await imports.receive_import(ctx, request.stream(), fmt)
    return JSONResponse(job.model_dump(mode="json"), status_code=202, headers={"Location": job.links["self"]})


@router.get("/imports/{job_id}", response_model=ImportJobPublic, summary="An import job's progress, counts and errors")
async def get_import(job_id: str, ctx: ContextDep,
                     errors_limit: Annotated[int, Query(ge=0, le=1000, description="Row errors to show")] = 100):
    return await imports.get_import(ctx, job_id, errors_limit=errors_limit)


@router.get("/export", response_class=StreamingResponse, description=exports.__doc__,
            summary="Stream contacts as CSV or JSON Lines, with the list's filters",
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
async def export_contacts(ctx: ContextDep, filters: Annotated[ContactFilter, Depends(contact_filter)],
                          format: ImportFormat = "csv",
                          channel: Annotated[ConsentChannel | None, Query(
                              description="Only contacts who granted consent on this channel")] = None,
                          bom: Annotated[bool, Query(description="Start CSV with a UTF-8 BOM (for Excel)")] = False):
    media_type, chunks = await exports.export_contacts(ctx, filters, fmt=format, channel=channel, bom=bom)
    name = f"contacts-{utcnow().strftime('%Y%m%dT%H%M%SZ')}.{format}"
    return StreamingResponse(chunks, media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})
