"""A shop whose webhooks the gateway takes: which platform, how its webhooks name it, its
signing secret and its settings. Pure: shop_store.py keeps them."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Platform = Literal["shopify", "woocommerce"]
PLATFORMS: tuple[str, ...] = Platform.__args__
ORDER_PLATFORM_PATTERN = re.compile(r"^[\w.:\-]{1,64}$")


@dataclass(frozen=True)
class Shop:
    id: str
    platform: str
    domain: str
    name: str
    order_platform: str
    secret: str
    prices_in_tomans: bool
    active: bool
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict:
        """What the admin API shows: everything but the secret, of which only a hint."""
        return {"id": self.id, "platform": self.platform, "domain": self.domain, "name": self.name,
                "order_platform": self.order_platform, "prices_in_tomans": self.prices_in_tomans,
                "active": self.active, "secret_hint": secret_hint(self.secret),
                "webhook_path": f"/v1/integrations/{self.platform}/webhooks",
                "created_at": self.created_at, "updated_at": self.updated_at}


def secret_hint(secret: str) -> str:
    return f"…{secret[-4:]}" if len(secret) >= 12 else "…"


def new_secret() -> str:
    """For a WooCommerce webhook, whose secret the shop owner types in: 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


def normalize_domain(platform: str, value: str) -> str:
    """How a webhook names its shop, as stored: Shopify's `x.myshopify.com`; WooCommerce's
    X-WC-Webhook-Source (`https://shop.example.ir/`, maybe with a sub-folder) without its scheme
    and trailing slash. Lower case."""
    text = value.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.\-]*://", "", text)
    return text.rstrip("/")


def default_order_platform(platform: str, domain: str) -> str:
    """`shopify:tea-house.myshopify.com`, `woocommerce:shop.example.ir`: unique per shop, as the
    orders service's (platform, external_id) needs (WooCommerce order ids are per site)."""
    slug = re.sub(r"[^\w.:\-]", "-", f"{platform}:{domain}")
    return slug[:64]
