"""A Segment-compatible tracking API: `POST /v1/identify`, `/v1/track`, `/v1/page`,
`/v1/screen`, `/v1/group`, `/v1/alias` and `/v1/batch`, in Segment's HTTP Tracking API shapes, so
Segment and RudderStack SDKs pointed at this host send their data unchanged (docs/tracking.md).

The write key is an API key of ours with the scope `tracking:write`, sent as Segment SDKs send it:
HTTP Basic, the key as the user name and an empty password (Bearer and X-API-Key work too).
Bodies may be gzip-compressed (Content-Encoding: gzip). A request is checked whole before anything
is written: malformed JSON is a 400, a call over 32 KB or a batch over 500 KB (or a batched message
over 32 KB) a 413, a message without userId/anonymousId or a track without `event` a 422 naming it,
all problem+json, none retried by the SDKs. Accepted: 200 `{"success": true}` as Segment answers.
"""
from __future__ import annotations

import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from services.common.errors import DomainError, InvalidInput, PayloadTooLarge, invalid_input_from
from services.common.events import utcnow
from services.common.request_checks import NUL_MESSAGE, _JSON_NUL as JSON_NUL, check_request

from . import tracking_translation
from .context import ContextDep, require
from .customer_view import ServiceUnavailable
from .customers_api import unavailable
from .tracking_schemas import BATCH_LIMIT, CALL_LIMIT, CALLS, Accepted, BatchCall, Message, request_schema
from .tracking_writes import apply_plan



async def check_tracking_request(request: Request) -> None:
    """What every route checks (request_checks.check_request), but a gzip body's NUL check runs
    on the inflated JSON (read_json): the compressed bytes may hold any byte."""
    if "gzip" not in request.headers.get("content-encoding", "").lower():
        await check_request(request)
    elif request.query_params:
        names = sorted(set(request.query_params))
        raise InvalidInput(f"unknown query parameter(s) {', '.join(names)}: it takes none",
                           errors=[{"field": f"query.{name}", "loc": ["query", name],
                                    "message": "unknown query parameter; it takes none"} for name in names])


router = APIRouter(prefix="/v1", tags=["tracking"],
                   dependencies=[require("tracking:write"), Depends(check_tracking_request)])
RESPONSES = {400: {"description": "Malformed JSON, or a gzip body that is not gzip"},
             413: {"description": "Over Segment's limits: 32 KB a call or batched message, 500 KB a batch"},
             422: {"description": "A message Segment would refuse: no userId or anonymousId, a track without "
                                  "event, an unknown type in a batch, an Order Completed that cannot be an order"},
             503: {"description": "A service that would store the data is down: nothing more was written; send "
                                  "again (SDKs retry by themselves)"}}


class MalformedJson(DomainError):
    status, slug, title = 400, "malformed-json", "Malformed JSON"


def body_doc(call: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": request_schema(call)}}}}


async def read_json(request: Request, limit: int) -> Any:
    raw = await request.body()
    if "gzip" in request.headers.get("content-encoding", "").lower():
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise MalformedJson("Content-Encoding says gzip, but the body is not gzip") from None
        if len(raw) <= limit and (b"\x00" in raw or JSON_NUL.search(raw)):
            raise InvalidInput.field("body", NUL_MESSAGE)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is over {limit // 1024} KB, Segment's limit for this call")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"malformed JSON: {exc}") from None


def _call(kind: str, value: Any, loc: list) -> Message:
    if len(orjson.dumps(value)) > CALL_LIMIT:
        raise PayloadTooLarge(f"{'.'.join(map(str, loc)) or 'the call'} is over 32 KB, Segment's limit per message")
    try:
        return CALLS[kind].model_validate(value)
    except ValidationError as exc:
        problem = invalid_input_from(exc)
        errors = [{**e, "loc": [*loc, *e["loc"]], "field": ".".join(map(str, [*loc, *e["loc"]])) or "body"}
                  for e in problem.errors or []]
        raise InvalidInput("; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors[:5]), errors=errors)


def parse(kind: str, body: Any) -> list[tuple[str, Message]]:
    if kind != "batch":
        return [(kind, _call(kind, body, []))]
    try:
        batch = BatchCall.model_validate(body)
    except ValidationError as exc:
        raise invalid_input_from(exc) from None
    messages = []
    for index, item in enumerate(batch.batch):
        kind_of = item.get("type")
        if kind_of not in CALLS:
            raise InvalidInput.field(["batch", index, "type"], f"must be one of {', '.join(CALLS)}")
        if batch.context and isinstance(item.get("context") or {}, dict):
            item = {**item, "context": {**batch.context, **(item.get("context") or {})}}
        messages.append((kind_of, _call(kind_of, item, ["batch", index])))
    return messages


async def track_request(request: Request, ctx, kind: str):
    body = await read_json(request, BATCH_LIMIT if kind == "batch" else CALL_LIMIT)
    messages = parse(kind, body)
    plan = tracking_translation.plan(messages, utcnow(), batch=kind == "batch")
    try:
        rejected = await apply_plan(plan, message_ids=[m.messageId for _k, m in messages],
                                    kinds=[k for k, _m in messages], client=ctx.services, upstreams=ctx.upstreams,
                                    principal=request.state.principal, request_id=request.state.request_id,
                                    timeout=ctx.settings.read_timeout_s)
    except ServiceUnavailable as exc:
        return unavailable(exc, request)
    return {"success": True, "rejected": rejected} if rejected else {"success": True}


SUMMARIES = {
    "identify": "Segment identify: create or update the contact from the user's traits",
    "track": "Segment track: an interaction (\"Order Completed\": an order)",
    "page": "Segment page: a page_view interaction",
    "screen": "Segment screen: a page_view interaction in an app",
    "group": "Segment group: the user's account or company, kept in the contact's attributes",
    "alias": "Segment alias: another id of the same user, stitched to the contact",
    "batch": "Segment batch: many calls of any type at once, as the SDKs send them",
}


def _endpoint(kind: str):
    async def endpoint(request: Request, ctx: ContextDep):
        return await track_request(request, ctx, kind)

    return endpoint


for _kind, _summary in SUMMARIES.items():  # operation ids gateway.identify, gateway.track, ...
    router.add_api_route(f"/{_kind}", _endpoint(_kind), methods=["POST"], name=_kind, response_model=Accepted,
                         response_model_exclude_none=True, summary=_summary, openapi_extra=body_doc(_kind),
                         responses=RESPONSES)
