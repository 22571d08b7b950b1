"""The segmentation service (port 8004): the customer profile projection, scores, segments and
their members, from crm.contacts.v1, crm.orders.v1 and crm.interactions.v1; publishes
crm.segments.v1."""
from __future__ import annotations

import asyncio
import gc
import logging

from fastapi import FastAPI

from services.common.service_app import ServiceContext, create_service_app
from services.common.settings import ServiceSettings

from . import api_profiles, api_segments, rule_schema
from .evaluation import reevaluate_time_dependent, segment_metrics
from .models import kernel
from .consumers import SUBSCRIPTION
from .segment_events import TOPIC
from .settings import segmentation_settings

log = logging.getLogger("crm.segmentation")


async def run_time_passes(ctx: ServiceContext) -> None:
    """Relative-time segments and date-driven scores move with the clock alone."""
    while True:
        await asyncio.sleep(ctx.settings.segmentation_reevaluate_interval_s)
        try:
            await reevaluate_time_dependent(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup: the next round retries; failed segments show it
            log.exception("time-driven re-evaluation failed")


async def on_start(ctx: ServiceContext) -> None:
    segment_metrics(ctx)
    # What start-up built (modules, the app, its caches) lives as long as the process. A poll's
    # hundreds of profile records outlive the collector's young generations, so full collections
    # come every few polls, and each walked that whole start-up heap: 100-140 ms, about a fifth of
    # the projection's CPU (bench_segmentation_projection.py). Frozen, they walk only what is new
    # (collected first, so no garbage of start-up is kept for good).
    gc.collect()
    gc.freeze()
    if ctx.settings.run_background_tasks:
        ctx.tasks.append(asyncio.create_task(run_time_passes(ctx), name="segmentation-time-passes"))


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = segmentation_settings(settings)
    app = create_service_app(
        settings=settings, tables=kernel,
        routers=[api_segments.router, api_segments.customers_router, api_profiles.router,
                 api_profiles.events_router],
        title="Segmentation", description="Customer profiles, scores (RFM, CLV, churn risk), segments and members.",
        tags={"segments": "Segments defined by rules or lists, their members, history, explanation and export",
              "profiles": "The denormalized profile of each customer, with scores and recommendations"},
        subscription=SUBSCRIPTION, on_start=on_start, topic=TOPIC,  # crm.segments.v1, not crm.segmentation.v1
    )
    rule_schema.install(app)
    return app
