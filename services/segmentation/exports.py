"""Export of a segment's members as CSV or JSON Lines, streamed page by page.

Given a channel, only customers who granted consent on it are included (DESIGN.md: what a
customer has not consented to is never exported for that channel), only those with the contact
point the channel needs (an email for email; a phone for sms, phone, whatsapp, telegram), and
each row holds who the customer is (id, names, language: what addressing them needs) and that
channel's contact point, nothing else: no other channel's contact point, no profile or scores.
Without a channel the export is for looking at the segment, not for reaching anyone: the
profile's columns without any contact point. Every page handed out is in the audit trail.
"""
from __future__ import annotations

import csv
import io
from typing import AsyncIterator

import orjson
from sqlalchemy import select

from services.common import audit
from services.common.errors import InvalidInput
from services.common.service_app import ServiceContext

from .models import CONSENT_CHANNELS, ProfileRow, SegmentMemberRow
from .profile_store import public
from .segment_commands import load_segment

P, SM = ProfileRow.__table__, SegmentMemberRow.__table__
WHO = ("customer_id", "given_name", "family_name", "display_name", "preferred_language")
# Each channel's contact point in the profile (postal: the profile holds country and city only;
# the contacts export with channel=postal has whole addresses; push: a sender keys on the id).
CONTACT_POINTS = {"email": ("email",), "sms": ("phone",), "phone": ("phone",), "whatsapp": ("phone",),
                  "telegram": ("phone",), "postal": ("country", "city"), "push": ()}
WITHOUT_CHANNEL = (*WHO, "country", "city", "lifecycle_stage", "rfm_segment")
NEEDS = {"email": "email", "sms": "phone", "phone": "phone", "whatsapp": "phone", "telegram": "phone"}
PAGE = 1000


def export_columns(channel: str | None) -> tuple[str, ...]:
    """The columns of an export for `channel` (None: no channel), `entered_at` last."""
    return (*(WHO + CONTACT_POINTS[channel] if channel else WITHOUT_CHANNEL), "entered_at")


async def check_export(ctx: ServiceContext, segment_id: str, channel: str | None, fmt: str) -> None:
    """Fails before streaming starts, so a bad request is a 4xx, not a broken download."""
    if fmt not in ("csv", "jsonl"):
        raise InvalidInput.field(["query", "format"], "use csv or jsonl")
    if channel is not None and channel not in CONSENT_CHANNELS:
        raise InvalidInput.field(["query", "channel"], f"unknown channel; use one of {', '.join(CONSENT_CHANNELS)}")
    async with ctx.read_session_factory() as session:
        await load_segment(session, segment_id)


async def export_rows(ctx: ServiceContext, segment_id: str, channel: str | None, fmt: str) -> AsyncIterator[bytes]:
    names = export_columns(channel)
    columns = [P.c[name] for name in names if name != "entered_at"] + [SM.c.entered_at]
    query = (select(*columns).join(P, P.c.customer_id == SM.c.customer_id)
             .where(SM.c.segment_id == segment_id, SM.c.active.is_(True), P.c.status == "active"))
    if channel:
        query = query.where(P.c[f"consent_{channel}"].is_(True))
        if channel in NEEDS:
            query = query.where(P.c[NEEDS[channel]].is_not(None))
    if fmt == "csv":
        yield _csv_line(names)
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
            chunk.append(_csv_line([item.get(c) for c in names]) if fmt == "csv"
                         else orjson.dumps({c: item.get(c) for c in names}) + b"\n")
        await audit.record_read(ctx, "segments.export", [row["customer_id"] for row in rows],
                                resource=f"segment:{segment_id}", detail={"channel": channel, "format": fmt})
        yield b"".join(chunk)


def _csv_line(values) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue().encode()
