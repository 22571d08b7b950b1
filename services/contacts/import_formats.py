"""CSV and JSON Lines rows to ContactCreate-shaped dicts, and back. Pure: no database, no files
opened here (readers take any binary stream), so every rule below has a unit test.

CSV columns (header row required; names are case-insensitive, order free; UTF-8, a BOM is fine):

    given_name, family_name, display_name, lifecycle_stage, source, birth_date (YYYY-MM-DD),
    gender, marital_status, education, occupation, income_band, preferred_language
                                    one value each
    email / emails, phone / phones, tags, interests
                                    several values separated by ";"
    external_id / external_ids      "system:id", several separated by ";"
    address_line1, address_line2, city, region, postal_code, country
                                    together one address; country (ISO 3166 alpha-2) is then required
    attribute.<name>, preference.<name>, social.<network>
                                    one key each; values stay text ("true", "42" are strings;
                                    use JSON Lines for typed values)
    consent.<channel>               granted | withdrawn (channels as in the API: email, sms, ...)
    id, version, status, created_at, updated_at
                                    written by export, ignored by import (so exports re-import)

An empty cell means "not given": it never clears a stored value. Columns with other names are
reported once as a job warning and ignored. A row number counts the header as row 1 and then
one per CSV record (a quoted field may span lines). JSON Lines: one ContactCreate object per
line; the read-only fields of an exported contact (id, version, ...) are dropped. Cells that
export had to defuse against spreadsheet formulas (a leading "'" before = @ tab or CR) get
their quote removed again.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import orjson

from services.common.errors import UnsupportedMediaType
from services.common.export_streams import BOM, FORMULA_STARTS  # the exports defuse formulas; imports undo it

from .schemas import CONSENT_CHANNELS

SCALAR_COLUMNS = ("given_name", "family_name", "display_name", "lifecycle_stage", "source", "birth_date",
                  "gender", "marital_status", "education", "occupation", "income_band", "preferred_language")
LIST_COLUMNS = {"email": "emails", "emails": "emails", "phone": "phones", "phones": "phones",
                "tags": "tags", "interests": "interests"}
ADDRESS_COLUMNS = {"address_line1": "line1", "address_line2": "line2", "city": "city", "region": "region",
                   "postal_code": "postal_code", "country": "country"}
EXTERNAL_COLUMNS = ("external_id", "external_ids")
MAP_PREFIXES = {"attribute.": "attributes", "preference.": "preferences", "social.": "social_handles"}
CONSENT_PREFIX = "consent."
READ_ONLY_COLUMNS = ("id", "version", "status", "merged_into", "created_at", "updated_at")
SEPARATOR = ";"
MAX_LINE_BYTES = 1 << 20  # no contact needs more; a longer line is a row error, never a memory spike
MEDIA_TYPES = {"text/csv": "csv", "application/csv": "csv", "application/x-ndjson": "jsonl",
               "application/jsonl": "jsonl", "application/x-jsonlines": "jsonl", "application/jsonlines": "jsonl",
               "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx"}
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def detect_format(requested: str | None, content_type: str | None) -> str:
    """`?format=` wins; otherwise the Content-Type decides. Only UTF-8 is read."""
    media_type, _, params = (content_type or "").partition(";")
    charset = next((p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";")
                    if p.strip().lower().startswith("charset=")), "utf-8")
    if charset not in ("utf-8", "utf8") and requested != "xlsx" and media_type.strip().lower() != XLSX_MEDIA_TYPE:
        raise UnsupportedMediaType(f"charset {charset} is not supported; send UTF-8")
    if requested:
        return requested
    fmt = MEDIA_TYPES.get(media_type.strip().lower())
    if fmt is None:
        raise UnsupportedMediaType(
            f"cannot import {media_type.strip() or 'a body without Content-Type'}; send text/csv, "
            f"{XLSX_MEDIA_TYPE} (Excel) or application/x-ndjson (JSON Lines), or name the format with "
            "?format=csv|xlsx|jsonl")
    return fmt


@dataclass(frozen=True)
class RowError:
    field: str | None
    reason: str


@dataclass
class ParsedRow:
    row: int  # CSV record number (header = 1) or JSONL line number
    item: dict | None  # None when the row could not be read at all
    errors: list[RowError]
    end_offset: int  # byte offset just after this row: where a resumed job starts reading


@dataclass(frozen=True)
class CsvPlan:
    """What each header cell feeds: (cell index, kind, target)."""

    columns: tuple[tuple[int, str, str], ...]
    width: int
    unknown: tuple[str, ...]
    column_of_field: dict[str, str] = field(default_factory=dict)  # "emails" -> "email" as written


def csv_plan(header: list[str]) -> CsvPlan:
    columns, unknown, named = [], [], {}
    for index, raw in enumerate(header):
        name = raw.strip()
        lower = name.lower()
        prefix = next((p for p in (*MAP_PREFIXES, CONSENT_PREFIX) if lower.startswith(p)), None)
        if lower in SCALAR_COLUMNS:
            columns.append((index, "scalar", lower))
        elif lower in LIST_COLUMNS:
            columns.append((index, "list", LIST_COLUMNS[lower]))
            named[LIST_COLUMNS[lower]] = name
        elif lower in ADDRESS_COLUMNS:
            columns.append((index, "address", ADDRESS_COLUMNS[lower]))
        elif lower in EXTERNAL_COLUMNS:
            columns.append((index, "external", "external_ids"))
            named["external_ids"] = name
        elif prefix == CONSENT_PREFIX and lower[len(prefix):] in CONSENT_CHANNELS:
            columns.append((index, "consent", lower[len(prefix):]))
        elif prefix in MAP_PREFIXES and len(name) > len(prefix):
            columns.append((index, MAP_PREFIXES[prefix], name[len(prefix):]))
        elif lower not in READ_ONLY_COLUMNS and name:
            unknown.append(name)
    return CsvPlan(tuple(columns), len(header), tuple(unknown), named)


def _cell(value: str) -> str:
    value = value.strip()
    if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_STARTS:
        return value[1:]
    return value


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(SEPARATOR) if part.strip()]


def csv_row_to_item(plan: CsvPlan, cells: list[str]) -> tuple[dict, list[RowError]]:
    """The ContactCreate-shaped dict of one record; errors only for what the CSV itself gets wrong
    (ContactCreate validation happens in the upsert, for CSV and JSON alike)."""
    item: dict = {}
    errors: list[RowError] = []
    if len(cells) > plan.width and any(c.strip() for c in cells[plan.width:]):
        errors.append(RowError("row", f"has {len(cells)} cells but the header names {plan.width} columns"))
    address: dict = {}
    for index, kind, target in plan.columns:
        value = _cell(cells[index]) if index < len(cells) else ""
        if not value:
            continue
        if kind == "scalar":
            item[target] = value
        elif kind == "list":
            item.setdefault(target, []).extend(_split(value))
        elif kind == "address":
            address[target] = value
        elif kind == "external":
            for part in _split(value):
                system, sep, ident = part.partition(":")
                if not sep or not system.strip() or not ident.strip():
                    errors.append(RowError(plan.column_of_field.get("external_ids", "external_id"),
                                           f"{part!r} is not system:id (such as shopify:1234)"))
                    continue
                item.setdefault("external_ids", []).append({"system": system.strip(), "id": ident.strip()})
        elif kind == "consent":
            status = value.lower()
            if status not in ("granted", "withdrawn"):
                errors.append(RowError(f"consent.{target}", f"{value!r} is neither granted nor withdrawn"))
                continue
            item.setdefault("consent", {})[target] = {"status": status, "source": "import"}
        else:  # attributes, preferences, social_handles
            item.setdefault(kind, {})[target] = value
    if address:
        item["addresses"] = [address]
    return item, errors


def column_for(loc: list, plan: CsvPlan | None) -> str:
    """The CSV column (or, for JSON Lines, the dotted path) a validation error points at."""
    parts = [str(p) for p in loc]
    if plan is None or not parts:
        return ".".join(parts)
    head = parts[0]
    if head == "addresses" and len(parts) > 2:
        return next((col for col, key in ADDRESS_COLUMNS.items() if key == parts[2]), head)
    if head in ("attributes", "preferences", "social_handles") and len(parts) > 1:
        prefix = next(p for p, target in MAP_PREFIXES.items() if target == head)
        return prefix + parts[1]
    if head == "consent" and len(parts) > 1:
        return CONSENT_PREFIX + parts[1]
    return plan.column_of_field.get(head, head)


def jsonl_line_to_item(text: str) -> tuple[dict | None, list[RowError]]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, [RowError("line", f"not valid JSON: {exc}")]
    if not isinstance(value, dict):
        return None, [RowError("line", "must be a JSON object (one contact)")]
    for name in READ_ONLY_COLUMNS:
        value.pop(name, None)
    return value, []


class _Lines:
    """Binary lines decoded as UTF-8, counting bytes so every record knows where it ends. A line
    that is not UTF-8 or longer than MAX_LINE_BYTES sets `problem` (for the record it is in)
    instead of stopping the file; an over-long line is skipped without being held in memory."""

    def __init__(self, stream: BinaryIO, offset: int) -> None:
        self.stream, self.offset, self.problem = stream, offset, None

    def __iter__(self) -> Iterator[str]:
        while raw := self.stream.readline(MAX_LINE_BYTES + 1):
            if self.offset == 0 and raw.startswith(BOM):
                raw, self.offset = raw[len(BOM):], len(BOM)
            self.offset += len(raw)
            if len(raw) > MAX_LINE_BYTES:
                while not raw.endswith(b"\n") and (raw := self.stream.readline(MAX_LINE_BYTES)):
                    self.offset += len(raw)
                self.problem = f"is longer than {MAX_LINE_BYTES // 1024} KiB"
                yield "\n"
                continue
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                self.problem = "is not valid UTF-8"
                yield raw.decode("utf-8", "replace")

    def take_problem(self) -> str | None:
        problem, self.problem = self.problem, None
        return problem


def read_csv_header(stream: BinaryIO, rename=None) -> tuple[CsvPlan, int]:
    """The plan from the header record (its names passed through `rename`, a column mapping) and
    the offset just after it; ValueError if there is none."""
    stream.seek(0)
    lines = _Lines(stream, 0)
    try:
        header = next(csv.reader(iter(lines)))
    except (StopIteration, csv.Error) as exc:
        raise ValueError(f"the file has no readable CSV header: {exc or 'it is empty'}") from None
    if lines.problem:
        raise ValueError(f"the CSV header {lines.problem}; save the file as UTF-8 (CSV UTF-8 in Excel)")
    return csv_plan(rename(header) if rename else header), lines.offset


def csv_rows(stream: BinaryIO, plan: CsvPlan, *, offset: int, row: int) -> Iterator[ParsedRow]:
    """Records from `offset` on (just after the header, or where a job stopped); `row` is the
    number of the first one. Blank records are skipped; they still count as rows."""
    stream.seek(offset)
    lines = _Lines(stream, offset)
    reader = csv.reader(iter(lines))
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParsedRow(row, None, [RowError("row", f"malformed CSV: {exc}")], lines.offset)
            row += 1
            continue
        problem = lines.take_problem()
        if problem:
            yield ParsedRow(row, None, [RowError("row", problem)], lines.offset)
        elif any(cell.strip() for cell in cells):
            item, errors = csv_row_to_item(plan, cells)
            yield ParsedRow(row, None if errors else item, errors, lines.offset)
        row += 1


def jsonl_rows(stream: BinaryIO, *, offset: int, row: int) -> Iterator[ParsedRow]:
    """Lines from `offset` on; `row` is the line number of the first one. Blank lines are skipped."""
    stream.seek(offset)
    lines = _Lines(stream, offset)
    for text in lines:
        problem = lines.take_problem()
        if problem:
            yield ParsedRow(row, None, [RowError("line", problem)], lines.offset)
        elif text.strip():
            item, errors = jsonl_line_to_item(text)
            yield ParsedRow(row, item, errors, lines.offset)
        row += 1
