"""The events the contacts service reacts to, settled a poll at a time in one transaction
(services/common/consumer_apply.py):

- crm.orders.v1 ("contacts.orders", order_customers.py): the customers that orders name are
  created, completed or promoted to customer;
- crm.orders.v1, crm.interactions.v1, crm.segments.v1 ("contacts.erasure_confirmations",
  erasures.py): each service's confirmation that it erased a person's data.
"""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.consumer_apply import Poll, Subscription
from services.common.service_app import ServiceContext

from . import erasures, order_customers


async def apply_poll(session: AsyncSession, ctx: ServiceContext, poll: Poll) -> None:
    await order_customers.apply_orders(session, ctx, poll[order_customers.CONSUMER.name])
    await erasures.record_confirmations(session, poll[erasures.CONSUMER.name])


SUBSCRIPTION = Subscription(consumers=(order_customers.CONSUMER, erasures.CONSUMER), apply=apply_poll)
