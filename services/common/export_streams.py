"""Streaming a table out as CSV or JSON Lines, page by page: the shape the contacts, orders and
interactions exports share.

Each page is its own short read (no transaction or connection held while a slow client
downloads), handed to `before_leaving` (the audit entry), if given, before its bytes are sent. CSV cells
that a spreadsheet would run as a formula (= @ tab CR first) get a leading "'", as in the
contacts export."""
from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

import orjson
from fastapi.responses import StreamingResponse

BOM = b"\xef\xbb\xbf"
FORMULA_STARTS = ("=", "@", "\t", "\r")
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
JSONL_MEDIA_TYPE = "application/x-ndjson"
T = TypeVar("T")


def download(what: str, fmt: str, media_type: str, chunks: AsyncIterator[bytes], *, now) -> StreamingResponse:
    """The streamed answer, named for saving: `<what>-<UTC time>.<fmt>`."""
    name = f"{what}-{now.strftime('%Y%m%dT%H%M%SZ')}.{fmt}"
    return StreamingResponse(chunks, media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text[:1] in FORMULA_STARTS else text


async def csv_stream(header: Sequence[str], pages: AsyncIterator[list[T]], cells: Callable[[T], list[Any]],
                     before_leaving: Callable[[list[T]], Awaitable[None]] | None = None, *,
                     bom: bool) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    yield (BOM if bom else b"") + buffer.getvalue().encode()
    async for page in pages:
        if before_leaving is not None:
            await before_leaving(page)
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([cell_text(value) for value in cells(item)] for item in page)
        yield buffer.getvalue().encode()


async def jsonl_stream(pages: AsyncIterator[list[T]], record: Callable[[T], dict[str, Any]],
                       before_leaving: Callable[[list[T]], Awaitable[None]] | None = None) -> AsyncIterator[bytes]:
    async for page in pages:
        if before_leaving is not None:
            await before_leaving(page)
        yield b"".join(orjson.dumps(record(item)) + b"\n" for item in page)
