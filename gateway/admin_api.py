"""API keys over HTTP: `POST/GET /v1/admin/api-keys`, `DELETE /v1/admin/api-keys/{id}`; all need
the `admin` scope. The secret is in the POST's answer only."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from services.common.errors import InvalidInput, NotFound
from services.common.request_checks import check_request
from services.common.wire_types import json_number

from . import api_keys
from .context import ContextDep, caller_of, require
from .scopes import ADMIN, KNOWN_SCOPES, UnknownScope

router = APIRouter(prefix="/v1/admin/api-keys", tags=["api keys"],
                   dependencies=[require(ADMIN), Depends(check_request)])  # in this order: admitted first


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["shop"])
    scopes: list[Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(KNOWN_SCOPES)})]] = Field(
        min_length=1, examples=[["orders:write"]], description="Scopes the key holds (docs/gateway.md, Scopes)")
    # Bounded: a burst beyond a 64-bit integer failed to store (a 500 schemathesis found).
    rate_per_second: Annotated[float, Field(gt=0, le=1_000_000), BeforeValidator(json_number)] | None = Field(
        default=None, description="Overrides GATEWAY_RATE_PER_SECOND")
    rate_burst: Annotated[int, Field(ge=1, le=1_000_000_000), BeforeValidator(json_number)] | None = Field(
        default=None, description="Overrides GATEWAY_RATE_BURST")


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    rate_per_second: float | None
    rate_burst: int | None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret key: shown this once, never stored; keep it safe")


@router.post("", status_code=201, response_model=ApiKeyCreated, summary="Create an API key (the secret is shown once)")
async def create(body: ApiKeyCreate, request: Request, ctx: ContextDep):
    try:
        created = await api_keys.create_key(engine=ctx.engine, name=body.name, scopes=body.scopes,
                                            caller=caller_of(request), rate_per_second=body.rate_per_second,
                                            rate_burst=body.rate_burst)
    except UnknownScope as exc:
        raise InvalidInput.field("scopes", str(exc)) from None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return {**created.record.public(), "key": created.secret}


@router.get("", response_model=list[ApiKeyPublic], summary="List API keys (never their secrets)")
async def list_all(ctx: ContextDep, include_revoked: Annotated[bool, Query()] = True):
    return [key.public() for key in await api_keys.list_keys(engine=ctx.engine, include_revoked=include_revoked)]


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key (at once on this gateway replica)")
async def revoke(key_id: str, request: Request, ctx: ContextDep) -> Response:
    try:
        record = await api_keys.revoke_key(engine=ctx.engine, key_id=key_id, caller=caller_of(request))
    except api_keys.KeyNotFound:
        raise NotFound(f"no API key {key_id}") from None
    ctx.key_cache.forget(record.prefix)
    return Response(status_code=204)
