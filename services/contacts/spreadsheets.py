"""Excel workbooks (.xlsx, and the .xls/.ods calamine also reads) as import rows. The first
sheet, or the one named, is read with python-calamine; its first row is the header, with the
CSV import's column names (import_formats), so a sheet's rows become the same items as a CSV's.

Cell values as a person typed them: a whole number stays whole (a mobile saved in a number cell,
9121234567, is "9121234567", which phones then reads with the default region), other numbers in
their shortest exact form, dates as YYYY-MM-DD, TRUE/FALSE as true/false. Row numbers are the
sheet's (the header is row 1). The whole sheet is read into memory: fine for the hundred
thousand rows a spreadsheet holds; larger lists belong in CSV."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, BinaryIO, Iterator

import python_calamine

from .column_mapping import mapped_header
from .import_formats import CsvPlan, ParsedRow, csv_plan, csv_row_to_item

MEDIA_TYPES = {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx"}


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


@dataclass
class Sheet:
    plan: CsvPlan
    rows: list[list[Any]]  # every row after the header, as calamine read it

    @property
    def total(self) -> int:
        return len(self.rows)


def read_sheet(stream: BinaryIO, mapping: dict[str, str] | None = None, sheet: str | None = None) -> Sheet:
    """The header's plan and the rows; ValueError (for the job, or a 422) when it cannot be read."""
    stream.seek(0)
    try:
        workbook = python_calamine.CalamineWorkbook.from_filelike(stream)
        chosen = workbook.get_sheet_by_name(sheet) if sheet else workbook.get_sheet_by_index(0)
        rows = chosen.to_python(skip_empty_area=False)
    except python_calamine.WorksheetNotFound:
        raise ValueError(f"the workbook has no sheet named {sheet!r}") from None
    except Exception as exc:  # noqa: BLE001 - calamine's errors are many; all mean "not a readable workbook"
        raise ValueError(f"the file is not a workbook that can be read ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise ValueError("the sheet is empty: its first row must be the header")
    header = mapped_header([cell_text(cell) for cell in rows[0]], mapping)
    return Sheet(csv_plan(header), rows[1:])


def sheet_rows(sheet: Sheet, *, row: int, file_bytes: int) -> Iterator[ParsedRow]:
    """Rows from sheet row `row` on (2: the first after the header). Blank rows are skipped and
    still counted. `end_offset` is an estimate in bytes, for the job's progress only."""
    for index in range(row - 2, sheet.total):
        cells = [cell_text(cell) for cell in sheet.rows[index]]
        end = file_bytes * (index + 1) // sheet.total
        if not any(cell.strip() for cell in cells):
            continue
        item, errors = csv_row_to_item(sheet.plan, cells)
        yield ParsedRow(index + 2, None if errors else item, errors, end)


