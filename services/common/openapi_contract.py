"""What the OpenAPI documents say beyond what FastAPI infers from the routes, so that they say
what the servers do: every refusal an operation can answer, as application/problem+json with
its schema (in place of FastAPI's HTTPValidationError, which no route answers), path ids as
UUIDs, tags with descriptions and `servers`. Applied to each service's document by the app
factory and, for the statuses only the gateway answers, to the merged one (gateway/api_docs.py).
Operation ids (`contacts.create_contact`) are set by `operation_id` at route registration."""
from __future__ import annotations

import copy
from typing import Any

from fastapi.routing import APIRoute

from .errors import PROBLEM_JSON
from .request_checks import is_path_id

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "RFC 9457 problem details. `errors` lists each offending field of a 422.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem",
                 "examples": ["https://crm.example/problems/validation-error"]},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 300, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong, for a person"},
        "instance": {"type": "string", "description": "The request's path"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "loc", "message"],
            "properties": {"field": {"type": "string", "examples": ["emails.0"]},
                           "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                           "message": {"type": "string"}}}},
    },
    "additionalProperties": True,
}
# Statuses answered the same way by every operation that has what provokes them.
DESCRIPTIONS = {
    400: "Malformed JSON, or a header that cannot be read",
    404: "No such resource (an erased one included)",
    412: "If-Match is not the resource's current ETag",
    413: "The request body is larger than MAX_BODY_BYTES",
    422: "Invalid input: `errors` names each offending field, in the body, the query or the path (an unknown "
         "query parameter, a path id that is not a UUID, a cursor from another listing)",
}
UUID_SCHEMA = {"type": "string", "format": "uuid"}


def operation_id(service: str):
    """`generate_unique_id_function` for FastAPI: `<service>.<handler name>`, stable across releases."""
    def generate(route: APIRoute) -> str:
        return f"{service}.{route.name}"

    return generate


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def operations(document: dict[str, Any]):
    """(path, method, operation) of every operation in the document."""
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def add_problem_responses(operation: dict[str, Any], statuses: dict[int, str]) -> None:
    """Document each of `statuses` (status: description) as a problem, unless it already is."""
    responses = operation.setdefault("responses", {})
    for status, description in statuses.items():
        responses.setdefault(str(status), problem(description))


def _drop_null(parameter: dict[str, Any]) -> None:
    """`str | None` makes FastAPI declare a parameter `anyOf [string, null]`; a query string or a
    header has no null (a client leaves the parameter out), and a tool would send "null"."""
    schema = parameter.get("schema", {})
    branches = [branch for branch in schema.get("anyOf", []) if branch.get("type") != "null"]
    if "anyOf" in schema and len(branches) < len(schema["anyOf"]):
        rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
        parameter["schema"] = {**(branches[0] if len(branches) == 1 else {"anyOf": branches}), **rest}


def complete_operation(path: str, operation: dict[str, Any]) -> None:
    parameters = operation.get("parameters", [])
    statuses = {422: DESCRIPTIONS[422]}  # every operation checks its query string
    for parameter in parameters:
        _drop_null(parameter)
        if parameter["in"] == "path":
            statuses[404] = DESCRIPTIONS[404]
            if is_path_id(parameter["name"]):
                parameter["schema"] = {**UUID_SCHEMA, "title": parameter.get("schema", {}).get("title", "")}
        if parameter["in"] == "header" and parameter["name"].lower() == "if-match":
            statuses[412] = DESCRIPTIONS[412]
    if "requestBody" in operation:
        statuses.update({400: DESCRIPTIONS[400], 413: DESCRIPTIONS[413]})
    responses = operation.setdefault("responses", {})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:  # a route's own refusals are problems too
            response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
            if int(status) == 422:
                response["description"] = DESCRIPTIONS[422]
    add_problem_responses(operation, statuses)


def close_pattern_keys(node: Any) -> None:
    """pydantic states `dict[Annotated[str, pattern], V]` as `patternProperties` alone, which lets
    any other key through; the server refuses them (422), so the document says so too."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            close_pattern_keys(value)
    elif isinstance(node, list):
        for value in node:
            close_pattern_keys(value)


def complete_openapi(document: dict[str, Any], *, tags: dict[str, str]) -> dict[str, Any]:
    """A service's document as FastAPI made it, completed (see the module's docstring)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # only FastAPI's default 422 referred to them
    used = set()
    for path, _method, operation in operations(document):
        complete_operation(path, operation)
        used.update(operation.get("tags", []))
    close_pattern_keys(document)
    document["tags"] = [{"name": name, "description": description} for name, description in tags.items()
                        if name in used]
    return document


def install(app, *, tags: dict[str, str]) -> None:
    """Serve the completed document at the app's /openapi.json (built once, on first request)."""
    build = app.openapi
    completed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not completed:
            completed.append(complete_openapi(copy.deepcopy(build()), tags=tags))
        return completed[0]

    app.openapi = openapi
