"""Alert rules: thresholds over a customer's interactions that emit crm.interaction.alert.v1
once per breach, not once per interaction.

- complaints: at least N complaints (feedback of kind complaint) within the window. The
  breach re-arms only once the window holds fewer than N again, so a fourth complaint in the
  same week does not alert a second time, and a new run of complaints next month does.
- nps: the customer's latest NPS answer is at or below the threshold. A higher answer re-arms.
- ticket_open: a support ticket still open or pending this long after it was opened. Once per
  ticket. Time alone breaks this rule, so `check_open_tickets` runs periodically (app.py).

Breach state lives in `alert_breaches` (rule, scope) and is changed under a row lock in the
same transaction as the interactions and the alert's outbox row, so neither concurrent
writers nor a restart can alert twice or lose a breach. Rules count attributed interactions:
an anonymous complaint counts once its visitor is identified (the attach re-evaluates).
Thresholds come from settings (INTERACTIONS_ALERT_*, see settings.py and docs/interactions.md).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import and_, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import upsert_statement
from services.common.events import rfc3339, utcnow
from services.common.service_app import ServiceContext

from .interaction_events import alert_event, stage
from .models import OPEN_TICKET_PREDICATE, alert_breaches, interactions

COMPLAINTS, NPS, TICKET_OPEN = "complaints", "nps", "ticket_open"
TICKET_CHECK_BATCH = 500
CUSTOMER_CHUNK = 1000  # customers per statement: bounded bind parameters and lock lists


@dataclass(frozen=True)
class AlertRules:
    complaints: int  # 0: off
    complaint_window: timedelta
    nps_at_or_below: int  # -1: off
    ticket_open: timedelta  # 0: off

    @classmethod
    def from_settings(cls, settings) -> "AlertRules":
        return cls(complaints=settings.interactions_alert_complaints,
                   complaint_window=timedelta(days=settings.interactions_alert_complaint_window_days),
                   nps_at_or_below=settings.interactions_alert_nps_at_or_below,
                   ticket_open=timedelta(hours=settings.interactions_alert_ticket_open_hours))


def new_alert(rule: str, scope: str, customer_id: str | None, interaction_ids: list[str], now: datetime,
              **details: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "rule": rule, "scope": scope, "customer_id": customer_id,
            "triggered_at": rfc3339(now), "interaction_ids": interaction_ids, "details": details}


async def _locked_states(session: AsyncSession, rule: str, scopes: list[str]) -> dict[str, bool]:
    """(rule, scope) rows created if missing, then locked in scope order; scope -> breached."""
    await session.execute(upsert_statement(session, alert_breaches)
                          .values([{"rule": rule, "scope": scope, "breached": False} for scope in scopes])
                          .on_conflict_do_nothing())
    rows = await session.execute(select(alert_breaches.c.scope, alert_breaches.c.breached)
                                 .where(alert_breaches.c.rule == rule, alert_breaches.c.scope.in_(scopes))
                                 .order_by(alert_breaches.c.scope).with_for_update())
    return {row.scope: row.breached for row in rows}


async def _set_state(session: AsyncSession, rule: str, scope: str, *, breached: bool, now: datetime,
                     alert_id: str | None = None) -> None:
    values = {"breached": True, "breached_at": now, "alert_id": alert_id} if breached else \
        {"breached": False, "rearmed_at": now}
    await session.execute(update(alert_breaches).where(alert_breaches.c.rule == rule,
                                                       alert_breaches.c.scope == scope).values(**values))


async def _complaint_alerts(session: AsyncSession, rules: AlertRules, customers: list[str],
                            now: datetime) -> list[dict[str, Any]]:
    states = await _locked_states(session, COMPLAINTS, customers)
    since = now - rules.complaint_window
    rows = (await session.execute(
        select(interactions.c.customer_id, interactions.c.id)
        .where(interactions.c.customer_id.in_(customers), interactions.c.type == "feedback",
               interactions.c.kind == "complaint", interactions.c.occurred_at > since)
        .order_by(interactions.c.customer_id, interactions.c.occurred_at, interactions.c.id))).all()
    recent: dict[str, list[str]] = {}
    for row in rows:
        recent.setdefault(row.customer_id, []).append(row.id)
    alerts = []
    for customer in customers:
        ids = recent.get(customer, [])
        in_breach = len(ids) >= rules.complaints
        if in_breach and not states[customer]:
            alert = new_alert(COMPLAINTS, customer, customer, ids, now, complaints=len(ids),
                              threshold=rules.complaints, window_days=rules.complaint_window / timedelta(days=1))
            await _set_state(session, COMPLAINTS, customer, breached=True, now=now, alert_id=alert["id"])
            alerts.append(alert)
        elif not in_breach and states[customer]:
            await _set_state(session, COMPLAINTS, customer, breached=False, now=now)
    return alerts


async def _nps_alerts(session: AsyncSession, rules: AlertRules, customers: list[str],
                      now: datetime) -> list[dict[str, Any]]:
    rows = (await session.execute(
        select(interactions.c.customer_id, interactions.c.id, interactions.c.nps)
        .where(interactions.c.customer_id.in_(customers), interactions.c.nps.is_not(None))
        .order_by(interactions.c.customer_id, interactions.c.occurred_at.desc(), interactions.c.id.desc()))).all()
    latest: dict[str, Any] = {}
    for row in rows:
        latest.setdefault(row.customer_id, row)
    if not latest:
        return []
    states = await _locked_states(session, NPS, sorted(latest))
    alerts = []
    for customer, row in latest.items():
        in_breach = row.nps <= rules.nps_at_or_below
        if in_breach and not states[customer]:
            alert = new_alert(NPS, customer, customer, [row.id], now, nps=row.nps, threshold=rules.nps_at_or_below)
            await _set_state(session, NPS, customer, breached=True, now=now, alert_id=alert["id"])
            alerts.append(alert)
        elif not in_breach and states[customer]:
            await _set_state(session, NPS, customer, breached=False, now=now)
    return alerts


async def evaluate_customers(session: AsyncSession, ctx: ServiceContext, customer_ids: Iterable[str | None], *,
                             complaints: bool = True, nps: bool = True, now: datetime | None = None) -> int:
    """Evaluate the per-customer rules for these customers in the caller's transaction and stage
    an alert for each new breach; returns how many. Callers pass the customers whose
    complaints or NPS answers just changed (new, attached, merged)."""
    rules = AlertRules.from_settings(ctx.settings)
    customers = sorted({c for c in customer_ids if c})
    now = now or utcnow()
    alerts: list[dict[str, Any]] = []
    for start in range(0, len(customers), CUSTOMER_CHUNK):
        chunk = customers[start:start + CUSTOMER_CHUNK]
        if complaints and rules.complaints > 0:
            alerts += await _complaint_alerts(session, rules, chunk, now)
        if nps and rules.nps_at_or_below >= 0:
            alerts += await _nps_alerts(session, rules, chunk, now)
    await stage(session, ctx, [alert_event(alert) for alert in alerts])
    return len(alerts)


async def check_open_tickets(ctx: ServiceContext, *, now: datetime | None = None) -> int:
    """Alert once for every ticket open or pending longer than the rule allows; returns how many.
    Safe to run from several replicas at once: the breach row's insert decides who alerts."""
    rules = AlertRules.from_settings(ctx.settings)
    if rules.ticket_open <= timedelta(0):
        return 0
    now = now or utcnow()
    total = 0
    while True:
        async with ctx.session_factory() as session, session.begin():
            already = exists().where(and_(alert_breaches.c.rule == TICKET_OPEN, alert_breaches.c.scope == interactions.c.id))
            tickets = (await session.execute(
                select(interactions.c.id, interactions.c.customer_id, interactions.c.status, interactions.c.occurred_at)
                .where(text(OPEN_TICKET_PREDICATE), interactions.c.occurred_at <= now - rules.ticket_open, ~already)
                .order_by(interactions.c.occurred_at).limit(TICKET_CHECK_BATCH))).all()
            if not tickets:
                return total
            alerts = {t.id: new_alert(TICKET_OPEN, t.id, t.customer_id, [t.id], now, status=t.status,
                                      opened_at=rfc3339(t.occurred_at), threshold_hours=rules.ticket_open / timedelta(hours=1),
                                      open_hours=round((now - t.occurred_at) / timedelta(hours=1), 1))
                      for t in tickets}
            claimed = (await session.execute(
                upsert_statement(session, alert_breaches)
                .values([{"rule": TICKET_OPEN, "scope": t.id, "breached": True, "breached_at": now,
                          "alert_id": alerts[t.id]["id"]} for t in tickets])
                .on_conflict_do_nothing().returning(alert_breaches.c.scope))).scalars().all()
            await stage(session, ctx, [alert_event(alerts[scope]) for scope in sorted(claimed)])
            total += len(claimed)

