"""Routes for many contacts at once: batch upsert, import jobs and their dry run, export. Included before api.router,
so /batch, /import, /imports/{id} and /export are not taken for a contact id."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.common.events import utcnow
from services.common.export_streams import download
from services.common.idempotency import StoredResponse, idempotent, to_json_response
from services.common.service_app import ContextDep
from services.common.wire_types import IdempotencyKeyHeader, Instant

from . import column_mapping, exports, import_preview, import_readers, imports, upsert
from .bulk_schemas import BatchRequest, BatchResponse, ExportFormat, ImportDryRun, ImportFormat, ImportJobPublic
from .contact_queries import ContactFilter
from .import_formats import XLSX_MEDIA_TYPE, detect_format
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


IMPORT_BODY = {"requestBody": {"required": True, "content": {
    media: {"schema": {"type": "string", "format": "binary", "minLength": 1}}
    for media in ("text/csv", XLSX_MEDIA_TYPE, "application/x-ndjson")}}}
UNSUPPORTED = {415: {"description": "Neither ?format= nor the Content-Type names CSV, XLSX or JSON Lines"}}
Mapping = Annotated[str | None, Query(max_length=20_000, description=column_mapping.__doc__,
                                      examples=['{"Mobile": "phones", "نام": "given_name"}'])]
Sheet = Annotated[str | None, Query(min_length=1, max_length=100, description="XLSX: the sheet to read "
                                                                              "(default: the first)")]


def import_options(request: Request, format: ImportFormat | None, mapping: str | None,
                   sheet: str | None) -> tuple[str, dict]:
    fmt = detect_format(format, request.headers.get("content-type"))
    return fmt, import_readers.check_options(fmt, column_mapping.parse_mapping(mapping), sheet)


@router.post("/import", status_code=202, response_model=ImportJobPublic,
             summary="Import CSV, XLSX or JSON Lines of any size as a background job",
             description=imports.__doc__, responses=UNSUPPORTED, openapi_extra=IMPORT_BODY)
async def start_import(request: Request, ctx: ContextDep, format: ImportFormat | None = None,
                       mapping: Mapping = None, sheet: Sheet = None):
    fmt, options = import_options(request, format, mapping, sheet)
    job = await imports.receive_import(ctx, request.stream(), fmt, options)
    return JSONResponse(job.model_dump(mode="json"), status_code=202, headers={"Location": job.links["self"]})


@router.post("/import/dry-run", response_model=ImportDryRun, description=import_preview.__doc__,
             summary="Check an import without writing anything: the first rows as they would be stored, "
                     "and every row error", responses=UNSUPPORTED, openapi_extra=IMPORT_BODY)
async def dry_run_import(request: Request, ctx: ContextDep, format: ImportFormat | None = None,
                         mapping: Mapping = None, sheet: Sheet = None,
                         preview: Annotated[int, Query(ge=0, le=100, description="Rows to show")] = 20):
    fmt, options = import_options(request, format, mapping, sheet)
    return await import_preview.dry_run(ctx, request.stream(), fmt, options, preview)


@router.get("/imports/{job_id}", response_model=ImportJobPublic, summary="An import job's progress, counts and errors")
async def get_import(job_id: str, ctx: ContextDep,
                     errors_limit: Annotated[int, Query(ge=0, le=1000, description="Row errors to show")] = 100):
    return await imports.get_import(ctx, job_id, errors_limit=errors_limit)


@router.get("/export", response_class=StreamingResponse, description=exports.__doc__,
            summary="Stream contacts as CSV or JSON Lines, with the list's filters",
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
async def export_contacts(ctx: ContextDep, filters: Annotated[ContactFilter, Depends(contact_filter)],
                          format: ExportFormat = "csv",
                          channel: Annotated[ConsentChannel | None, Query(
                              description="Only contacts who granted consent on this channel")] = None,
                          bom: Annotated[bool, Query(description="Start CSV with a UTF-8 BOM (for Excel)")] = False):
    media_type, chunks = await exports.export_contacts(ctx, filters, fmt=format, channel=channel, bom=bom)
    return download("contacts", format, media_type, chunks, now=utcnow())
