"""Lane rates and hit rates by origin, channel and platform: one model version's (the auditor's
model page) or a period's (``parcelrisk monitor``).

Per group: how often the model sent its parcels to red (and to red or yellow), and how often an
inspected parcel of the group was found illicit. A group is flagged when its red rate, relative
to all groups', departs from its hit rate relative to all groups' by more than ``TOLERANCE``
(either way): it is inspected much more (or less) than its results justify. Groups with fewer
than ``MIN_RESULTS`` inspection results are not judged.
"""

from __future__ import annotations

import sqlite3
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


_COUNTS = """
SELECT json_extract(d.declaration_json, '$.origin_country'),
       json_extract(d.declaration_json, '$.channel'),
       d.lane, COUNT(*), COUNT(o.declaration_id), COALESCE(SUM(o.illicit), 0),
       json_extract(d.declaration_json, '$.platform_id')
FROM decisions AS d LEFT JOIN outcomes AS o ON o.declaration_id = d.declaration_id
WHERE (? IS NULL OR d.model_name = ?) AND (? IS NULL OR d.model_version = ?)
  AND (? IS NULL OR d.declared_at >= ?) AND (? IS NULL OR d.declared_at < ?)
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
    ``declared_to``) (the store's time text), read-only from the decision store file (or from
    a PostgreSQL store's URL)."""
    from serving.store import is_sqlite

    bounds = (model_name, model_version, declared_from, declared_to)
    if not is_sqlite(db_path):
        return _postgres_counts(str(db_path), bounds)
    from serving.outcome_store import sqlite_path

    db_path = sqlite_path(str(db_path))
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10.0)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"decisions", "outcomes"} <= tables:
            return []
        rows = conn.execute(_COUNTS, [v for b in bounds for v in (b, b)]).fetchall()
    finally:
        conn.close()
    return [LaneCount(*row) for row in rows]


# The same counts on PostgreSQL (declared_at is ISO text there too: text order is time order).
_PG_COUNTS = """
SELECT d.declaration_json::json ->> 'origin_country', d.declaration_json::json ->> 'channel',
       d.lane, COUNT(*), COUNT(o.declaration_id), COALESCE(SUM(o.illicit), 0),
       d.declaration_json::json ->> 'platform_id'
FROM decisions AS d LEFT JOIN outcomes AS o ON o.declaration_id = d.declaration_id
WHERE (CAST(:name AS text) IS NULL OR d.model_name = :name)
  AND (CAST(:version AS text) IS NULL OR d.model_version = :version)
  AND (CAST(:since AS text) IS NULL OR d.declared_at COLLATE "C" >= :since)
  AND (CAST(:until AS text) IS NULL OR d.declared_at COLLATE "C" < :until)
GROUP BY 1, 2, 3, 7
"""


def _postgres_counts(location: str, bounds: tuple[str | None, ...]) -> list[LaneCount]:
    import sqlalchemy as sa

    from serving.postgres_store import create_schema, make_engine, unavailable_as_error

    engine = make_engine(location)
    try:
        create_schema(engine)  # a store no one has scored into yet: empty tables, no counts
        with unavailable_as_error(engine), engine.connect() as conn:
            rows = conn.execute(
                sa.text(_PG_COUNTS),
                dict(zip(("name", "version", "since", "until"), bounds, strict=True)),
            ).all()
    finally:
        engine.dispose()
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
