"""A column type for exact money on both databases.

PostgreSQL has an exact NUMERIC. SQLite has none: a NUMERIC column there stores a float (so
"19.99" would come back as 19.989999...), which the data rules forbid, so on SQLite the
decimal is kept as its text. Either way Python sees a Decimal.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Numeric, String
from sqlalchemy.types import TypeDecorator


class ExactDecimal(TypeDecorator):
    impl = Numeric(20, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(Numeric(20, 6, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value)
        return f"{value:f}" if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)
