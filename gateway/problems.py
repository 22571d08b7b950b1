"""The gateway's own refusals as problem+json, with the headers each one needs
(WWW-Authenticate on 401, Retry-After on 429)."""
from __future__ import annotations

from fastapi import FastAPI, Request

from services.common.errors import DomainError, problem_response


class GatewayProblem(DomainError):
    headers: dict[str, str] = {}

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra) -> None:
        super().__init__(detail, **extra)
        self.headers = headers or {}


class Unauthorized(GatewayProblem):
    status, slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        challenge = f'Bearer realm="crm", error="{error}"' if error else 'Bearer realm="crm"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(GatewayProblem):
    status, slug, title = 403, "forbidden", "Forbidden"


class RateLimited(GatewayProblem):
    status, slug, title = 429, "rate-limited", "Too many requests"


def install_gateway_problem_handler(app: FastAPI) -> None:
    """Registered after services.common.errors.install_problem_handlers: the more specific class wins."""

    @app.exception_handler(GatewayProblem)
    async def _gateway_problem(request: Request, exc: GatewayProblem):
        return problem_response(exc.problem(), headers=exc.headers, request=request)
