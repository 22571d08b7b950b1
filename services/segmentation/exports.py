"""Export of a segment's members as CSV or JSON Lines, streamed page by page.

Given a channel, only customers who granted consent on it are included (DESIGN.md: what a
customer has not consented to is never exported for that channel), and only those with the
contact point the channel needs (an email for email; a phone for sms, phone, whatsapp).
"""
from __future__ import annotations

import csv
import io
from typing import AsyncIterator

import orjson
from sqlalchemy import select

from services.common.errors import InvalidInput
from services.common.service_app import ServiceContext

from .models import CONSENT_CHANNELS, ProfileRow, SegmentMemberRow
from .profile_store import public
from .segment_commands import load_segment

P, SM = ProfileRow.__table__, SegmentMemberRow.__table__
EXPORT_COLUMNS = ("customer_id", "given_name", "family_name", "display_name", "email", "phone", "preferred_language",
                  "country", "city", "lifecycle_stage", "rfm_segment", "entered_at")
NEEDS = {"email": "email", "sms": "phone", "phone": "phone", "whatsapp": "phone", "telegram": "phone"}
PAGE = 1000


async def check_export(ctx: ServiceContext, segment_id: str, channel: str | None, fmt: str) -> None:
    """Fails before streaming starts, so a bad request is a 4xx, not a broken download."""
    if fmt not in ("csv", "jsonl"):
        raise InvalidInput.field(["query", "format"], "use csv or jsonl")
    if channel is not None and channel not in CONSENT_CHANNELS:
        raise InvalidInput.field(["query", "channel"], f"unknown channel; use one of {', '.join(CONSENT_CHANNELS)}")
    async with ctx.read_session_factory() as session:
        await load_segment(session, segment_id)


async def export_rows(ctx: ServiceContext, segment_id: str, channel: str | None, fmt: str) -> AsyncIterator[bytes]:
    columns = [P.c[name] for name in EXPORT_COLUMNS if name != "entered_at"] + [SM.c.entered_at]
    query = (select(*columns).join(P, P.c.customer_id == SM.c.customer_id)
             .where(SM.c.segment_id == segment_id, SM.c.active.is_(True), P.c.status == "active"))
    if channel:
        query = query.where(P.c[f"consent_{channel}"].is_(True))
        if channel in NEEDS:
            query = query.where(P.c[NEEDS[channel]].is_not(None))
    if fmt == "csv":
        yield _csv_line(EXPORT_COLUMNS)
    after = ""
    while True:
        async with ctx.read_session_factory() as session:
            rows = (await session.execute(query.where(SM.c.customer_id > after)
                                          .order_by(SM.c.customer_id).limit(PAGE))).mappings().all()
        if not rows:
            return
        after = rows[-1]["customer_id"]
        chunk = []
        for row in rows:
            item = public(dict(row))
            chunk.append(_csv_line([item.get(c) for c in EXPORT_COLUMNS]) if fmt == "csv"
                         else orjson.dumps({c: item.get(c) for c in EXPORT_COLUMNS}) + b"\n")
        yield b"".join(chunk)


def _csv_line(values) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue().encode()
