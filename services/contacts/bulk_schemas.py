"""Wire shapes of the bulk endpoints: batch upsert, import jobs, export."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, SkipValidation

from .schemas import ContactCreate, WireModel

MAX_BATCH_ITEMS = 1000
ImportFormat = Literal["csv", "jsonl", "xlsx"]
ExportFormat = Literal["csv", "jsonl"]
ImportStatus = Literal["queued", "running", "completed", "failed"]


class BatchRequest(WireModel):
    # Items are validated one by one by the use case, so one bad item is a per-item error and
    # never refuses the whole batch; the schema still documents them as ContactCreate.
    items: list[SkipValidation[ContactCreate]] = Field(
        min_length=1, max_length=MAX_BATCH_ITEMS,
        description=f"1 to {MAX_BATCH_ITEMS} contacts; each creates or updates by email, phone or external id")


class BatchItemResult(BaseModel):
    index: int
    status: Literal["created", "updated", "unchanged", "error"]
    id: str | None = None
    version: int | None = None
    error: dict[str, Any] | None = Field(default=None, description="problem+json fields (type, title, status, "
                                                                   "detail, errors) when status is error")


class BatchCounts(BaseModel):
    created: int
    updated: int
    unchanged: int
    error: int


class BatchResponse(BaseModel):
    results: list[BatchItemResult]
    counts: BatchCounts


class ImportCounts(BaseModel):
    created: int
    updated: int
    unchanged: int
    failed: int


class ImportProgress(BaseModel):
    rows_processed: int = Field(description="Rows read so far (blank rows are not counted)")
    bytes_processed: int
    bytes_total: int
    percent: float


class ImportRowError(BaseModel):
    row: int = Field(description="CSV: record number, the header being row 1; XLSX: the sheet's row number; "
                                  "JSON Lines: line number")
    field: str | None = Field(description="The CSV column (or JSON path) at fault, when one is")
    reason: str


class ImportJobPublic(BaseModel):
    id: str
    status: ImportStatus
    format: ImportFormat
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: ImportProgress
    counts: ImportCounts
    warnings: list[str]
    error: str | None = Field(description="Why the job failed, when it did")
    errors: list[ImportRowError] = Field(description="The first row errors (see errors_limit)")
    errors_total: int = Field(description="All row errors, including those beyond the stored first ones")
    errors_stored: int
    links: dict[str, str]


class ImportPreviewRow(BaseModel):
    row: int
    contact: dict[str, Any] = Field(description="The contact's fields as the import would write them: "
                                                "validated and normalized (emails, E.164 phones, ...)")


class ImportDryRun(BaseModel):
    format: ImportFormat
    rows: int = Field(description="Rows read (blank rows are not counted)")
    valid: int = Field(description="Rows the import would write")
    failed: int
    warnings: list[str]
    preview: list[ImportPreviewRow] = Field(description="The first valid rows, as they would be stored")
    errors: list[ImportRowError] = Field(description="Every row error (up to errors_total's first 10,000)")
    errors_total: int
