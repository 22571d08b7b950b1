"""The interactions service's settings: the common ones plus its alert rules and time limits.

Every field here is read from an environment variable of the same name in upper case
(INTERACTIONS_ALERT_COMPLAINTS=5, ...), so operators tune the rules without a code change;
docs/interactions.md lists them. A rule whose threshold is 0 (or, for NPS, -1) is off.
"""
from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings, extended_settings


class InteractionSettings(ServiceSettings):
    # Rule "complaints": this many complaints by one customer within the window -> one alert.
    interactions_alert_complaints: int = Field(default=3, ge=0)
    interactions_alert_complaint_window_days: float = Field(default=7, gt=0)
    # Rule "nps": a customer's latest NPS answer at or below this -> one alert (until a higher one).
    interactions_alert_nps_at_or_below: int = Field(default=6, ge=-1, le=10)
    # Rule "ticket_open": a support ticket still open or pending this long after it was opened.
    interactions_alert_ticket_open_hours: float = Field(default=48, ge=0)
    interactions_alert_check_interval_s: float = Field(default=60, gt=0)
    # A time further in the future than this is a client clock or unit error, refused with 422.
    interactions_max_future_s: int = Field(default=300, ge=0)


def interaction_settings(settings: ServiceSettings | None = None, **overrides) -> InteractionSettings:
    """The service's settings from plain ServiceSettings (what the shared test helpers and
    load_settings build): its values are kept, the interactions fields come from the
    environment unless `overrides` set them."""
    return extended_settings(InteractionSettings, "interactions", settings, **overrides)
