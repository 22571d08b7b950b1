"""Building blocks of every service's API models."""
from __future__ import annotations

import re
from typing import Annotated

import email_validator
import phonenumbers
from fastapi import Header
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema


class WireModel(BaseModel):
    """A request body: an unknown field is refused (422), so a typo never silently drops data."""

    model_config = ConfigDict(extra="forbid")


def _country(value: str) -> str:
    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


# The schema lists what _country accepts: the codes phonenumbers knows, in either case.
COUNTRY_CODES = sorted(phonenumbers.SUPPORTED_REGIONS)
CountryCode = Annotated[str, AfterValidator(_country), WithJsonSchema({
    "type": "string", "enum": COUNTRY_CODES + [code.lower() for code in COUNTRY_CODES],
    "description": "ISO 3166-1 alpha-2 country code", "examples": ["IR"]})]

# Text that is stripped of surrounding whitespace and must not be empty then: the schema says it
# must hold something other than whitespace (minLength alone would let "  " through).
NOT_BLANK = r"\S"

# An email or a phone as a client sends it; contact_points.py validates it where it is used (422).
# The schema says so: `email` is the standard format, `phone` this API's own (OpenAPI allows
# formats of its own): a number libphonenumber reads as valid, in the international form or in
# the national form of DEFAULT_PHONE_REGION, Persian and Arabic-Indic digits included.
# email-validator also refuses special-use domains (RFC 6761: .test, .local, ...), which no mail reaches.
_SPECIAL_USE = "|".join("".join(f"[{c}{c.upper()}]" for c in name)  # either case: [tT][eE][sS][tT]
                        for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)
EMAIL_FORMAT = {"format": "email", "not": {"pattern": rf"[.@]({_SPECIAL_USE})\.?$"}, "maxLength": 254}
PHONE_FORMAT = {"format": "phone", "description": "A phone number, such as +989121234567 or 09121234567 "
                "(national forms are read in DEFAULT_PHONE_REGION)"}
EmailText = Annotated[str, StringConstraints(min_length=1, max_length=254), Field(json_schema_extra=EMAIL_FORMAT)]
PhoneText = Annotated[str, StringConstraints(min_length=1, max_length=64), Field(json_schema_extra=PHONE_FORMAT)]

def json_number(value: object) -> object:
    """For a BeforeValidator of an int or float field: only a JSON number, as the schema says;
    pydantic alone would also read `true` as 1 and "5" as 5. (5.0 is an integer to JSON Schema.)"""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a JSON number")
    return value


RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: object) -> object:
    """Only an RFC 3339 string: pydantic alone also reads `0.5` as a Unix time, and an omitted zone."""
    if not isinstance(value, str) or not RFC3339.fullmatch(value.strip()):
        raise ValueError("must be an RFC 3339 time with its timezone, such as 2026-01-31T10:00:00Z")
    return value


# The header of writes that clients retry (services/common/idempotency.py).
IdempotencyKeyHeader = Annotated[str | None, Header(
    min_length=1, max_length=255,
    description="Retries of this write with the same key and body answer the first response again; the same key "
                "with another body is a 422, a key whose first request still runs a 409")]

# A time given in a query string or a body: RFC 3339 with its zone, as the schema says (date-time).
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
