"""Routes for one contact at a time and for lists. Handlers parse and answer; the use cases
in contact_commands / contact_queries do the work."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.common.event_catalog import asyncapi_document
from services.common.idempotency import StoredResponse, idempotent, to_json_response
from services.common.pagination import sort_values
from services.common.preconditions import IfMatch
from services.common.service_app import ContextDep
from services.common.wire_types import EMAIL_FORMAT, PHONE_FORMAT, IdempotencyKeyHeader, Instant

from . import contact_commands as commands
from . import contact_queries as queries
from .event_schemas import CONTACT_EVENTS
from .schemas import (CONSENT_CHANNELS, ConsentChange, ConsentChannel, ConsentHistoryEntry, ContactCreate, ContactPage,
                      ContactPublic, ContactUpdate, EraseRequest, ErasureRecordPublic, LifecycleStage)

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])
events_router = APIRouter(tags=["events"])


@events_router.get("/asyncapi.json", summary="AsyncAPI document of crm.contacts.v1 and its event JSON Schemas")
async def asyncapi(ctx: ContextDep) -> dict:
    return asyncapi_document(title="Contacts events", description="Events published by the contacts service.",
                             events=CONTACT_EVENTS, settings=ctx.settings)


def etag(contact: ContactPublic) -> str:
    return f'"{contact.version}"'


def contact_response(contact: ContactPublic) -> JSONResponse:
    return JSONResponse(contact.model_dump(mode="json"), headers={"ETag": etag(contact)})


@router.post("", status_code=201, response_model=ContactPublic, summary="Create a contact",
             responses={409: {"description": "An email, phone or external id already belongs to another contact"}})
async def create_contact(body: ContactCreate, request: Request, ctx: ContextDep,
                         idempotency_key: IdempotencyKeyHeader = None):
    async def create() -> StoredResponse:
        return StoredResponse(201, (await commands.create_contact(ctx, body)).model_dump(mode="json"))

    response, replayed = await idempotent(ctx, request, scope="contacts.create", key=idempotency_key, action=create)
    headers = ({"ETag": f'"{response.body["version"]}"', "Location": f"/v1/contacts/{response.body['id']}"}
               if response.status == 201 else {})
    return to_json_response(response, replayed, headers)


@router.get("", response_model=ContactPage, summary="List and search contacts")
async def list_contacts(
    ctx: ContextDep,
    q: Annotated[str | None, Query(max_length=200, description="Search names, emails and phones; "
                                   "Arabic/Persian letter forms, diacritics, ZWNJ and digits are normalized")] = None,
    tag: Annotated[list[str] | None, Query(description="Has every one of these tags")] = None,
    lifecycle_stage: Annotated[list[LifecycleStage] | None, Query()] = None,
    city: Annotated[str | None, Query(max_length=200)] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
    source: Annotated[str | None, Query(max_length=64)] = None,
    consent: Annotated[ConsentChannel | None, Query(description="Has granted consent on this channel")] = None,
    created_after: Instant | None = None,
    created_before: Instant | None = None,
    updated_after: Instant | None = None,
    updated_before: Instant | None = None,
    sort: Annotated[str, Query(description="created_at, updated_at or display_name; prefix - for descending",
                               json_schema_extra={"enum": sort_values(queries.SORTS)})] = "-created_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> ContactPage:
    f = queries.ContactFilter(tag=tag, lifecycle_stage=lifecycle_stage, city=city, country=country, source=source,
                              consent=consent, created_after=created_after, created_before=created_before,
                              updated_after=updated_after, updated_before=updated_before, q=q)
    items, next_cursor = await queries.list_contacts(ctx, f, sort=sort, limit=limit, cursor=cursor)
    return ContactPage(items=items, next_cursor=next_cursor)


@router.get("/lookup", response_model=ContactPublic, summary="Find the contact owning an email, phone or external id",
            description="Give exactly one of email, phone or external_id (with system).",
            responses={404: {"description": "No contact owns it"}})
async def lookup_contact(ctx: ContextDep,
                         email: Annotated[str | None, Query(json_schema_extra=EMAIL_FORMAT)] = None,
                         phone: Annotated[str | None, Query(json_schema_extra=PHONE_FORMAT)] = None,
                         system: str | None = None, external_id: str | None = None):
    return contact_response(await queries.lookup(ctx, email=email, phone=phone, system=system, external_id=external_id))


@router.get("/{contact_id}", response_model=ContactPublic, summary="Read a contact (a merged one redirects, 307)")
async def get_contact(contact_id: str, ctx: ContextDep):
    return contact_response(await queries.get_contact(ctx, contact_id))


@router.patch("/{contact_id}", response_model=ContactPublic,
              summary="Change a contact; send If-Match with the ETag you read (412 when stale)",
              responses={409: {"description": "An email, phone or external id already belongs to another contact, "
                                              "or the contact was merged into another"}})
async def update_contact(contact_id: str, body: ContactUpdate, ctx: ContextDep,
                         if_match: IfMatch = None):
    return contact_response(await commands.update_contact(ctx, contact_id, body, if_match=if_match))


@router.delete("/{contact_id}", status_code=204,
               summary="Remove a contact: the same as erase (personal data removed, tombstone and audit record kept)")
async def delete_contact(contact_id: str, ctx: ContextDep):
    await commands.erase_contact(ctx, contact_id, EraseRequest(reason="deleted through the API"))
    return Response(status_code=204)


@router.put("/{contact_id}/consent/{channel}", response_model=ContactPublic,
            summary=f"Grant or withdraw consent on a channel ({', '.join(CONSENT_CHANNELS)})")
async def put_consent(contact_id: str, channel: ConsentChannel, body: ConsentChange, ctx: ContextDep):
    return contact_response(await commands.set_consent(ctx, contact_id, channel, body))


@router.get("/{contact_id}/consent-history", response_model=list[ConsentHistoryEntry], summary="Every consent change")
async def get_consent_history(contact_id: str, ctx: ContextDep):
    return await queries.consent_history(ctx, contact_id)


@router.post("/{contact_id}/erase", response_model=ErasureRecordPublic, status_code=200,
             summary="Right to be forgotten: remove personal data, keep an anonymous tombstone and an audit record")
async def erase_contact(contact_id: str, ctx: ContextDep, body: EraseRequest | None = None):
    return await commands.erase_contact(ctx, contact_id, body or EraseRequest())
