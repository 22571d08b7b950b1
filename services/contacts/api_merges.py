"""Routes for duplicates, merge and unmerge."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/contacts", tags=["merges"])
