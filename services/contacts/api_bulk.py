"""Routes for many contacts at once: batch upsert, import jobs, export."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/contacts", tags=["bulk"])
