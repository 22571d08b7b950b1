"""Rule validation: every kind of bad rule is a 422 naming the field, operator or value and
where it is in the tree."""
from __future__ import annotations

import pytest

from services.common.errors import InvalidInput
from services.segmentation.rules import parse_rule, uses_relative_time
from tests.segmentation.conftest import PROBLEM


@pytest.mark.parametrize("rule, where, words", [
    ({"field": "shoe_size", "op": "eq", "value": 1}, "rule.field", "unknown field 'shoe_size'"),
    ({"all": [{"field": "tags", "op": "gt", "value": "x"}]}, "rule.all.0.op", "does not apply to tags"),
    ({"field": "order_count", "op": "approx", "value": 1}, "rule.op", "unknown operator 'approx'"),
    ({"field": "order_count", "op": "gte", "value": "three"}, "rule.value", "not a whole number"),
    ({"field": "last_order_at", "op": "within_last", "value": -3}, "rule.value", "whole number of days"),
    ({"field": "total_spent", "op": "gte", "value": "10"}, "rule.currency", "needs 'currency'"),
    ({"field": "total_spent", "currency": "IRR", "op": "gte", "value": 10.5}, "rule.value", "not an amount"),
    ({"field": "order_count", "op": "between", "value": [5, 1]}, "rule.value", "low is above high"),
    ({"field": "lifecycle_stage", "op": "eq", "value": "vip"}, "rule.value", "not one of"),
    ({"any": []}, "rule.any", "non-empty list"),
    ({"all": [{"field": "order_count", "op": "eq", "value": 1}], "any": []}, "rule", "takes no other keys"),
    ([1, 2], "rule", "must be an object"),
    ({"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"field": "nps", "op": "exists"}}}}}}}}},
     "rule", "too deep"),
])
def test_bad_rules_name_the_problem_and_its_path(rule, where, words):
    with pytest.raises(InvalidInput) as caught:
        parse_rule(rule)
    fields = [e["field"] for e in caught.value.errors]
    assert any(f.startswith(where) for f in fields), fields
    assert words in caught.value.detail


def test_every_error_is_reported_and_node_count_is_capped():
    with pytest.raises(InvalidInput) as caught:
        parse_rule({"all": [{"field": "x", "op": "eq", "value": 1}, {"field": "nps", "op": "gt", "value": "a"}]})
    assert [e["field"] for e in caught.value.errors] == ["rule.all.0.field", "rule.all.1.value"]
    with pytest.raises(InvalidInput, match="at most 10"):
        parse_rule({"any": [{"field": "nps", "op": "exists"}] * 20}, max_nodes=10)


def test_good_rule_parses_and_knows_relative_time():
    node = parse_rule({"all": [{"field": "total_spent", "currency": "irr", "op": "gte", "value": "1000000"},
                               {"not": {"field": "last_order_at", "op": "within_last", "value": 30}}]})
    assert node.children[0].qualifier == "IRR" and uses_relative_time(node)


async def test_api_refuses_bad_rules_with_422(seg):
    for body in ({"name": "x", "rule": {"field": "nope", "op": "eq", "value": 1}},
                 {"name": "x", "rule": {"field": "order_count", "op": "contains", "value": 1}},
                 {"name": "x"},
                 {"name": "x", "type": "static", "rule": {"field": "nps", "op": "exists"}}):
        response = await seg.post("/v1/segments", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith(PROBLEM) and response.json()["errors"]
    preview = await seg.post("/v1/segments/preview", json={"rule": {"all": "oops"}})
    assert preview.status_code == 422 and preview.json()["errors"][0]["field"] == "rule.all"
    assert (await seg.get("/v1/segments")).json()["items"] == []


async def test_fields_endpoint_lists_types_and_ops(seg):
    items = {f["name"]: f for f in (await seg.get("/v1/segments/fields")).json()["items"]}
    assert items["total_spent"]["type"] == "decimal" and items["total_spent"]["requires"] == "currency"
    assert "within_last" in items["last_order_at"]["ops"] and "contains" in items["tags"]["ops"]
    assert "champions" in items["rfm_segment"]["values"]
