"""The orders service (port 8002): orders, lines, payments, refunds, order status, and their
attribution to customers from the contacts events."""
from __future__ import annotations

from fastapi import FastAPI

from services.common.service_app import create_service_app
from services.common.settings import ServiceSettings, load_settings

from . import api, consumers
from .models import kernel


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or load_settings("orders")
    return create_service_app(
        settings=settings, tables=kernel, routers=[api.router, api.events_router],
        title="Orders", description="Orders from e-commerce platforms: lines, totals, payments, refunds, status, "
                                    "and attribution to customers.",
        tags={"orders": "Orders posted by e-commerce platforms, their payments, refunds and status"},
        subscription=consumers.SUBSCRIPTION,
    )
