"""Reading an uploaded import file as rows, whatever its format (CSV, XLSX, JSON Lines) and
wherever a job stopped: what the import jobs (imports.py) and the dry run (import_preview.py)
share. The options are the column mapping (column_mapping.py) and the sheet (spreadsheets.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

from services.common.errors import InvalidInput

from .column_mapping import mapped_header, skipped
from .import_formats import CsvPlan, ParsedRow, csv_rows, jsonl_rows, read_csv_header
from .spreadsheets import read_sheet, sheet_rows


@dataclass
class Reader:
    rows: Iterator[ParsedRow]
    plan: CsvPlan | None
    warnings: list[str] = field(default_factory=list)


def check_options(fmt: str, mapping: dict[str, str] | None, sheet: str | None) -> dict[str, Any]:
    if fmt == "jsonl" and mapping:
        raise InvalidInput.field(["query", "mapping"], "applies to CSV and XLSX headers; JSON Lines names its fields")
    if fmt != "xlsx" and sheet:
        raise InvalidInput.field(["query", "sheet"], "applies to XLSX only")
    return {name: value for name, value in (("mapping", mapping), ("sheet", sheet)) if value}


def open_reader(handle: BinaryIO, *, fmt: str, options: dict[str, Any] | None, next_row: int = 0,
                next_offset: int = 0, file_bytes: int = 0) -> Reader:
    """Rows from `next_row`/`next_offset` (0: the start); ValueError when the file cannot be read
    as its format."""
    options = options or {}
    if fmt == "jsonl":
        return Reader(jsonl_rows(handle, offset=next_offset, row=next_row or 1), None)
    mapping = options.get("mapping")
    if fmt == "xlsx":
        sheet = read_sheet(handle, mapping, options.get("sheet"))
        plan, rows = sheet.plan, sheet_rows(sheet, row=next_row or 2, file_bytes=file_bytes)
    else:
        plan, header_end = read_csv_header(handle, lambda header: mapped_header(header, mapping))
        rows = csv_rows(handle, plan, offset=next_offset if next_row > 0 else header_end, row=next_row or 2)
    if not plan.columns:
        raise ValueError("the header names no known column; name them as the import documentation does, or "
                         "give a column mapping (?mapping=)")
    unknown = skipped(plan.unknown)
    warnings = [f"unknown columns ignored: {', '.join(unknown)}"] if unknown else []
    return Reader(rows, plan, warnings)
