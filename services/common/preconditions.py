"""If-Match, one way for every service. The ETag a read gives out is the resource's version in
quotes ("3"); a write that sends it back is made only while the resource is still at one of the
versions named (RFC 9110 13.1.1), and answers 412 otherwise: whether the tag is stale or one this
API never gave out (`"stale-0"`), it matches no current version."""
from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header

from .errors import PreconditionFailed

# `*`, or entity tags (RFC 9110 8.8.3), weak or strong, comma-separated.
ENTITY_TAG = r'(W/)?"[\x21\x23-\x7e]*"'
IF_MATCH_PATTERN = rf"^\s*(\*|{ENTITY_TAG}(\s*,\s*{ENTITY_TAG})*)\s*$"
_TAG = re.compile(r'(?:W/)?"([^"]*)"')


def parse_if_match(header: str | None) -> frozenset[int] | None:
    """The versions an If-Match (of IF_MATCH_PATTERN's syntax) names; None for no header or `*`
    (any version). A tag that is not a version of ours is left out, so it matches nothing."""
    if header is None or header.strip() == "*":
        return None
    return frozenset(int(tag) for tag in _TAG.findall(header) if tag.isdigit())


def check_if_match(if_match: frozenset[int] | None, current_version: int, what: str) -> None:
    """412 unless the resource (`what`, e.g. "contact 5f0c...") is at a version If-Match names."""
    if if_match is not None and current_version not in if_match:
        raise PreconditionFailed(f"{what} is at version {current_version}, which If-Match does not name; read it "
                                 "again and send its ETag", current_version=current_version)


async def if_match_versions(if_match: Annotated[str | None, Header(
        pattern=IF_MATCH_PATTERN,  # another syntax is a 422, as for any malformed parameter
        description='The ETag of your read, e.g. "3": the change is made only if nobody changed the resource since '
                    "(412 otherwise). Absent or *: any version.")] = None) -> frozenset[int] | None:
    return parse_if_match(if_match)


IfMatch = Annotated[frozenset[int] | None, Depends(if_match_versions)]
