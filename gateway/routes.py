"""The gateway's route table: which service owns which public path. One place, read top down."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Upstream:
    service: str
    base_url: str


def upstreams() -> dict[str, Upstream]:
    """Service base URLs, overridable with <NAME>_URL (e.g. CONTACTS_URL)."""
    defaults = {"contacts": 8001, "orders": 8002, "interactions": 8003, "segmentation": 8004}
    return {name: Upstream(name, os.environ.get(f"{name.upper()}_URL", f"http://127.0.0.1:{port}"))
            for name, port in defaults.items()}


# Path pattern -> owning service; "*" stands for one path segment (an id). A path belongs to
# the first pattern that its leading segments match, so specific patterns come first.
ROUTES: list[tuple[str, str]] = [
    ("/v1/contacts", "contacts"),
    ("/v1/orders", "orders"),
    ("/v1/interactions", "interactions"),
    ("/v1/customers/*/timeline", "interactions"),
    ("/v1/customers/*/feedback-summary", "interactions"),
    ("/v1/customers/*/segments", "segmentation"),
    ("/v1/profiles", "segmentation"),
    ("/v1/segments", "segmentation"),
]


def _matches(pattern: list[str], parts: list[str]) -> bool:
    return len(parts) >= len(pattern) and all(p in ("*", part) for p, part in zip(pattern, parts))


def service_for(path: str) -> str | None:
    parts = path.strip("/").split("/")
    for pattern, service in ROUTES:
        if _matches(pattern.strip("/").split("/"), parts):
            return service
    return None
