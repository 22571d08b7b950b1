"""The unattributed rows of a poll's reference keys are found through their partial indexes
(interaction_store.locked_unattributed), not by walking every unattributed row: SQLite, with no
statistics, picked the timeline index on customer_id IS NULL for the same query written plainly,
and anonymous page views make most rows unattributed."""
from __future__ import annotations

import pytest

from services.interactions.interaction_store import _UNATTRIBUTED
from services.interactions.models import metadata
from tests.conftest import sqlite_plan


async def test_sqlite_probes_the_partial_indexes(interactions_db):
    if not interactions_db.startswith("sqlite"):
        pytest.skip("the plan of SQLite's query planner")
    plan = await sqlite_plan(interactions_db, metadata, _UNATTRIBUTED)
    for index in ("ix_interactions_unattributed_email", "ix_interactions_unattributed_phone",
                  "ix_interactions_unattributed_visitor"):
        assert f"USING INDEX {index}" in plan, plan
    assert "ix_interactions_timeline" not in plan, plan
