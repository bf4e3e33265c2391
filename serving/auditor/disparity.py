"""Lane rates and hit rates by origin, channel and platform: one model version's (the auditor's
model page) or a period's (``parcelrisk monitor``).

Per group: how often the model sent its parcels to red (and to red or yellow), and how often an
inspected parcel of the group was found illicit. A group is flagged when its red rate, relative
to all groups', departs from its hit rate relative to all groups' by more than ``TOLERANCE``
(either way): it is inspected much more (or less) than its results justify. Groups with fewer
than ``MIN_RESULTS`` inspection results are not judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DIMENSIONS = ("origin_country", "channel", "platform_id")
TOLERANCE = 1.5  # ratio of (relative red rate) to (relative hit rate) that raises a flag
MIN_RESULTS = 20


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
) -> list[GroupRates]:
    """Rates per value of ``dimension`` (one of ``DIMENSIONS``), most decisions first."""
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
    out = []
    for group, (n, red, selected, inspected, illicit) in totals.items():
        red_rate = red / n if n else 0.0
        hit_rate = illicit / inspected if inspected else None
        out.append(
            GroupRates(
                group,
                n,
                red_rate,
                selected / n if n else 0.0,
                inspected,
                hit_rate,
                _flag(
                    red_rate,
                    hit_rate,
                    inspected,
                    overall_red,
                    overall_hit,
                    tolerance,
                    min_results,
                ),
            )
        )
    return sorted(out, key=lambda g: (-g.decisions, g.group))


def _flag(
    red_rate: float,
    hit_rate: float | None,
    inspected: int,
    overall_red: float,
    overall_hit: float,
    tolerance: float,
    min_results: int,
) -> str:
    if hit_rate is None or inspected < min_results:
        return "too few results"
    if overall_red <= 0 or overall_hit <= 0:
        return ""
    # a small floor keeps a group with no red (or no hit) comparable instead of dividing by zero
    red_ratio = max(red_rate / overall_red, 0.01)
    hit_ratio = max(hit_rate / overall_hit, 0.01)
    if red_ratio > hit_ratio * tolerance:
        return "more red than hits justify"
    if red_ratio * tolerance < hit_ratio:
        return "less red than hits justify"
    return ""


def flagged_groups(rates: Sequence[GroupRates]) -> list[str]:
    return [r.group for r in rates if r.flag and r.flag != "too few results"]
