"""The gateway's route table: which service owns which public path, and which scope a caller
needs for it. One place, read top down."""
from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Upstream:
    service: str
    base_url: str


SERVICE_PORTS = {"contacts": 8001, "orders": 8002, "interactions": 8003, "segmentation": 8004}


def upstreams() -> dict[str, Upstream]:
    """Service base URLs, overridable with <NAME>_URL (e.g. CONTACTS_URL)."""
    return {name: Upstream(name, os.environ.get(f"{name.upper()}_URL", f"http://127.0.0.1:{port}").rstrip("/"))
            for name, port in SERVICE_PORTS.items()}


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Route:
    """`pattern`: "*" stands for one path segment (an id). `resource` names the scopes: reads need
    `<resource>:read`, other methods `<resource>:<write_access>`; `scopes` overrides one method."""

    pattern: str
    service: str
    resource: str
    write_access: str = "write"
    scopes: dict[str, str] = field(default_factory=dict)

    def scope_for(self, method: str) -> str:
        method = method.upper()
        if method in self.scopes:
            return self.scopes[method]
        return f"{self.resource}:read" if method in READ_METHODS else f"{self.resource}:{self.write_access}"

    @property
    def parts(self) -> list[str]:
        return self.pattern.strip("/").split("/")


# A path belongs to the first route whose pattern its leading segments match, so specific
# patterns come first.
ROUTES: list[Route] = [
    # Erasure cannot be undone: a frontend's contacts:write key is not enough.
    Route("/v1/contacts/*/erase", "contacts", "contacts", scopes={"POST": "contacts:admin"}),
    # Erasing a customer everywhere, and following it: a privacy officer's key.
    Route("/v1/customers/*/erase", "contacts", "privacy", write_access="admin"),
    Route("/v1/privacy", "contacts", "privacy"),
    Route("/v1/contacts", "contacts", "contacts"),
    Route("/v1/orders", "orders", "orders"),
    Route("/v1/interactions", "interactions", "interactions"),
    Route("/v1/customers/*/timeline", "interactions", "interactions"),
    Route("/v1/customers/*/feedback-summary", "interactions", "interactions"),
    Route("/v1/customers/*/segments", "segmentation", "segments"),
    Route("/v1/profiles", "segmentation", "segments"),
    # Previewing an unsaved rule only reads.
    Route("/v1/segments/preview", "segmentation", "segments", scopes={"POST": "segments:read"}),
    Route("/v1/segments", "segmentation", "segments", write_access="admin"),
]


def _matches(pattern: list[str], parts: list[str]) -> bool:
    return len(parts) >= len(pattern) and all(p in ("*", part) for p, part in zip(pattern, parts))


def route_for(path: str) -> Route | None:
    parts = path.strip("/").split("/")
    for route in ROUTES:
        if _matches(route.parts, parts):
            return route
    return None


def service_for(path: str) -> str | None:
    route = route_for(path)
    return route.service if route else None
