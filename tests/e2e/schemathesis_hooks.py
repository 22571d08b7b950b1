"""Schemathesis hooks for the contract test (tests/e2e/test_api_contract.py), loaded through
tests/e2e/schemathesis.toml. Only for request parts whose valid values a schema cannot describe;
each is tested on its own elsewhere."""
from __future__ import annotations

import uuid

import schemathesis
from schemathesis import GenerationMode


@schemathesis.hook
def map_case(ctx, case):
    """In cases meant to be valid: no `cursor` (a token the server gives out for one listing: a
    generated one can only be refused; tests/common/test_http_semantics.py tests cursors), and
    an Idempotency-Key of their own (the same key with another body is rightly a 422, and a
    client makes a new key for each new request)."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    if case.query:
        case.query.pop("cursor", None)
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    return case
