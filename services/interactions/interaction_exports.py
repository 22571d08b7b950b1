"""Streaming export of interactions as CSV (one row per interaction, for a spreadsheet) or JSON
Lines (the whole interaction as the API answers it), with the list's filters, newest first.

Read in keyset pages on (occurred_at, id), each page its own short read, and every page handed
out is in the audit trail (`interactions.export`). CSV keeps `metadata` as one JSON cell."""
from __future__ import annotations

from typing import Any, AsyncIterator

import orjson
from sqlalchemy import select, tuple_

from services.common import audit
from services.common.events import rfc3339
from services.common.export_streams import CSV_MEDIA_TYPE, JSONL_MEDIA_TYPE, csv_stream, jsonl_stream
from services.common.service_app import ServiceContext

from . import interaction_store as store
from .interaction_queries import InteractionFilter
from .models import interactions
from .schemas import InteractionPublic

PAGE_SIZE = 1000
COLUMNS = ("id", "customer_id", "type", "kind", "channel", "direction", "occurred_at", "subject", "body", "notes",
           "duration_seconds", "agent", "campaign_id", "outcome", "url", "rating", "nps", "status", "metadata",
           "created_at", "updated_at")


def interaction_cells(interaction: InteractionPublic) -> list[Any]:
    values = interaction.model_dump()
    values.update(metadata=orjson.dumps(interaction.metadata).decode() if interaction.metadata else None,
                  occurred_at=rfc3339(interaction.occurred_at), created_at=rfc3339(interaction.created_at),
                  updated_at=rfc3339(interaction.updated_at))
    return [values[name] for name in COLUMNS]


async def interaction_pages(ctx: ServiceContext, f: InteractionFilter) -> AsyncIterator[list[InteractionPublic]]:
    last: tuple | None = None
    while True:
        async with ctx.read_session_factory() as session:
            conditions = f.conditions(pin_index=session.bind.dialect.name == "sqlite")
            if last:
                conditions.append(tuple_(interactions.c.occurred_at, interactions.c.id) < tuple_(*last))
            rows = (await session.execute(select(interactions).where(*conditions).order_by(
                interactions.c.occurred_at.desc(), interactions.c.id.desc()).limit(PAGE_SIZE))).all()
        if rows:
            yield [store.to_public(row) for row in rows]
        if len(rows) < PAGE_SIZE:
            return
        last = (rows[-1].occurred_at, rows[-1].id)


async def export_interactions(ctx: ServiceContext, f: InteractionFilter, *, fmt: str,
                              bom: bool = False) -> tuple[str, AsyncIterator[bytes]]:
    """(media type, body chunks). The filters are checked (422) before the first byte."""
    f.conditions()

    async def audited(page: list[InteractionPublic]) -> None:
        await audit.record_read(ctx, "interactions.export", [i.customer_id for i in page],
                                detail={"format": fmt, "interactions": len(page)})

    pages = interaction_pages(ctx, f)
    if fmt == "jsonl":
        return JSONL_MEDIA_TYPE, jsonl_stream(pages, lambda i: i.model_dump(mode="json"), audited)
    return CSV_MEDIA_TYPE, csv_stream(COLUMNS, pages, interaction_cells, audited, bom=bom)
