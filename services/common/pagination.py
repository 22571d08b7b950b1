"""Opaque cursors for keyset pagination: the sort key and id of the last item seen."""
from __future__ import annotations

import base64
from typing import Any

import orjson

from .errors import InvalidInput

MAX_LIMIT = 500


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str, *, expected_length: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception:
        values = None
    if not isinstance(values, list) or len(values) != expected_length:
        raise InvalidInput.field(["query", "cursor"], "is not a cursor this list gave out; start again without it")
    return values
