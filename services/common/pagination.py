"""Opaque cursors for keyset pagination: the sort key and id of the last item seen, and the
listing they belong to.

A cursor carries a digest of the request it was given out for: its path and every query
parameter but `cursor` and `limit` (filters, sort). Reused with other filters or another sort it
would answer a wrong page, so it is refused (422) instead. `bind_cursors_to` sets that listing
for the request being answered (services/common/request_checks.py does, for every route)."""
from __future__ import annotations

import base64
import hashlib
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, or_
from starlette.requests import Request

from .errors import InvalidInput

NOT_OURS = "is not a cursor this list gave out; start again without it"
OTHER_LISTING = ("was given out for other filters or another sort; send the same ones again (only limit may "
                 "change), or start again without it")
# Query parameters a client may change from one page to the next.
PAGING_PARAMETERS = frozenset({"cursor", "limit"})
_listing: ContextVar[str] = ContextVar("crm_cursor_listing", default="")


def bind_cursors_to(request: Request) -> None:
    """Cursors given out or read while answering `request` belong to its listing."""
    pairs = sorted((name, value) for name, value in request.query_params.multi_items()
                   if name not in PAGING_PARAMETERS)
    digest = hashlib.sha256(orjson.dumps([request.url.path, pairs])).hexdigest()[:12]
    _listing.set(digest)


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([*values, _listing.get()])).decode().rstrip("=")


def decode_cursor(cursor: str, *, expected_length: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception:
        values = None
    if not isinstance(values, list) or len(values) != expected_length + 1 or not isinstance(values[-1], str):
        raise InvalidInput.field(["query", "cursor"], NOT_OURS)
    if values[-1] != _listing.get():
        raise InvalidInput.field(["query", "cursor"], OTHER_LISTING)
    return values[:-1]


def cursor_after(value: Any, row_id: Any) -> str:
    """The cursor of a page whose last row has this sort value and id."""
    return encode_cursor([value.isoformat() if isinstance(value, datetime) else value, row_id])


def rows_after(cursor: str, column, id_column, *, descending: bool, is_time: bool = True):
    """The condition for the rows after `cursor` in (column, id) order (`cursor_after` made it)."""
    last_value, last_id = decode_cursor(cursor, expected_length=2)
    if is_time:
        try:
            last_value = datetime.fromisoformat(last_value)
        except (TypeError, ValueError):
            raise InvalidInput.field(["query", "cursor"], NOT_OURS) from None
    if descending:
        return or_(column < last_value, and_(column == last_value, id_column < last_id))
    return or_(column > last_value, and_(column == last_value, id_column > last_id))


def sort_values(names) -> list[str]:
    """What a `sort` query parameter takes, for its schema: each name, ascending or descending (-)."""
    return [*names, *(f"-{name}" for name in names)]


def sort_column(sort: str, columns: dict[str, Any]) -> tuple[Any, bool]:
    """`-created_at` -> (the created_at column, descending); 422 naming `sort` for another name."""
    column = columns.get(sort.lstrip("-"))
    if column is None:
        raise InvalidInput.field(["query", "sort"], f"must be one of {', '.join(columns)} (prefix - for descending)")
    return column, sort.startswith("-")
