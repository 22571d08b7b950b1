"""Import jobs (CSV, XLSX, JSON Lines; import_readers reads them): store the upload, apply it chunk by chunk in the background, resume after a restart.

The upload is streamed to a file under settings.import_dir (never held in memory: a million
rows is normal), then a job row is committed and an asyncio task applies it: ~500 rows per
transaction through the same upsert as POST /batch, with the job's progress, counts, row errors
and read position (`next_offset`, `next_row`) written in that same transaction. So a crash
re-applies nothing and loses nothing: the next start resumes after the last committed chunk.
A lease (renewed with every chunk) keeps two processes from working on one job; a stopped
process releases it, a crashed one lets it expire. The file is deleted when the job ends
(it holds personal data). With several instances, import_dir must be shared storage.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import audit
from services.common.errors import InvalidInput, NotFound
from services.common.events import utcnow
from services.common.service_app import ServiceContext
from services.common.sqltypes import UtcDateTime

from . import upsert
from .bulk_schemas import ImportCounts, ImportJobPublic, ImportProgress, ImportRowError
from .import_formats import CsvPlan, ParsedRow, column_for
from .import_readers import Reader, open_reader
from .models import ImportErrorRow, ImportJobRow

log = logging.getLogger("crm.contacts.imports")

CHUNK_ROWS = 500
MAX_STORED_ERRORS = 10_000
LEASE = timedelta(seconds=60)
WRITE_BUFFER_BYTES = 1 << 20
UNFINISHED = ("queued", "running")
jobs = ImportJobRow.__table__
error_rows = ImportErrorRow.__table__


class LeaseLost(Exception):
    """Another process took the job over; this one stops without committing its chunk."""


async def store_upload(ctx: ServiceContext, body: AsyncIterator[bytes], name: str) -> tuple[Path, int]:
    """The upload in the import directory, and its size; an empty one is refused (422)."""
    directory = Path(ctx.settings.import_dir)
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    size = await _store(body, directory / name)
    if size == 0:
        (directory / name).unlink(missing_ok=True)
        raise InvalidInput.field("body", "is empty; send the CSV, XLSX or JSON Lines file as the request body")
    return directory / name, size


async def receive_import(ctx: ServiceContext, body: AsyncIterator[bytes], fmt: str,
                         options: dict[str, Any] | None = None) -> ImportJobPublic:
    """Store the upload, record a queued job and start applying it; answers at once. `options`:
    the column mapping and sheet (check_options has checked them)."""
    job_id = str(uuid.uuid4())
    name = f"{job_id}.{fmt}"
    _path, size = await store_upload(ctx, body, name)
    now = utcnow()
    caller = audit.current_caller()
    async with ctx.session_factory() as session, session.begin():
        session.add(ImportJobRow(id=job_id, status="queued", format=fmt, file_name=name, file_bytes=size,
                                 warnings=[], options=options or None, created_at=now, updated_at=now, caller_key_id=caller.key_id,
                                 caller_key_name=caller.key_name, caller_request_id=caller.request_id))
        await audit.record(session, ctx, "contacts.import_start", [], resource=f"import:{job_id}",
                           detail={"format": fmt, "bytes": size})
    start_processing(ctx, job_id)
    return await get_import(ctx, job_id)


async def _store(body: AsyncIterator[bytes], path: Path) -> int:
    size, buffer = 0, bytearray()
    handle = await asyncio.to_thread(open, path, "wb")
    try:
        async for chunk in body:
            buffer += chunk
            size += len(chunk)
            if len(buffer) >= WRITE_BUFFER_BYTES:
                await asyncio.to_thread(handle.write, bytes(buffer))
                buffer.clear()
        await asyncio.to_thread(handle.write, bytes(buffer))
        await asyncio.to_thread(handle.flush)
        await asyncio.to_thread(os.fsync, handle.fileno())  # the job row will promise the file exists
    except BaseException:
        handle.close()
        path.unlink(missing_ok=True)
        raise
    handle.close()
    return size


def start_processing(ctx: ServiceContext, job_id: str) -> asyncio.Task:
    """A task kept in ctx.tasks, so the app's shutdown cancels it (the job then resumes later)."""
    ctx.tasks[:] = [task for task in ctx.tasks if not task.done()]
    task = asyncio.create_task(process_import(ctx, job_id), name=f"contacts-import-{job_id}")
    ctx.tasks.append(task)
    return task


async def resume_unfinished(ctx: ServiceContext) -> list[str]:
    async with ctx.session_factory() as session:
        ids = list((await session.execute(select(jobs.c.id).where(jobs.c.status.in_(UNFINISHED))
                                          .order_by(jobs.c.created_at))).scalars())
    for job_id in ids:
        start_processing(ctx, job_id)
    return ids


async def resume_on_start(ctx: ServiceContext) -> None:
    """The app's on_start hook: pick up jobs a previous run left unfinished."""
    if ctx.settings.run_background_tasks:
        ids = await resume_unfinished(ctx)
        if ids:
            log.info("resuming imports", extra={"fields": {"jobs": ids}})


async def process_import(ctx: ServiceContext, job_id: str) -> None:
    token = str(uuid.uuid4())
    job = await _claim(ctx, job_id, token)
    if job is None:
        return
    try:
        # Every chunk's audit entry names whoever uploaded the file, also after a restart.
        with audit.acting_as(audit.Caller(job.caller_key_id, job.caller_key_name, job.caller_request_id)):
            error = await _run(ctx, job, token)
    except asyncio.CancelledError:  # shutdown: free the job for the next start at once
        await asyncio.shield(_release(ctx, job_id, token))
        raise
    except LeaseLost:
        log.warning("import lease lost", extra={"fields": {"job_id": job_id}})
        return
    except Exception as exc:
        log.exception("import failed", extra={"fields": {"job_id": job_id}})
        error = f"the import stopped on an unexpected error ({type(exc).__name__}); rows before it were applied"
    try:
        await _finish(ctx, job, token, error)
    except Exception:  # the lease runs out and the next start finishes the job
        log.exception("could not record the end of an import", extra={"fields": {"job_id": job_id}})


async def _claim(ctx: ServiceContext, job_id: str, token: str) -> ImportJobRow | None:
    """Take the job's lease, waiting while a live process holds it; None once the job is over."""
    while True:
        now = utcnow()
        async with ctx.session_factory() as session, session.begin():
            claimed = (await session.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(UNFINISHED),
                                   or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < now))
                .values(status="running", lease_token=token, lease_until=now + LEASE, updated_at=now,
                        started_at=func.coalesce(jobs.c.started_at, _at(now))))).rowcount == 1
            job = (await session.execute(select(ImportJobRow).where(ImportJobRow.id == job_id))).scalar_one_or_none()
        if job is None or job.status not in UNFINISHED:
            return None
        if claimed:
            return job
        await asyncio.sleep(max(1.0, (job.lease_until - now).total_seconds() + 0.5))


def _at(moment: datetime):
    return bindparam(None, moment, type_=UtcDateTime())


async def _release(ctx: ServiceContext, job_id: str, token: str) -> None:
    async with ctx.session_factory() as session, session.begin():
        await session.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.lease_token == token)
                              .values(lease_until=None))


def _open_reader(handle: BinaryIO, job: ImportJobRow) -> Reader:
    return open_reader(handle, fmt=job.format, options=job.options, next_row=job.next_row,
                       next_offset=job.next_offset, file_bytes=job.file_bytes)


def _next_chunk(reader: Reader, region: str) -> tuple[list[ParsedRow], list[upsert.Prepared], datetime]:
    now = utcnow()
    rows = list(itertools.islice(reader.rows, CHUNK_ROWS))
    items = [upsert.prepare_item(i, row.item, region=region, now=now) for i, row in enumerate(rows)
             if row.item is not None]
    return rows, items, now


async def _run(ctx: ServiceContext, job: ImportJobRow, token: str) -> str | None:
    """Apply the rest of the file; the job-level error when it cannot be read at all."""
    path = Path(ctx.settings.import_dir) / job.file_name
    pending: asyncio.Future | None = None
    try:
        handle = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        return "the uploaded file is no longer in the import directory"
    try:
        try:
            reader = await asyncio.to_thread(_open_reader, handle, job)
        except ValueError as exc:
            return str(exc)
        if reader.warnings != job.warnings:
            async with ctx.session_factory() as session, session.begin():
                await session.execute(update(jobs).where(jobs.c.id == job.id).values(warnings=reader.warnings))
        stored, region = job.errors_stored, ctx.settings.default_phone_region
        # The next chunk is read and validated in a thread while this one is written.
        pending = asyncio.ensure_future(asyncio.to_thread(_next_chunk, reader, region))
        while True:
            rows, items, now = await pending
            if not rows:
                return None
            pending = asyncio.ensure_future(asyncio.to_thread(_next_chunk, reader, region))
            stored += await _apply_chunk(ctx, job.id, token, rows, items, reader.plan, stored, now)
    finally:
        if pending is not None:  # the reader thread must be done with the file before it closes
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()
        handle.close()


async def _apply_chunk(ctx: ServiceContext, job_id: str, token: str, rows: list[ParsedRow],
                       items: list[upsert.Prepared], plan: CsvPlan | None, stored: int, now: datetime) -> int:
    """One transaction: the chunk's contacts, its errors and the job's progress. Errors stored."""
    kept: list[int] = []

    async def record_progress(session: AsyncSession, results: list[upsert.ItemResult]) -> None:
        counts, errors = _tally(rows, results, plan)
        keep = errors[:max(0, MAX_STORED_ERRORS - stored)]
        if keep:
            await session.execute(insert(error_rows), [{"job_id": job_id, **e} for e in keep])
        last = rows[-1]
        values = {name: jobs.c[name] + n for name, n in counts.items()}
        result = await session.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.lease_token == token).values(
            **values, rows_processed=jobs.c.rows_processed + len(rows), error_count=jobs.c.error_count + len(errors),
            errors_stored=jobs.c.errors_stored + len(keep), next_offset=last.end_offset, next_row=last.row + 1,
            lease_until=now + LEASE, updated_at=now))
        if result.rowcount != 1:
            raise LeaseLost()
        kept[:] = [len(keep)]
        await audit.record(session, ctx, "contacts.import", upsert.written_ids(results), resource=f"import:{job_id}",
                           detail={"rows": len(rows)})

    await upsert.apply_items(ctx, items, now=now, before_commit=record_progress)
    return kept[0]


def _tally(rows: list[ParsedRow], results: list[upsert.ItemResult],
           plan: CsvPlan | None) -> tuple[dict[str, int], list[dict[str, Any]]]:
    counts = dict.fromkeys(("created", "updated", "unchanged", "failed"), 0)
    by_row = {result.index: result for result in results}
    errors: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        result = by_row.get(i)
        if result is not None and result.status != "error":
            counts[result.status] += 1
            continue
        counts["failed"] += 1
        if result is None:
            errors += [{"row_number": row.row, "field": e.field, "reason": e.reason} for e in row.errors]
        elif result.error.get("errors"):
            errors += [{"row_number": row.row, "field": column_for(e.get("loc") or [], plan) or None,
                        "reason": e["message"]} for e in result.error["errors"]]
        else:
            errors.append({"row_number": row.row, "field": None, "reason": result.error["detail"]})
    return counts, errors


async def _finish(ctx: ServiceContext, job: ImportJobRow, token: str, error: str | None) -> None:
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():
        ended = (await session.execute(update(jobs).where(jobs.c.id == job.id, jobs.c.lease_token == token).values(
            status="failed" if error else "completed", error=error, finished_at=now, updated_at=now,
            lease_token=None, lease_until=None))).rowcount == 1
    if ended:  # otherwise another process owns the job, and the file
        (Path(ctx.settings.import_dir) / job.file_name).unlink(missing_ok=True)


async def get_import(ctx: ServiceContext, job_id: str, *, errors_limit: int = 100) -> ImportJobPublic:
    async with ctx.session_factory() as session:
        job = (await session.execute(select(ImportJobRow).where(ImportJobRow.id == job_id))).scalar_one_or_none()
        if job is None:
            raise NotFound(f"no import job with id {job_id}", job_id=job_id)
        errors = (await session.execute(select(ImportErrorRow).where(ImportErrorRow.job_id == job_id)
                                        .order_by(ImportErrorRow.id).limit(errors_limit))).scalars().all()
    done = job.status == "completed"
    offset = job.file_bytes if done else job.next_offset
    return ImportJobPublic(
        id=job.id, status=job.status, format=job.format, created_at=job.created_at, updated_at=job.updated_at,
        started_at=job.started_at, finished_at=job.finished_at, warnings=job.warnings, error=job.error,
        progress=ImportProgress(rows_processed=job.rows_processed, bytes_processed=offset, bytes_total=job.file_bytes,
                                percent=round(100 * offset / job.file_bytes, 1) if job.file_bytes else 100.0),
        counts=ImportCounts(created=job.created, updated=job.updated, unchanged=job.unchanged, failed=job.failed),
        errors=[ImportRowError(row=e.row_number, field=e.field, reason=e.reason) for e in errors],
        errors_total=job.error_count, errors_stored=job.errors_stored, links={"self": f"/v1/contacts/imports/{job.id}"})
