"""If-Match, one way for every service. The ETag a read gives out is the resource's version in
quotes ("3"); a write that sends it back succeeds only while the resource is still at that
version (the use case compares, and answers 412 when it moved on)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from .errors import BadRequest, PreconditionFailed


def parse_if_match(header: str | None) -> int | None:
    """`"3"`, `W/"3"` or `3` -> 3; absent or `*` -> None (any version). An entity tag this API
    never gave out matches no version of anything: 412, as RFC 9110 asks for any tag that does
    not match, not a validation error."""
    if header is None or header.strip() == "*":
        return None
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if len(tags) != 1:
        raise BadRequest("If-Match: send the one ETag of your read (or *)", field="If-Match")
    value = tags[0].removeprefix("W/").strip('"')
    if not value.isdigit():
        raise PreconditionFailed(f"If-Match {tags[0]} is not an ETag this API gave out, so it matches no version; "
                                 "read the resource again and send its ETag")
    return int(value)


async def if_match_version(if_match: Annotated[str | None, Header(
        description='The ETag of your read, e.g. "3": the change is made only if nobody changed the resource since '
                    "(412 otherwise). Absent or *: any version.")] = None) -> int | None:
    return parse_if_match(if_match)


IfMatch = Annotated[int | None, Depends(if_match_version)]
