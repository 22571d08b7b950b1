"""A column mapping for CSV and XLSX imports: the file's own headers named as our columns, e.g.
`{"Mobile": "phones", "نام": "given_name", "Email address": "email", "Notes": null}`.

A header the mapping names is read as its target (any column import_formats knows: given_name,
phones, email, address_line1, attribute.<name>, consent.sms, ...); a target of null or "" skips
that column without a warning. Headers the mapping does not name keep their own names. Headers
are matched as written, then ignoring case and surrounding space."""
from __future__ import annotations

from typing import Any

import orjson

from services.common.errors import InvalidInput

from .import_formats import csv_plan

MAX_ENTRIES = 500
SKIP = "__skipped__"  # no column is named this: the plan ignores it, and it is not reported unknown


def parse_mapping(raw: str | None) -> dict[str, str] | None:
    """The `mapping` query parameter (a JSON object) checked: every target a known column."""
    if raw is None or not raw.strip():
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput.field(["query", "mapping"], f"is not JSON: {exc}") from None
    return check_mapping(value)


def check_mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise InvalidInput.field(["query", "mapping"], 'must be a JSON object such as {"Mobile": "phones"}')
    if len(value) > MAX_ENTRIES:
        raise InvalidInput.field(["query", "mapping"], f"names more than {MAX_ENTRIES} columns")
    mapping: dict[str, str] = {}
    for source, target in value.items():
        if target is None or (isinstance(target, str) and not target.strip()):
            mapping[source.strip()] = SKIP
            continue
        if not isinstance(target, str) or not csv_plan([target]).columns:
            raise InvalidInput.field(["query", "mapping", source], f"{target!r} is not a contact column (such as "
                                     "given_name, phones, email, city, attribute.<name>, consent.sms)")
        mapping[source.strip()] = target.strip()
    return mapping


def mapped_header(header: list[str], mapping: dict[str, str] | None) -> list[str]:
    if not mapping:
        return header
    folded = {source.casefold(): target for source, target in mapping.items()}
    return [mapping.get(cell.strip(), folded.get(cell.strip().casefold(), cell)) for cell in header]


def skipped(names: tuple[str, ...]) -> tuple[str, ...]:
    """Unknown header names, without the ones a mapping skipped on purpose."""
    return tuple(name for name in names if name != SKIP)
