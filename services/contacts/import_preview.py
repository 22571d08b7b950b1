"""The dry run of an import: the file read and every row checked as the import would (the
same reader, column mapping and validation), nothing written. It answers the first rows as they
would be stored (validated and normalized: emails, E.164 phones, consent) and every row error.

What only the database can tell is not checked: whether a row matches a stored contact, an
erased person's identity (the suppression list), or two rows naming identities of two different
contacts. The upload is kept in the import directory only while it is read."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from fastapi.encoders import jsonable_encoder

from services.common.errors import InvalidInput
from services.common.events import utcnow
from services.common.service_app import ServiceContext

from . import upsert
from .bulk_schemas import ImportDryRun, ImportPreviewRow, ImportRowError
from .import_formats import column_for
from .import_readers import open_reader
from .imports import store_upload

MAX_ERRORS = 10_000


def row_errors(row_number: int, problem: dict[str, Any], plan) -> list[ImportRowError]:
    if problem.get("errors"):
        return [ImportRowError(row=row_number, field=column_for(e.get("loc") or [], plan) or None,
                               reason=e["message"]) for e in problem["errors"]]
    return [ImportRowError(row=row_number, field=None, reason=problem["detail"])]


def check_file(handle, *, fmt: str, options: dict[str, Any], file_bytes: int, preview: int,
               region: str) -> ImportDryRun:
    """Blocking (run it in a thread). Raises InvalidInput when the file cannot be read at all."""
    try:
        reader = open_reader(handle, fmt=fmt, options=options, file_bytes=file_bytes)
    except ValueError as exc:
        raise InvalidInput.field("body", str(exc)) from None
    now = utcnow()
    rows = valid = 0
    shown: list[ImportPreviewRow] = []
    errors: list[ImportRowError] = []
    total_errors = 0
    for parsed in reader.rows:
        rows += 1
        found: list[ImportRowError] = [ImportRowError(row=parsed.row, field=e.field, reason=e.reason)
                                       for e in parsed.errors]
        if parsed.item is not None and not found:
            prepared = upsert.prepare_item(0, parsed.item, region=region, now=now)
            if prepared.error:
                found = row_errors(parsed.row, prepared.error, reader.plan)
            else:
                valid += 1
                if len(shown) < preview:
                    shown.append(ImportPreviewRow(row=parsed.row, contact=jsonable_encoder(prepared.changes)))
        elif not found:
            found = [ImportRowError(row=parsed.row, field=None, reason="the row could not be read")]
        total_errors += len(found)
        errors += found[:max(0, MAX_ERRORS - len(errors))]
    return ImportDryRun(format=fmt, rows=rows, valid=valid, failed=rows - valid, warnings=reader.warnings,
                        preview=shown, errors=errors, errors_total=total_errors)


async def dry_run(ctx: ServiceContext, body: AsyncIterator[bytes], fmt: str, options: dict[str, Any],
                  preview: int) -> ImportDryRun:
    path, size = await store_upload(ctx, body, f"dry-run-{utcnow().strftime('%Y%m%dT%H%M%S%f')}.{fmt}")
    try:
        with await asyncio.to_thread(open, path, "rb") as handle:
            return await asyncio.to_thread(check_file, handle, fmt=fmt, options=options, file_bytes=size,
                                           preview=preview, region=ctx.settings.default_phone_region)
    finally:
        await asyncio.to_thread(path.unlink, True)
