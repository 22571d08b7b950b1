"""Webhook signatures: both Shopify (X-Shopify-Hmac-Sha256) and WooCommerce
(X-WC-Webhook-Signature) send the base64 of HMAC-SHA256 over the raw body, keyed with the shop's
secret. Checked over the bytes as received, before any parsing, in constant time."""
from __future__ import annotations

import base64
import hashlib
import hmac


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def valid_signature(secret: str, body: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), signature.strip().encode())
