"""The contacts service (port 8001): customer records, identities, consent, merges, erasure."""
from __future__ import annotations

from fastapi import FastAPI

from services.common.service_app import create_service_app
from services.common.settings import ServiceSettings

from . import api, api_bulk, api_merges, api_privacy, imports
from .consumers import SUBSCRIPTION
from .models import kernel
from .settings import contacts_settings


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Raises InsecureSettings without a proper CONTACTS_SUPPRESSION_SECRET (or GATEWAY_TOKEN)."""
    settings = contacts_settings(settings)
    settings.check_serving()
    return create_service_app(
        settings=settings, tables=kernel, routers=[api_bulk.router, api_merges.router, api.router, api_privacy.router,
                                              api.events_router],
        title="Contacts", description="Customer records, identities, consent, merges and erasure.",
        tags={"contacts": "Customer records: create, read, search, change, consent",
              "bulk": "Many contacts at once: batch upsert, file import and export",
              "merges": "Duplicates, merges of several records of one person, and unmerges",
              "privacy": "Erasure (right to be forgotten) and its confirmation by every service"},
        unlimited_paths=("/v1/contacts/import",), on_start=imports.resume_on_start,
        subscription=SUBSCRIPTION,
    )
