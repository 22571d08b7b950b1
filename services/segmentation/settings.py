"""The segmentation service's settings: the common ones plus its timers and scoring knobs.

Each is read from the environment variable of the same name in upper case
(SEGMENTATION_REEVALUATE_INTERVAL_S=600, ...); docs/segmentation.md lists them.
"""
from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings, extended_settings


class SegmentationSettings(ServiceSettings):
    # How often segments with relative times (within_last / more_than_ago) and the scores that
    # depend on the date (RFM recency, churn risk, complaints in 90 days) are brought up to date.
    segmentation_reevaluate_interval_s: float = Field(default=900, gt=0)
    # Rules are refused beyond these (a rule is compiled to one SQL statement).
    segmentation_rule_max_depth: int = Field(default=8, ge=2, le=32)
    segmentation_rule_max_nodes: int = Field(default=200, ge=2, le=2000)
    # CLV = average order value x expected orders per year x this many years (docs/segmentation.md).
    segmentation_clv_horizon_years: float = Field(default=3, gt=0)


def segmentation_settings(settings: ServiceSettings | None = None, **overrides) -> SegmentationSettings:
    """The service's settings from plain ServiceSettings (what the shared test helpers build)."""
    return extended_settings(SegmentationSettings, "segmentation", settings, **overrides)
