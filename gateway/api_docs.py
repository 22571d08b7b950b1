"""One API description for the whole system: the services' OpenAPI documents merged into one
(with the gateway's own routes and its security schemes), and their AsyncAPI documents merged
into one. Each service's document is fetched with a timeout; a service that does not answer is
listed under `x-missing-services` instead of failing the whole document."""
from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx

from services.common.event_catalog import ASYNCAPI_VERSION
from services.common.openapi_contract import add_problem_responses, operations, problem

from .routes import Upstream

SCHEMA_REF = "#/components/schemas/"
# What the gateway itself answers before or instead of a service, on every /v1 operation.
GATEWAY_STATUSES = {
    401: "No API key, or one that is unknown or revoked (WWW-Authenticate says which)",
    403: "The key lacks the scope this operation needs",
    429: "The key's rate limit is spent; Retry-After says when to try again",
}
UPSTREAM_STATUSES = {
    503: "The service that owns this path is down (`service` names it)",
    504: "The service that owns this path did not answer in time",
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer crm_...`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The same key in X-API-Key"},
}


async def fetch_documents(client: httpx.AsyncClient, upstreams: dict[str, Upstream], path: str,
                          timeout: float) -> tuple[dict[str, dict], list[str]]:
    """({service: document}, [services that did not answer]) in route-table order."""

    async def fetch(upstream: Upstream) -> dict | None:
        try:
            response = await asyncio.wait_for(client.get(upstream.base_url + path, timeout=timeout), timeout + 0.5)
            response.raise_for_status()
            document = response.json()
            return document if isinstance(document, dict) else None
        except (httpx.HTTPError, asyncio.TimeoutError, ValueError):
            return None

    results = await asyncio.gather(*(fetch(upstream) for upstream in upstreams.values()))
    found = {name: doc for name, doc in zip(upstreams, results) if doc is not None}
    return found, [name for name, doc in zip(upstreams, results) if doc is None]


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (SCHEMA_REF + renames[v[len(SCHEMA_REF):]]
                    if k == "$ref" and isinstance(v, str) and v.startswith(SCHEMA_REF)
                    and v[len(SCHEMA_REF):] in renames else _rewrite_refs(v, renames))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def merge_openapi(gateway_doc: dict, service_docs: dict[str, dict], missing: list[str]) -> dict:
    """Only /v1 paths of the services are public (their /healthz, /metrics... stay internal). Two
    services' schemas of the same name but different shape become `<service>_<Name>`."""
    merged = copy.deepcopy(gateway_doc)
    paths = merged.setdefault("paths", {})
    schemas = merged.setdefault("components", {}).setdefault("schemas", {})
    tags = {tag["name"]: tag for tag in merged.get("tags", [])}
    for service, document in service_docs.items():
        their_schemas = document.get("components", {}).get("schemas", {})
        renames = {name: f"{service}_{name}" for name, schema in their_schemas.items()
                   if name in schemas and schemas[name] != schema}
        document = _rewrite_refs(document, renames)
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            schemas.setdefault(renames.get(name, name), schema)
        for path, item in document.get("paths", {}).items():
            if path.startswith("/v1/") or path == "/v1":
                paths.setdefault(path, item)
        for tag in document.get("tags", []):
            tags.setdefault(tag["name"], tag)
    if tags:
        merged["tags"] = list(tags.values())
    merged["components"].setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    merged["security"] = [{"bearer": []}, {"apiKey": []}]
    merged["servers"] = [{"url": "/", "description": "This gateway: every path below is served here"}]
    own = {(path, method) for path, method, _operation in operations(gateway_doc)}
    for path, method, operation in operations(merged):
        add_problem_responses(operation, GATEWAY_STATUSES)
        # uvicorn itself answers a request it cannot parse (a URL too long for it), in plain text.
        unparsable = operation["responses"].setdefault("400", problem("Malformed JSON, or a header that cannot be read"))
        unparsable["description"] += "; in text/plain, a request the HTTP server cannot parse"
        unparsable["content"]["text/plain"] = {"schema": {"type": "string"}}
        add_problem_responses(operation, UPSTREAM_STATUSES if (path, method) not in own else {503: UPSTREAM_STATUSES[503]})
    merged["x-services"] = sorted(service_docs)
    merged["x-missing-services"] = missing
    if missing:
        merged.setdefault("info", {})["description"] = (
            merged.get("info", {}).get("description", "") +
            f"\n\nNot included (the service did not answer): {', '.join(missing)}.")
    return merged


def merge_asyncapi(service_docs: dict[str, dict], missing: list[str]) -> dict:
    """Two services' schemas of the same name but different shape become `<service>_<Name>`, as
    in merge_openapi."""
    merged: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "CRM events", "version": "1.0.0",
                 "description": "Every topic and event type of the system, with the JSON Schema of each. "
                                "Messages are CloudEvents 1.0 (structured JSON) keyed by customer id."},
        "servers": {}, "defaultContentType": "application/cloudevents+json",
        "channels": {}, "operations": {}, "components": {"messages": {}, "schemas": {}},
        "x-services": sorted(service_docs), "x-missing-services": missing,
    }
    schemas = merged["components"]["schemas"]
    for service, document in service_docs.items():
        their_schemas = document.get("components", {}).get("schemas", {})
        renames = {name: f"{service}_{name}" for name, schema in their_schemas.items()
                   if name in schemas and schemas[name] != schema}
        document = _rewrite_refs(document, renames)
        for server, value in document.get("servers", {}).items():
            merged["servers"].setdefault(server, value)
        for section in ("channels", "operations"):
            for name, value in document.get(section, {}).items():
                merged[section].setdefault(name, value)
        for section, values in document.get("components", {}).items():
            for name, value in values.items():
                name = renames.get(name, name) if section == "schemas" else name
                merged["components"].setdefault(section, {}).setdefault(name, value)
    return merged
