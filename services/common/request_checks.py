"""Checks every route makes of its request before the handler runs (a dependency of every
service app and of the gateway's own routes): a path id (a path parameter named `*_id`) must be
a UUID, as the OpenAPI documents declare; a query parameter the operation does not take is
refused (422) rather than ignored, since `?gender=female` that silently lists everyone misleads
whoever sent it; and the cursors of the answer are bound to its filters and sort (pagination.py)."""
from __future__ import annotations

import re

from fastapi import Request
from fastapi.dependencies.models import Dependant

from fastapi.routing import iter_route_contexts

from .errors import InvalidInput, MethodNotAllowed
from .pagination import bind_cursors_to


def declared_query_parameters(dependant: Dependant) -> frozenset[str]:
    """The query parameters of a route, its dependencies' included, by the names clients send."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= declared_query_parameters(sub)
    return frozenset(names)


UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_path_id(name: str) -> bool:
    return name.endswith("_id")


def check_path_ids(request: Request) -> None:
    wrong = [name for name, value in request.path_params.items() if is_path_id(name) and not UUID.fullmatch(value)]
    if wrong:
        # `PATCH /v1/segments/fields`: not a segment id, but the path of a route with other methods.
        others = [route for route in http_routes(request.app, exclude=request.scope.get("route"))
                  if _matches_with_ids(route, request.url.path)]
        if others:
            allow = sorted(set().union(*(route.methods for route in others)))
            raise MethodNotAllowed(f"{request.method} is not served at {request.url.path}", allow=allow)
        raise InvalidInput("; ".join(f"path.{name}: must be a UUID, such as 5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d10"
                                     for name in wrong),
                           errors=[{"field": f"path.{name}", "loc": ["path", name], "message": "must be a UUID"}
                                   for name in wrong])


def _matches_with_ids(route, path: str) -> bool:
    match = route.path_regex.match(path)
    return bool(match) and all(UUID.fullmatch(value) for name, value in match.groupdict().items() if is_path_id(name))


def http_routes(app, *, exclude=None) -> list:
    """The app's HTTP routes with their full paths (included routers' too), but `exclude` (a
    route as request.scope["route"] holds it) and catch-alls (a `{...:path}` parameter)."""
    return [route for route in iter_route_contexts(app.router.routes)
            if route.methods and route.original_route is not exclude and ":path}" not in route.path]


def allowed_methods(app, path: str, *, exclude=None) -> list[str]:
    """Every method some route of `app` serves at `path` (its path ids UUIDs), for an Allow header."""
    return sorted(set().union(*(route.methods for route in http_routes(app, exclude=exclude)
                                if _matches_with_ids(route, path))))


# A NUL in JSON text: `\u0000` after an even number of backslashes (so not an escaped backslash).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
NUL_MESSAGE = "must not contain the NUL character (U+0000), which no text column can store"


async def check_no_nul(request: Request) -> None:
    """PostgreSQL refuses U+0000 in text, so it must never reach the database as a 500."""
    values = list(request.path_params.items()) + list(request.query_params.multi_items())
    wrong = [name for name, value in values if "\x00" in str(value)]
    if wrong:
        raise InvalidInput(f"{', '.join(wrong)}: {NUL_MESSAGE}",
                           errors=[{"field": name, "loc": [name], "message": NUL_MESSAGE} for name in wrong])
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()  # already read by FastAPI for the body parameter
        if b"\x00" in body or _JSON_NUL.search(body):
            raise InvalidInput.field("body", NUL_MESSAGE)


async def check_request(request: Request) -> None:
    check_path_ids(request)
    await check_no_nul(request)
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is not None:
        known = getattr(route, "crm_query_parameters", None)
        if known is None:  # computed once per route
            known = route.crm_query_parameters = declared_query_parameters(dependant)
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
            raise InvalidInput(
                f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: {takes}",
                errors=[{"field": f"query.{name}", "loc": ["query", name],
                         "message": f"unknown query parameter; {takes}"} for name in unknown])
    bind_cursors_to(request)
