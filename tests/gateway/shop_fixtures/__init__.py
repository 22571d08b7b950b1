"""Webhook payloads shaped as Shopify's and WooCommerce's documentation shows them (REST Admin API
and WooCommerce REST API v3 shapes), for the mapping, API and end-to-end tests."""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def raw(name: str) -> bytes:
    return (HERE / f"{name}.json").read_bytes()


def payload(name: str) -> dict:
    return json.loads(raw(name))
