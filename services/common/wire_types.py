"""Building blocks of every service's API models."""
from __future__ import annotations

from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict


class WireModel(BaseModel):
    """A request body: an unknown field is refused (422), so a typo never silently drops data."""

    model_config = ConfigDict(extra="forbid")


def _country(value: str) -> str:
    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


CountryCode = Annotated[str, AfterValidator(_country)]
