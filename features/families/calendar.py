"""Calendar family: when the declaration was lodged, in the administration's local time."""

from __future__ import annotations

import numpy as np

from features.pipeline.family import Family, Rows, SpecContext, Values
from features.pipeline.history import US_PER_DAY, US_PER_HOUR
from features.pipeline.manifest import FeatureSpec

_SPECS = (
    FeatureSpec(
        "hour_of_day",
        "calendar",
        "float",
        "Hour of declaration, local time (features.timezone).",
        "declared at {value:.0f}h",
    ),
    FeatureSpec(
        "day_of_week",
        "calendar",
        "float",
        "Day of week of declaration (0 = Monday).",
        "declared on weekday {value:.0f}",
    ),
)


def local_time_us(t_us: np.ndarray, timezone: str) -> np.ndarray:
    """UTC microseconds moved to the wall clock of ``timezone`` (daylight saving included).

    Offsets are looked up once per distinct quarter hour (transitions fall on quarter hours),
    so a batch of a million parcels costs a few thousand lookups and a request a handful.
    """
    if timezone == "UTC":
        return t_us
    from datetime import datetime
    from zoneinfo import ZoneInfo

    quarter = 15 * 60 * 1_000_000
    buckets, inverse = np.unique(t_us // quarter, return_inverse=True)
    zone = ZoneInfo(timezone)
    offsets = np.fromiter(
        (
            datetime.fromtimestamp(int(b) * 900, zone).utcoffset().total_seconds()
            for b in buckets.tolist()
        ),
        dtype=np.float64,
        count=len(buckets),
    )
    return t_us + (offsets[inverse.reshape(-1)] * 1_000_000).astype(np.int64)


class Calendar(Family):
    name = "calendar"
    distribution = "rows"

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        return list(_SPECS)

    def compute(self, rows: Rows, part: None = None) -> Values:
        t_us = local_time_us(rows.prep["t_us"], rows.params.timezone)
        days = t_us // US_PER_DAY
        return {
            "hour_of_day": ((t_us - days * US_PER_DAY) // US_PER_HOUR).astype(np.float64),
            "day_of_week": ((days + 3) % 7).astype(np.float64),  # 1970-01-01 was a Thursday
        }


FAMILY = Calendar()
