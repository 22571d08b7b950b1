"""Routes of a customer's erasure as one process across services: start it, see where it stands.
(`POST /v1/contacts/{id}/erase` erases too, answering this service's audit record.)"""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.common.service_app import ContextDep

from . import contact_commands as commands
from . import erasures, suppression
from .contact_record import normalized_emails, normalized_phones
from .schemas import EraseRequest, ErasureStatus, SuppressionLift, SuppressionLifted

router = APIRouter(tags=["privacy"])


@router.post("/v1/customers/{contact_id}/erase", status_code=202, response_model=ErasureStatus,
             summary="Erase a customer in every service (right to be forgotten); follow the Location to see it finish",
             responses={404: {"description": "No such contact, or it was already erased"}})
async def erase_customer(contact_id: str, ctx: ContextDep, body: EraseRequest | None = None):
    record = await commands.erase_contact(ctx, contact_id, body or EraseRequest())
    status = await erasures.erasure_status(ctx, record.id)
    return JSONResponse(status.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/v1/privacy/erasures/{record.id}"})


@router.get("/v1/privacy/erasures/{erasure_id}", response_model=ErasureStatus,
            summary="An erasure's progress: which services have removed the person's data; done when all have")
async def get_erasure(erasure_id: str, ctx: ContextDep):
    return await erasures.erasure_status(ctx, erasure_id)


@router.post("/v1/privacy/suppressions/lift", response_model=SuppressionLifted,
             summary="Take an erased person's emails, phones or external ids in again (they asked to be stored)",
             description=suppression.__doc__)
async def lift_suppression(body: SuppressionLift, ctx: ContextDep) -> SuppressionLifted:
    keys = [("email", "", email.lower()) for email in normalized_emails(body.emails)]
    keys += [("phone", "", phone) for phone in normalized_phones(body.phones, ctx.settings.default_phone_region)]
    keys += [("external", ext.system, ext.id) for ext in body.external_ids]
    return SuppressionLifted(lifted=await suppression.lift(ctx, keys))
