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


# Path prefix -> owning service. Longest prefix wins.
ROUTES: dict[str, str] = {
    "/v1/contacts": "contacts",
    "/v1/orders": "orders",
    "/v1/interactions": "interactions",
    "/v1/profiles": "segmentation",
    "/v1/segments": "segmentation",
}


def service_for(path: str) -> str | None:
    best = None
    for prefix, service in ROUTES.items():
        if (path == prefix or path.startswith(prefix + "/")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, service)
    return best[1] if best else None
