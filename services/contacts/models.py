"""The contacts service's tables (its own database; nobody else reads them).

A contact is stored as its full document (`data`, the same shape as ContactPublic) plus the
columns that lists filter and sort on, and two index tables kept in step on every save:
`contact_identities` (emails, phones and external ids; the unique key that makes duplicate
protection and concurrent upserts race-free) and `contact_facets` (tags, cities, countries and
granted consent channels, for filters).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.common.kernel_tables import add_kernel_tables
from services.common.sqltypes import UtcDateTime


class ContactsModel(SQLModel, registry=registry()):
    """Base of this service's tables: a registry of its own keeps its metadata separate."""


metadata = ContactsModel.metadata
kernel = add_kernel_tables(metadata)


def _time(**kw) -> Any:
    return Field(sa_type=UtcDateTime, **kw)


class ContactRow(ContactsModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_created", "created_at", "id"),
        Index("ix_contacts_updated", "updated_at", "id"),
        Index("ix_contacts_sort_name", "sort_name", "id"),
        Index("ix_contacts_stage", "lifecycle_stage"),
        Index("ix_contacts_source", "source"),
    )
    id: str = Field(primary_key=True, max_length=36)
    version: int
    status: str = Field(max_length=16)  # active | merged | erased
    merged_into: str | None = Field(default=None, max_length=36)
    lifecycle_stage: str = Field(max_length=16)
    source: str | None = Field(default=None, max_length=64)
    sort_name: str = Field(default="", max_length=400)
    search_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    data: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()


class IdentityRow(ContactsModel, table=True):
    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("kind", "system", "value", name="uq_identity"),
                      Index("ix_identities_contact", "contact_id"))
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # email | phone | external
    system: str = Field(default="", max_length=64)
    value: str = Field(max_length=320)
    contact_id: str = Field(foreign_key="contacts.id", max_length=36)


class FacetRow(ContactsModel, table=True):
    __tablename__ = "contact_facets"
    __table_args__ = (Index("ix_facets_lookup", "facet", "value", "contact_id"),)
    contact_id: str = Field(foreign_key="contacts.id", primary_key=True, max_length=36)
    facet: str = Field(primary_key=True, max_length=16)  # tag | city | country | consent
    value: str = Field(primary_key=True, max_length=200)


class ConsentEventRow(ContactsModel, table=True):
    """Consent history: every grant and withdrawal, never updated."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_events_contact", "contact_id", "recorded_at"),)
    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(foreign_key="contacts.id", max_length=36)
    channel: str = Field(max_length=16)
    status: str = Field(max_length=16)
    source: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=1000)
    at: datetime = _time()
    recorded_at: datetime = _time()


class MergeRow(ContactsModel, table=True):
    """One contact folded into another, with what came from where, so it can be undone."""

    __tablename__ = "contact_merges"
    __table_args__ = (Index("ix_merges_survivor", "survivor_id"), Index("ix_merges_absorbed", "absorbed_id"))
    id: str = Field(primary_key=True, max_length=36)
    survivor_id: str = Field(max_length=36)
    absorbed_id: str = Field(max_length=36)
    absorbed_before: dict = Field(sa_column=Column(JSON, nullable=False))
    survivor_before: dict = Field(sa_column=Column(JSON, nullable=False))
    contributions: dict = Field(sa_column=Column(JSON, nullable=False))
    merged_at: datetime = _time()
    unmerged_at: datetime | None = _time(default=None)


class ErasureRow(ContactsModel, table=True):
    """The record that an erasure happened; holds no personal data."""

    __tablename__ = "contact_erasures"
    id: str = Field(primary_key=True, max_length=36)
    contact_id: str = Field(max_length=36, index=True)
    # The erasure as requested: erasing one contact erases everyone merged into the same person,
    # a row each, all with the id of the requested contact's row (GET /v1/privacy/erasures/{id}).
    request_id: str = Field(max_length=36, index=True)
    reason: str | None = Field(default=None, max_length=500)
    requested_by: str | None = Field(default=None, max_length=200)
    erased_at: datetime = _time()


class SuppressedIdentityRow(ContactsModel, table=True):
    """An email, phone or external id of an erased person, as a keyed hash (HMAC-SHA256 with
    CONTACTS_SUPPRESSION_SECRET): enough to recognise it when it comes back, not to read it back
    (suppression.py)."""

    __tablename__ = "suppressed_identities"
    digest: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)  # email | phone | external
    erasure_id: str = Field(max_length=36)
    suppressed_at: datetime = _time()


class ErasureConfirmationRow(ContactsModel, table=True):
    """Another service's word that it removed the data of one erased contact (its
    crm.<aggregate>.erasure_completed.v1 event); one row per erasure row and service."""

    __tablename__ = "erasure_confirmations"
    erasure_id: str = Field(primary_key=True, max_length=36)
    service: str = Field(primary_key=True, max_length=40)
    records_erased: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    completed_at: datetime = _time()
    received_at: datetime = _time()


class ImportJobRow(ContactsModel, table=True):
    """One upload being applied in chunks. `next_offset`/`next_row` move forward in the same
    transaction as each chunk's contacts, so a restart resumes exactly after the last commit.
    The lease (`lease_token`, `lease_until`) lets one process at a time work on a job."""

    __tablename__ = "contact_imports"
    __table_args__ = (Index("ix_imports_status", "status", "created_at"),)
    id: str = Field(primary_key=True, max_length=36)
    status: str = Field(max_length=16)  # queued | running | completed | failed
    format: str = Field(max_length=8)  # csv | jsonl | xlsx
    file_name: str = Field(max_length=200)  # inside settings.import_dir
    file_bytes: int = Field(sa_type=BigInteger)
    next_offset: int = Field(default=0, sa_type=BigInteger)
    next_row: int = Field(default=0, sa_type=BigInteger)
    rows_processed: int = Field(default=0, sa_type=BigInteger)
    created: int = Field(default=0, sa_type=BigInteger)
    updated: int = Field(default=0, sa_type=BigInteger)
    unchanged: int = Field(default=0, sa_type=BigInteger)
    failed: int = Field(default=0, sa_type=BigInteger)
    error_count: int = Field(default=0, sa_type=BigInteger)
    errors_stored: int = Field(default=0)
    warnings: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # How to read the file: {"mapping": {header: column}, "sheet": name} (column_mapping.py, spreadsheets.py).
    options: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    lease_token: str | None = Field(default=None, max_length=36)
    lease_until: datetime | None = _time(default=None)
    # Who uploaded it, for the audit entries of its chunks (services/common/audit.py).
    caller_key_id: str | None = Field(default=None, max_length=36)
    caller_key_name: str | None = Field(default=None, max_length=200)
    caller_request_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = _time()
    updated_at: datetime = _time()
    started_at: datetime | None = _time(default=None)
    finished_at: datetime | None = _time(default=None)


class ImportErrorRow(ContactsModel, table=True):
    """A row an import could not apply: its row number, the field and why."""

    __tablename__ = "contact_import_errors"
    __table_args__ = (Index("ix_import_errors_job", "job_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="contact_imports.id", max_length=36)
    row_number: int = Field(sa_type=BigInteger)
    field: str | None = Field(default=None, max_length=200)
    reason: str = Field(sa_column=Column(Text, nullable=False))
