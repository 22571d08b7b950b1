"""Opaque cursors for keyset pagination: the sort key and id of the last item seen."""
from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, or_

from .errors import InvalidInput

NOT_OURS = "is not a cursor this list gave out; start again without it"


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str, *, expected_length: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception:
        values = None
    if not isinstance(values, list) or len(values) != expected_length:
        raise InvalidInput.field(["query", "cursor"], NOT_OURS)
    return values


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


def sort_column(sort: str, columns: dict[str, Any]) -> tuple[Any, bool]:
    """`-created_at` -> (the created_at column, descending); 422 naming `sort` for another name."""
    column = columns.get(sort.lstrip("-"))
    if column is None:
        raise InvalidInput.field(["query", "sort"], f"must be one of {', '.join(columns)} (prefix - for descending)")
    return column, sort.startswith("-")
