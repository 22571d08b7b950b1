"""Domain errors and their one mapping to application/problem+json (RFC 9457).

Use cases raise these; only `install_problem_handlers` turns them into HTTP answers, so no
layer below the routes knows about HTTP.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://crm.example/problems/"
# RFC 9457's members: an extra field of the same name never replaces them.
STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})

log = logging.getLogger("crm.errors")


class DomainError(Exception):
    """A failure the caller can act on. Subclasses fix the status and the problem type."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, errors: list[dict] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        body = {"type": PROBLEM_BASE + self.slug, "title": self.title, "status": self.status, "detail": self.detail}
        if self.errors:
            body["errors"] = self.errors
        body.update({name: value for name, value in self.extra.items() if name not in STANDARD_MEMBERS})
        return body


class InvalidInput(DomainError):
    status, slug, title = 422, "validation-error", "Invalid input"

    @classmethod
    def field(cls, field: str | list, message: str, **extra: Any) -> "InvalidInput":
        loc = field if isinstance(field, list) else [field]
        name = ".".join(str(part) for part in loc)
        return cls(f"{name}: {message}", errors=[{"field": name, "loc": loc, "message": message}], **extra)


class BadRequest(DomainError):
    status, slug, title = 400, "bad-request", "Bad request"


class NotFound(DomainError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status, slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(DomainError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


class PreconditionRequired(DomainError):
    status, slug, title = 428, "precondition-required", "Precondition required"


class MethodNotAllowed(DomainError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"

    def __init__(self, detail: str, *, allow: list[str]) -> None:
        super().__init__(detail)
        self.headers = {"Allow": ", ".join(allow)}


class PayloadTooLarge(DomainError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(DomainError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class IdempotencyKeyReused(DomainError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency key reused with another request"


class IdempotencyKeyInFlight(DomainError):
    status, slug, title = 409, "idempotency-key-in-flight", "A request with this idempotency key is still in flight"


class Redirect(Exception):
    """Not an error: a resource lives elsewhere now (a merged contact's survivor)."""

    def __init__(self, location: str, body: dict[str, Any]) -> None:
        super().__init__(location)
        self.location = location
        self.body = body


def invalid_input_from(exc) -> "InvalidInput":
    """A pydantic ValidationError (or FastAPI's RequestValidationError) as one InvalidInput."""
    errors = validation_errors(exc)
    return InvalidInput("; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors[:5]), errors=errors)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None, *,
                     request: Request | None = None) -> JSONResponse:
    """`request`: the problem's `instance` is its path (RFC 9457), unless the body names one."""
    if request is not None:
        body = {**body, "instance": body.get("instance") or request.url.path}
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as `{field, loc, message}`, dropping the `body`/`query` prefix."""
    out = []
    for err in exc.errors():
        loc = [part for part in err.get("loc", ()) if part not in ("body",)]
        if err.get("type") == "json_invalid":
            return [{"field": "body", "loc": ["body"], "message": f"malformed JSON: {err.get('msg')}"}]
        message = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        out.append({"field": ".".join(str(p) for p in loc), "loc": loc, "message": message})
    return out


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError):
        return problem_response(exc.problem(), headers=getattr(exc, "headers", None), request=request)

    @app.exception_handler(Redirect)
    async def _redirect(_request: Request, exc: Redirect):
        return JSONResponse(exc.body, status_code=307, headers={"Location": exc.location})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = validation_errors(exc)
        malformed = errors and errors[0]["field"] == "body" and errors[0]["message"].startswith("malformed JSON")
        status = 400 if malformed else 422
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors[:5])
        body = {
            "type": PROBLEM_BASE + ("malformed-json" if malformed else "validation-error"),
            "title": "Malformed JSON" if malformed else "Invalid input",
            "status": status,
            "detail": detail,
            "errors": errors,
        }
        return problem_response(body, request=request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        body = {"type": "about:blank", "title": title, "status": exc.status_code, "detail": str(exc.detail)}
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names the methods of one route; the path may have several
            from .request_checks import allowed_methods  # it imports this module
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.app, request.url.path))}
        return problem_response(body, headers=headers, request=request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {"type": PROBLEM_BASE + "internal", "title": "Internal error", "status": 500,
                "detail": "The server failed to answer; the request id identifies it in the logs."}
        return problem_response(body, request=request)
