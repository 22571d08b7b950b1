"""The use cases of `/v1/webhooks`: make, change, delete and read subscriptions and their
delivery log. Each owns its one transaction, with the audit entry of a change in it."""
from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import Caller
from services.common.errors import InvalidInput, NotFound
from services.common.events import utcnow

from . import audit_store
from . import webhook_store as store
from .webhook_targets import TargetRefused, check_url

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # Standard Webhooks: between 24 and 64 bytes


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _target(url: str, allow_private: bool) -> str:
    try:
        return check_url(url, allow_private=allow_private)
    except TargetRefused as exc:
        raise InvalidInput.field("url", str(exc)) from None


def _filters(values: dict[str, Any]) -> None:
    if values.get("customer_id") and values.get("segment_id"):
        raise InvalidInput.field("segment_id", "a webhook filters by a customer or by a segment, not both")


def _audit(caller: Caller, action: str, subscription_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    return audit_store.gateway_entry(caller, action, resource=f"webhook:{subscription_id}", detail=detail)


async def create_subscription(*, engine: AsyncEngine, values: dict[str, Any], caller: Caller,
                              allow_private: bool) -> dict[str, Any]:
    """The new subscription, with its secret (shown this once)."""
    _filters(values)
    now = utcnow()
    row = {"id": str(uuid.uuid4()), "url": _target(values["url"], allow_private), "event_types": values["event_types"],
           "customer_id": values.get("customer_id"), "segment_id": values.get("segment_id"),
           "description": values.get("description") or "", "secret": new_secret(), "status": store.ENABLED,
           "disabled_reason": None, "failing_since": None, "created_at": now, "updated_at": now}
    async with engine.begin() as connection:
        await store.insert_subscription(connection, row)
        await audit_store.insert_entries(connection, [_audit(caller, "webhooks.create", row["id"], {
            "url": row["url"], "event_types": row["event_types"]})])
        created = await store.get_subscription(connection, row["id"])
    return {**store.public_subscription(created), "secret": row["secret"]}


async def change_subscription(*, engine: AsyncEngine, subscription_id: str, changes: dict[str, Any],
                              caller: Caller, allow_private: bool) -> dict[str, Any]:
    """`changes`: only the fields the client sent."""
    if "url" in changes:
        changes["url"] = _target(changes["url"], allow_private)
    now = utcnow()
    async with engine.begin() as connection:
        current = await store.get_subscription(connection, subscription_id, for_update=True)
        if current is None:
            raise NotFound(f"no webhook {subscription_id}")
        _filters({"customer_id": current.customer_id, "segment_id": current.segment_id, **changes})
        values = {**changes, "updated_at": now}
        if changes.get("status") == store.ENABLED and current.status != store.ENABLED:
            values.update(disabled_reason=None, failing_since=None)
            await store.resume_deliveries(connection, subscription_id, now)
        elif changes.get("status") == store.DISABLED and current.status != store.DISABLED:
            values["disabled_reason"] = f"disabled by {caller.key_name or 'an operator'}"
        await store.update_subscription(connection, subscription_id, values)
        await audit_store.insert_entries(connection, [_audit(caller, "webhooks.update", subscription_id,
                                                             {"fields": sorted(changes)})])
        return store.public_subscription(await store.get_subscription(connection, subscription_id))


async def delete_subscription(*, engine: AsyncEngine, subscription_id: str, caller: Caller) -> None:
    """The subscription and its queue and log go; deliveries not sent yet are not sent."""
    async with engine.begin() as connection:
        if not await store.delete_subscription(connection, subscription_id):
            raise NotFound(f"no webhook {subscription_id}")
        await audit_store.insert_entries(connection, [_audit(caller, "webhooks.delete", subscription_id, {})])


async def get_subscription(*, engine: AsyncEngine, subscription_id: str) -> dict[str, Any]:
    async with engine.connect() as connection:
        row = await store.get_subscription(connection, subscription_id)
    if row is None:
        raise NotFound(f"no webhook {subscription_id}")
    return store.public_subscription(row)


async def list_subscriptions(*, engine: AsyncEngine, limit: int, cursor: str | None):
    async with engine.connect() as connection:
        return await store.list_subscriptions(connection, limit=limit, cursor=cursor)


async def list_deliveries(*, engine: AsyncEngine, subscription_id: str, status: str | None, limit: int,
                          cursor: str | None):
    async with engine.connect() as connection:
        if await store.get_subscription(connection, subscription_id) is None:
            raise NotFound(f"no webhook {subscription_id}")
        return await store.list_deliveries(connection, subscription_id, status=status, limit=limit, cursor=cursor)
