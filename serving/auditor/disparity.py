"""Lane rates and hit rates by origin, channel and platform: one model version's (the auditor's
model page) or a period's (``parcelrisk monitor``).

Per group: how often the model sent its parcels to red (and to red or yellow), and how often an
inspected parcel of the group was found illicit. A group is flagged when its red rate, relative
to all groups', departs from its hit rate relative to all groups' by more than ``TOLERANCE``
(either way): it is inspected much more (or less) than its results justify. Groups with fewer
than ``MIN_RESULTS`` inspection results are not judged.

A flag has to survive the group's sampling noise: the red rate's and the hit rate's Wilson
intervals are compared, not their points, each at ``CONFIDENCE`` shared among the groups judged
(Bonferroni). A platform with 23 results and one hit has a hit rate anywhere from 1% to 21%;
judged on its point, every unchanged period paged a dozen such groups (probe 29: 14 disparity
alerts on a period where nothing had changed, the one real cluster buried among them). Now an
unchanged period pages a dimension with a probability of at most 1 - ``CONFIDENCE``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from models.capacity import wilson_interval

DIMENSIONS = ("origin_country", "channel", "platform_id")
TOLERANCE = 1.5  # ratio of (relative red rate) to (relative hit rate) that raises a flag
MIN_RESULTS = 20
CONFIDENCE = 0.95  # that a dimension of groups where nothing departs raises no flag


@dataclass(frozen=True)
class LaneCount:
    """Decisions of one (origin, channel, platform, lane) cell and the inspection results
    among them."""

    origin_country: str | None
    channel: str | None
    lane: str
    decisions: int
    inspected: int
    illicit: int
    platform_id: str | None = None


@dataclass(frozen=True)
class GroupRates:
    group: str
    decisions: int
    red_rate: float
    selected_rate: float  # red or yellow
    inspected: int
    hit_rate: float | None  # None without results
    # "", "more red than hits justify", "less red than hits justify" or "too few results"
    flag: str
    # the intervals the flag was judged on (None for a group not judged)
    red_rate_low: float | None = None
    red_rate_high: float | None = None
    hit_rate_low: float | None = None
    hit_rate_high: float | None = None


# Written once for both stores (``serving.store_read``): ``{p}`` a parameter, ``{origin}``...
# a field of the stored declaration; CAST gives PostgreSQL a type for a parameter left NULL.
_COUNTS = """
SELECT {origin}, {channel}, d.lane, COUNT(*), COUNT(o.declaration_id),
       COALESCE(SUM(o.illicit), 0), {platform}
FROM decisions AS d LEFT JOIN {results} AS o ON o.declaration_id = d.declaration_id
WHERE (CAST({p} AS TEXT) IS NULL OR d.model_name = {p})
  AND (CAST({p} AS TEXT) IS NULL OR d.model_version = {p})
  AND (CAST({p} AS TEXT) IS NULL OR d.declared_at >= {p})
  AND (CAST({p} AS TEXT) IS NULL OR d.declared_at < {p})
GROUP BY 1, 2, 3, 7
"""


def read_lane_counts(
    db_path: Path | str,
    model_name: str | None = None,
    model_version: str | None = None,
    declared_from: str | None = None,
    declared_to: str | None = None,
) -> list[LaneCount]:
    """The counts of the decisions of one model version and/or declared in [``declared_from``,
    ``declared_to``) (the store's time text), read-only from the decision store (a SQLite file
    or a PostgreSQL URL); none before anything was scored and inspected."""
    from serving.outcomes import CURRENT_RESULTS
    from serving.store_read import read_only

    bounds = (model_name, model_version, declared_from, declared_to)
    with read_only(db_path) as store:
        if not {"decisions", "outcomes"} <= store.tables():
            return []
        fields = {
            name: store.json_text("d.declaration_json", key)
            for name, key in (
                ("origin", "origin_country"),
                ("channel", "channel"),
                ("platform", "platform_id"),
            )
        }
        _, rows = store.query(
            _COUNTS.format(p="{p}", results=CURRENT_RESULTS, **fields),
            [v for b in bounds for v in (b, b)],
        )
    return [LaneCount(*row) for row in rows]


def group_rates(
    counts: Iterable[LaneCount],
    dimension: str,
    tolerance: float = TOLERANCE,
    min_results: int = MIN_RESULTS,
    confidence: float = CONFIDENCE,
) -> list[GroupRates]:
    """Rates per value of ``dimension`` (one of ``DIMENSIONS``), most decisions first; each
    judged group's flag on its rates' intervals (the module's docstring)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {DIMENSIONS}")
    totals: dict[str, list[int]] = {}  # group -> [decisions, red, selected, inspected, illicit]
    for c in counts:
        key = str(getattr(c, dimension) or "(none)")
        t = totals.setdefault(key, [0, 0, 0, 0, 0])
        t[0] += c.decisions
        t[1] += c.decisions if c.lane == "red" else 0
        t[2] += c.decisions if c.lane in ("red", "yellow") else 0
        t[3] += c.inspected
        t[4] += c.illicit
    all_decisions = sum(t[0] for t in totals.values())
    all_red = sum(t[1] for t in totals.values())
    all_inspected = sum(t[3] for t in totals.values())
    all_illicit = sum(t[4] for t in totals.values())
    overall_red = all_red / all_decisions if all_decisions else 0.0
    overall_hit = all_illicit / all_inspected if all_inspected else 0.0
    groups = list(totals)
    n, red, selected, inspected, illicit = (
        np.array([totals[g][i] for g in groups], dtype=np.int64) for i in range(5)
    )
    judged = inspected >= min_results
    # two intervals for each judged group share the dimension's error rate
    z = NormalDist().inv_cdf(1 - (1 - confidence) / (4 * max(int(judged.sum()), 1)))
    red_low, red_high = wilson_interval(red, n, z=z)
    hit_low, hit_high = wilson_interval(illicit, inspected, z=z)
    out = []
    for i, group in enumerate(groups):
        hit_rate = illicit[i] / inspected[i] if inspected[i] else None
        bounds = (red_low[i], red_high[i], hit_low[i], hit_high[i])
        out.append(
            GroupRates(
                group,
                int(n[i]),
                float(red[i] / n[i]) if n[i] else 0.0,
                float(selected[i] / n[i]) if n[i] else 0.0,
                int(inspected[i]),
                None if hit_rate is None else float(hit_rate),
                _flag(bounds, bool(judged[i]), overall_red, overall_hit, tolerance),
                *((float(b) for b in bounds) if judged[i] else (None,) * 4),
            )
        )
    return sorted(out, key=lambda g: (-g.decisions, g.group))


def _flag(
    bounds: tuple[float, float, float, float],
    judged: bool,
    overall_red: float,
    overall_hit: float,
    tolerance: float,
) -> str:
    """The direction a group departs in, judged on its intervals (red low, red high, hit low,
    hit high): more red when even its lowest red rate is beyond what its highest hit rate
    justifies, less red when even its highest red rate is short of its lowest hit rate's."""
    if not judged:
        return "too few results"
    if overall_red <= 0 or overall_hit <= 0:
        return ""
    red_low, red_high, hit_low, hit_high = bounds
    if red_low / overall_red > tolerance * hit_high / overall_hit:
        return "more red than hits justify"
    if tolerance * red_high / overall_red < hit_low / overall_hit:
        return "less red than hits justify"
    return ""


def flagged_groups(rates: Sequence[GroupRates]) -> list[str]:
    return [r.group for r in rates if r.flag and r.flag != "too few results"]
