"""Registering and changing shops (the admin API's use cases). Each owns its one transaction in
shop_store, with its audit entry."""
from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import Caller
from services.common.errors import Conflict, InvalidInput, NotFound
from services.common.events import utcnow

from . import shop_store
from .schemas import ShopCreate, ShopUpdate
from .shops import Shop, default_order_platform, new_secret, normalize_domain


async def register_shop(engine: AsyncEngine, body: ShopCreate, caller: Caller) -> Shop:
    """The shop, secret included (the answer shows it this once)."""
    domain = normalize_domain(body.platform, body.domain)
    if not domain:
        raise InvalidInput.field("domain", "names no host")
    now = utcnow()
    shop = Shop(id=str(uuid.uuid4()), platform=body.platform, domain=domain, name=body.name or domain,
                order_platform=body.order_platform or default_order_platform(body.platform, domain),
                secret=body.secret or new_secret(), prices_in_tomans=body.prices_in_tomans, active=body.active,
                created_at=now, updated_at=now)
    try:
        await shop_store.insert_shop(engine, shop, caller)
    except shop_store.ShopExists as exc:
        raise Conflict(str(exc)) from None
    return shop


async def change_shop(engine: AsyncEngine, shop_id: str, body: ShopUpdate, caller: Caller) -> Shop:
    changes = body.model_dump(exclude_none=True)
    try:
        if not changes:
            return await shop_store.get_shop(engine, shop_id)
        return await shop_store.update_shop(engine, shop_id, changes, caller)
    except shop_store.ShopNotFound:
        raise NotFound(f"no shop {shop_id}") from None


async def remove_shop(engine: AsyncEngine, shop_id: str, caller: Caller) -> None:
    try:
        await shop_store.delete_shop(engine, shop_id, caller)
    except shop_store.ShopNotFound:
        raise NotFound(f"no shop {shop_id}") from None


async def shop(engine: AsyncEngine, shop_id: str) -> Shop:
    try:
        return await shop_store.get_shop(engine, shop_id)
    except shop_store.ShopNotFound:
        raise NotFound(f"no shop {shop_id}") from None
