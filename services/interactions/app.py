"""The interactions service (port 8003): every touch with a customer, on one timeline."""
from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from services.common.service_app import ServiceContext, create_service_app
from services.common.settings import ServiceSettings

from . import api, api_customers
from .alerts import check_open_tickets
from .consumers import SUBSCRIPTION
from .models import kernel
from .settings import interaction_settings

log = logging.getLogger("crm.interactions")


async def run_ticket_checks(ctx: ServiceContext) -> None:
    """The ticket-age rule is broken by time alone, so it is checked on a timer."""
    while True:
        try:
            await check_open_tickets(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup: try again next round
            log.exception("open-ticket check failed")
        await asyncio.sleep(ctx.settings.interactions_alert_check_interval_s)


async def on_start(ctx: ServiceContext) -> None:
    if ctx.settings.run_background_tasks:
        ctx.tasks.append(asyncio.create_task(run_ticket_checks(ctx), name="interactions-ticket-checks"))


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = interaction_settings(settings)
    return create_service_app(
        settings=settings, tables=kernel, routers=[api.router, api_customers.router, api.events_router],
        title="Interactions", description="The interaction timeline: calls, emails, chats, visits, tickets, "
                                          "feedback and campaign responses.",
        tags={"interactions": "Every touch with a customer: calls, emails, chats, visits, tickets, feedback, "
                              "campaign responses",
              "timeline": "A customer's interactions in time order, and their feedback summary"},
        subscription=SUBSCRIPTION, on_start=on_start,
    )
