"""A profile recomputed from all the facts attributed to it (pure, no I/O).

Used where the set of facts a customer counts changes as a whole (a merge, an unmerge) and by
the tests as the reference the running aggregates must always equal: the same set of facts
always gives the same profile, whatever the order and batching of the events that brought them.
"""
from __future__ import annotations

import operator
from datetime import datetime
from typing import Any

from .profile_aggregates import COMPLAINT_WINDOW, add_interaction, add_order, finish, is_complaint, zero_aggregates
from .scores import score

VOLATILE = frozenset(("version", "updated_at", "updated_from_events_at", "created_at"))


def recompute(record: dict[str, Any], orders: list[dict[str, Any]], interactions: list[dict[str, Any]],
              now: datetime, edges: dict[str, list], horizon_years: float) -> dict[str, Any]:
    """A new record: the contact part of `record` with aggregates and scores from the facts."""
    out = dict(record)
    zero_aggregates(out)
    unused: set[str] = set()
    for fact in orders:
        add_order(out, fact, +1, unused)
    for fact in interactions:
        add_interaction(out, fact, +1, unused)
    since = now - COMPLAINT_WINDOW
    finish(out, complaints_in_window=sum(1 for f in interactions if is_complaint(f) and f["occurred_at"] >= since))
    score(out, now, edges, horizon_years)
    return out


_MISSING = object()


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """The fields whose values differ, bookkeeping aside (every field of `new` when there was no
    `old`). An unchanged profile gets no new version and no event."""
    if old is None:
        return [k for k in new if k not in VOLATILE]
    if len(old) == len(new) and list(old) == list(new):
        # The usual case (a draft is a copy of the stored record): the values compared pairwise
        # in C, some 70 per profile and hundreds of profiles per poll.
        return [k for k, differs in zip(new, map(operator.ne, new.values(), old.values()))
                if differs and k not in VOLATILE]
    out = [k for k, v in new.items() if k not in VOLATILE and old.get(k, _MISSING) != v]
    out += [k for k in old if k not in new and k not in VOLATILE]
    return out
