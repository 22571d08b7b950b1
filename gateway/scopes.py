"""Scopes: `<resource>:<access>` per resource, plus `admin` for everything.

Access levels: `read`, `write`, `admin`. `<resource>:admin` also grants that resource's read
and write; `admin` grants every scope, API-key management included. `write` does NOT grant
`read`: an e-commerce platform's `orders:write` key posts orders and cannot list anyone's.
"""
from __future__ import annotations

from typing import Iterable

RESOURCES = ("contacts", "orders", "interactions", "segments", "privacy", "audit", "webhooks", "tracking")
ACCESS = ("read", "write", "admin")
ADMIN = "admin"
KNOWN_SCOPES = frozenset({ADMIN} | {f"{r}:{a}" for r in RESOURCES for a in ACCESS})


class UnknownScope(ValueError):
    pass


def normalize_scopes(scopes: Iterable[str]) -> list[str]:
    """Trimmed, de-duplicated, sorted; raises UnknownScope naming any scope not in KNOWN_SCOPES."""
    cleaned = sorted({scope.strip().lower() for scope in scopes if scope and scope.strip()})
    unknown = [scope for scope in cleaned if scope not in KNOWN_SCOPES]
    if unknown:
        raise UnknownScope(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_SCOPES))}")
    if not cleaned:
        raise UnknownScope("a key needs at least one scope")
    return cleaned


def grants(held: Iterable[str], needed: str) -> bool:
    held = set(held)
    if ADMIN in held or needed in held:
        return True
    resource, _, _access = needed.partition(":")
    return needed != ADMIN and f"{resource}:admin" in held
