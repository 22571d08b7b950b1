"""The rule language (rules.py) as JSON Schema, built from the field registry (fields.py), so the
OpenAPI document says what `parse_rule` accepts: a group (`all` / `any` of one or more rules,
`not` of one), or a condition on one field with an operator of that field's type and a value of
the shape the operator takes.

What no JSON Schema can say, and so only the server checks: a `between`'s low not above its
high, and a tree's depth and size (at most `segmentation_rule_max_depth` levels and 200
conditions)."""
from __future__ import annotations

from typing import Any

from . import rules
from .fields import FIELDS, FieldSpec

REF = "#/components/schemas/"
RULE_REF = {"$ref": REF + "Rule"}
SET_OPS = ("in", "not_in")
TIME_OPS = ("within_last", "more_than_ago")


def scalar_schema(spec: FieldSpec) -> dict[str, Any]:
    """One value of the field, as rules._scalar reads it."""
    kind = "string" if spec.type == "list" else spec.type
    if kind == "string":
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200}
        return {**schema, "enum": list(spec.choices)} if spec.choices else schema
    if kind == "integer":
        return {"type": "integer", "minimum": -(2**53), "maximum": 2**53}
    if kind == "number":
        return {"type": "number", "minimum": -1e15, "maximum": 1e15}
    if kind == "decimal":
        bound = 10**12 - 1
        return {"anyOf": [{"type": "string", "pattern": rules.DECIMAL.pattern},
                          {"type": "integer", "minimum": -bound, "maximum": bound}]}
    if kind == "date":
        return {"type": "string", "format": "date", "pattern": rules.DATE.pattern}
    if kind == "datetime":
        return {"type": "string", "format": "date-time"}
    return {"type": kind}  # boolean


def value_schema(spec: FieldSpec, op: str) -> dict[str, Any]:
    """The `value` of a condition with `op` on the field, as rules.parse_value reads it."""
    if op == "exists":
        return {"type": "boolean"}
    if op in TIME_OPS:
        return {"type": "integer", "minimum": 1, "maximum": rules.MAX_DAYS}
    if op in SET_OPS:
        return {"type": "array", "items": scalar_schema(spec), "minItems": 1, "maxItems": rules.MAX_LIST_VALUES}
    if op == "between":
        return {"type": "array", "items": scalar_schema(spec), "minItems": 2, "maxItems": 2}
    return scalar_schema(spec)


QUALIFIERS = {
    "currency": {"type": "string", "pattern": rules.CURRENCY.pattern, "description": "An ISO 4217 currency code"},
    "key": {"type": "string", "pattern": r"\S", "description": "The interaction type or channel counted"},
}


def condition_schemas(spec: FieldSpec) -> list[dict[str, Any]]:
    """A condition on the field, one branch per shape of value (`exists` may leave its value out)."""
    shapes: dict[str, list[str]] = {}
    for op in spec.ops:
        key = op if op in ("exists", "between") else "set" if op in SET_OPS else "time" if op in TIME_OPS else "one"
        shapes.setdefault(key, []).append(op)
    branches = []
    for key, ops in shapes.items():
        properties = {"field": {"const": spec.name}, "op": {"enum": ops}, "value": value_schema(spec, ops[0])}
        required = ["field", "op"] if key == "exists" else ["field", "op", "value"]
        if spec.qualifier:
            properties[spec.qualifier] = QUALIFIERS[spec.qualifier]
            required.append(spec.qualifier)
        branches.append({"type": "object", "properties": properties, "required": required,
                         "additionalProperties": False})
    return branches


def group_schema(key: str) -> dict[str, Any]:
    node = RULE_REF if key == "not" else {"type": "array", "items": RULE_REF, "minItems": 1}
    return {"type": "object", "properties": {key: node}, "required": [key], "additionalProperties": False}


def components() -> dict[str, dict[str, Any]]:
    """The schemas to add to the document's components: `Rule` and `RuleCondition`."""
    conditions = [branch for spec in FIELDS.values() for branch in condition_schemas(spec)]
    return {
        "Rule": {"title": "Rule", "description": "A condition tree; GET /v1/segments/fields lists the fields, their "
                 "operators and values", "anyOf": [group_schema("all"), group_schema("any"), group_schema("not"),
                                                   {"$ref": REF + "RuleCondition"}],
                 "examples": [{"all": [{"field": "order_count", "op": "gte", "value": 3}]}]},
        "RuleCondition": {"title": "RuleCondition", "anyOf": conditions},
    }


def install(app) -> None:
    """Add `Rule` to the app's document, and state GET /v1/profiles' `rule` (a query parameter
    holding a rule as JSON) as JSON content of that schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        document["components"]["schemas"].update(components())
        for parameter in document["paths"]["/v1/profiles"]["get"].get("parameters", []):
            if parameter["name"] == "rule" and "schema" in parameter:
                del parameter["schema"]
                parameter["content"] = {"application/json": {"schema": RULE_REF}}
        return document

    app.openapi = openapi
