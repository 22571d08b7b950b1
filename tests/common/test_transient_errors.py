"""Which database errors mean "the transaction lost a race: run it again"."""
from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from services.common.database import is_transient


@pytest.mark.parametrize("sqlstate,transient", [("40P01", True), ("40001", True), ("23505", False), (None, False)])
def test_only_deadlocks_and_serialization_failures_are_transient(sqlstate, transient):
    class Orig(Exception):
        pass

    orig = Orig()
    orig.sqlstate = sqlstate
    assert is_transient(DBAPIError("x", {}, orig)) is transient
