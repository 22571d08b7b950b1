"""Routes for duplicates, merge and unmerge. Handlers parse and answer; duplicates.py and
merging.py do the work."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from services.common.preconditions import IfMatch
from services.common.service_app import ContextDep

from . import duplicates, merging
from .merge_schemas import DuplicateList, MergeRecordPage, MergeRequest, MergeResult, UnmergeRequest, UnmergeResult

router = APIRouter(prefix="/v1/contacts", tags=["merges"])


@router.get("/{contact_id}/duplicates", response_model=DuplicateList,
            summary="Likely duplicates: a similar normalized name plus a shared attribute, best first")
async def list_duplicates(contact_id: str, ctx: ContextDep,
                          limit: Annotated[int, Query(ge=1, le=100)] = 20) -> DuplicateList:
    return await duplicates.find_duplicates(ctx, contact_id, limit=limit)


@router.post("/{contact_id}/merge", response_model=MergeResult,
             summary="Fold other contacts into this one; dry_run shows the result and conflicts only",
             responses={404: {"description": "An unknown contact"},
                        409: {"description": "A contact already merged or erased"},
                        412: {"description": "If-Match is stale, or a contact changed during the merge"}})
async def merge_contacts(contact_id: str, body: MergeRequest, ctx: ContextDep,
                         dry_run: Annotated[bool | None, Query(description="Same as dry_run in the body")] = None,
                         if_match: IfMatch = None):
    result = await merging.merge_contacts(ctx, contact_id, body.contact_ids, dry_run=bool(dry_run) or body.dry_run,
                                          if_match=if_match)
    headers = {} if result.dry_run else {"ETag": f'"{result.survivor.version}"'}
    return JSONResponse(result.model_dump(mode="json"), headers=headers)


@router.get("/{contact_id}/merges", response_model=MergeRecordPage,
            summary="Merges where this contact is the survivor or the absorbed one, newest first")
async def list_merges(contact_id: str, ctx: ContextDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      cursor: Annotated[str | None, Query(max_length=1000)] = None) -> MergeRecordPage:
    return await merging.list_merges(ctx, contact_id, limit=limit, cursor=cursor)


@router.post("/{contact_id}/unmerge", response_model=UnmergeResult,
             summary="Undo one merge into this contact: the absorbed contact comes back with its own data",
             responses={409: {"description": "Already undone, the absorbed contact was erased, "
                                             "or this contact was itself merged since"}})
async def unmerge_contact(contact_id: str, body: UnmergeRequest, ctx: ContextDep) -> UnmergeResult:
    return await merging.unmerge_contact(ctx, contact_id, merge_id=body.merge_id, contact_id=body.contact_id)
