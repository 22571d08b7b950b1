"""Checks every route makes of its query string before the handler runs (a dependency of every
service app and of the gateway's own routes): a parameter the operation does not take is
refused (422) rather than ignored, since `?gender=female` that silently lists everyone misleads
whoever sent it; and the cursors of the answer are bound to its filters and sort (pagination.py)."""
from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant

from .errors import InvalidInput
from .pagination import bind_cursors_to


def declared_query_parameters(dependant: Dependant) -> frozenset[str]:
    """The query parameters of a route, its dependencies' included, by the names clients send."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= declared_query_parameters(sub)
    return frozenset(names)


async def check_query(request: Request) -> None:
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
