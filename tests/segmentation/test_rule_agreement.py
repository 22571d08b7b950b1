"""Property: for any valid rule and any set of profiles, the SQL compiler and the Python
predicate select the same customers (SQLite, and PostgreSQL when CRM_TEST_POSTGRES_URL is set).
Values come from small pools, so equalities, boundaries and missing values are hit often."""
from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import delete, select

from services.common.database import create_engine, create_session_factory
from services.segmentation import profile_store
from services.segmentation.fields import FIELDS
from services.segmentation.models import ProfileCounterRow, ProfileMoneyRow, ProfileRow, ProfileValueRow
from services.segmentation.rule_predicate import compile_member, is_member
from services.segmentation.rule_sql import member_condition
from services.segmentation.rules import parse_rule
from tests.segmentation.conftest import NOW

NOW_ = NOW.replace(microsecond=123456)
POOLS = {
    "string": ["a", "b", "IR", "Tehran", "lead", "customer", "female", "champions", "USD"],
    "integer": [0, 1, 2, 3, 5, 10],
    "number": [0.0, 0.25, 1.0, 2.5, 3.33, 5.0],
    "decimal": [Decimal("0"), Decimal("10"), Decimal("10.5"), Decimal("999999.999999"), Decimal("1000000")],
    "boolean": [True, False],
    "date": [date(1990, 1, 1), date(2000, 6, 15), date(2010, 12, 31)],
    "datetime": [NOW_ - timedelta(days=d, seconds=s) for d in (0, 1, 30, 31, 90, 400) for s in (0, 1)],
}
LIST_POOL = ["a", "b", "c"]
KEYS = ["call", "email"]
CURRENCIES = ["USD", "IRR"]


def raw(type_: str, value):
    if type_ == "decimal":
        return str(value)
    if type_ in ("date", "datetime"):
        return value.isoformat()
    return value


@st.composite
def leaves(draw):
    name = draw(st.sampled_from(sorted(FIELDS)))
    spec = FIELDS[name]
    op = draw(st.sampled_from(spec.ops))
    base = "string" if spec.type == "list" else spec.type
    pool = LIST_POOL if spec.type == "list" else POOLS[base]
    if spec.choices:
        pool = list(spec.choices[:3])
    leaf = {"field": name, "op": op}
    if spec.qualifier:
        leaf[spec.qualifier] = draw(st.sampled_from(CURRENCIES if spec.qualifier == "currency" else KEYS))
    if op == "exists":
        leaf["value"] = draw(st.booleans())
    elif op in ("within_last", "more_than_ago"):
        leaf["value"] = draw(st.sampled_from([1, 30, 90, 365]))
    elif op in ("in", "not_in"):
        leaf["value"] = [raw(base, v) for v in draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))]
    elif op == "between":
        low, high = sorted(draw(st.lists(st.sampled_from(pool), min_size=2, max_size=2)))
        leaf["value"] = [raw(base, low), raw(base, high)]
    else:
        leaf["value"] = raw(base, draw(st.sampled_from(pool)))
    return leaf


rules = st.recursive(leaves(), lambda inner: st.one_of(
    st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda x: {"not": x}, inner)), max_leaves=8)


def _maybe(pool):
    return st.one_of(st.none(), st.sampled_from(pool))


@st.composite
def profiles(draw, index: int):
    record = profile_store.empty_record(f"c{index:04d}")
    record["status"] = draw(st.sampled_from(["active", "active", "active", "merged", "erased"]))
    for name, spec in FIELDS.items():
        if spec.kind != "column" or name == "customer_id":
            continue
        column = ProfileRow.__table__.c[name]
        pool = list(spec.choices[:3]) if spec.choices else POOLS[spec.type]
        length = getattr(column.type, "length", None)
        pool = [v for v in pool if not length or len(v) <= length]  # what the column can hold
        record[name] = draw(st.sampled_from(pool) if not column.nullable else _maybe(pool))
    for name in ("tags", "categories", "skus"):
        record[name] = sorted(draw(st.sets(st.sampled_from(LIST_POOL))))
    for name in ("interactions_by_type", "interactions_by_channel"):
        record[name] = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from([0, 1, 3]), max_size=2))
    for currency in draw(st.sets(st.sampled_from(CURRENCIES))):
        record["money"][currency] = {d: draw(st.sampled_from(POOLS["decimal"])) for d in
                                     ("total_spent", "avg_order_value", "clv")}
        record["money"][currency]["order_count"] = draw(st.sampled_from(POOLS["integer"]))
    record.update(created_at=NOW_, updated_at=NOW_)
    return record


@st.composite
def bases(draw):
    return [draw(profiles(i)) for i in range(draw(st.integers(min_value=1, max_value=12)))]


def test_sql_and_predicate_agree(database_factory):
    """A sync test driving its own event loop: hypothesis runs plain functions."""
    loop = asyncio.new_event_loop()
    url = loop.run_until_complete(database_factory.fresh("segmentation"))
    engine = create_engine(url)
    factory = create_session_factory(engine)

    async def membership(rule, base):
        node = parse_rule(rule, max_depth=32, max_nodes=1000)
        async with factory() as session, session.begin():
            for table in (ProfileMoneyRow, ProfileValueRow, ProfileCounterRow, ProfileRow):
                await session.execute(delete(table.__table__))
            await profile_store.save_records(session, base, stored={})
        async with factory() as session:
            stored = await profile_store.load_records(session, [r["customer_id"] for r in base])
            by_sql = set((await session.execute(select(ProfileRow.customer_id).where(
                member_condition(node, NOW_)))).scalars())
        by_predicate = {cid for cid, record in stored.items() if is_member(node, record, NOW_)}
        compiled = compile_member(node)
        assert by_predicate == {cid for cid, record in stored.items() if compiled(record, NOW_)}, rule
        return by_sql, by_predicate

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rule=rules, base=bases())
    def check(rule, base):
        by_sql, by_predicate = loop.run_until_complete(membership(rule, base))
        assert by_sql == by_predicate, (rule, sorted(by_sql ^ by_predicate))

    try:
        check()
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
