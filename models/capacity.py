"""Lane capacity planning: what inspecting the top r% of traffic would cost and catch.

For each share r of a fixed grid (``PLAN_RATES``), the cut-off on the period's effective priority
that sends the top r to inspection (red alone, or red + yellow together: the same cut-off
function), the inspections per day that means, and what they would find:

- estimated on the **exploration parcels with results**: the random quota is drawn independently
  of the score, so among the explored parcels above the cut-off the illicit share and the mean
  revenue per inspection estimate those of every parcel above it (Wilson interval for the hit
  rate, normal interval for the mean revenue), scaled by the parcels per day;
- where a ground truth is given (simulated worlds), counted on every parcel above the cut-off.

Pure: frames in, a frame out (``serving.lanes_cli`` reads the store and prints).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from models.thresholds import cutoffs_at_shares

PLAN_RATES: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20)
Z_95 = 1.959963984540054


def wilson_interval(
    hits: np.ndarray, n: np.ndarray, z: float = Z_95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion, elementwise; NaN where ``n`` is 0."""
    hits = np.asarray(hits, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = hits / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    # exact at the ends: no hit has a lower bound of 0 (the formula leaves a rounding residue,
    # 3.5e-18 at 0/66, which put the rate below its own interval), every hit an upper one of 1
    lo = np.where(hits <= 0, 0.0, np.clip(centre - half, 0.0, p))
    hi = np.where(hits >= n, 1.0, np.clip(centre + half, p, 1.0))
    empty = n <= 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


def plan_capacity(
    traffic: pd.DataFrame,
    days: float,
    rates: tuple[float, ...] = PLAN_RATES,
) -> pd.DataFrame:
    """One row per inspected share of traffic.

    ``traffic``: one row per parcel of the period with ``effective_priority``, ``exploration``
    (bool), ``illicit`` and ``revenue`` (the inspection result: NaN where none), and optionally
    ``true_illicit`` / ``true_revenue`` (ground truth of every parcel). ``days``: the period's
    length. Columns: rate, cutoff, parcels, per_day; explored (exploration parcels with a result
    above the cut-off), explored_hits, hit_rate (+ _lo/_hi), revenue_per_inspection (+ _lo/_hi),
    hits_per_day, revenue_per_day (estimates); true_hits_per_day, true_hit_rate,
    true_revenue_per_day when a truth is given.
    """
    if days <= 0:
        raise ParcelriskError(f"the planning period must last more than 0 days, got {days}")
    for column in ("effective_priority", "exploration", "illicit", "revenue"):
        if column not in traffic.columns:
            raise ParcelriskError(f"planning traffic lacks column {column!r}")
    priority = traffic["effective_priority"].to_numpy(np.float64)
    rates_arr = np.asarray(rates, dtype=np.float64)
    cutoffs = cutoffs_at_shares(priority, rates_arr)
    above = priority[None, :] >= cutoffs[:, None]  # (rates, parcels)
    parcels = above.sum(axis=1)

    illicit = traffic["illicit"].to_numpy(np.float64, na_value=np.nan)
    revenue = traffic["revenue"].to_numpy(np.float64, na_value=np.nan)
    sampled = traffic["exploration"].to_numpy(bool) & ~np.isnan(illicit)
    # a clean inspection recovers nothing; a hit without a reported amount counts as 0 too
    recovered = np.where(illicit == 1, np.nan_to_num(revenue), 0.0)
    sample = above & sampled[None, :]
    n = sample.sum(axis=1)
    hits = (sample * np.nan_to_num(illicit)[None, :]).sum(axis=1)
    lo, hi = wilson_interval(hits, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit_rate = np.where(n > 0, hits / n, np.nan)
        sums = (sample * recovered[None, :]).sum(axis=1)
        mean_rev = np.where(n > 0, sums / n, np.nan)
        sq = (sample * (recovered[None, :] - mean_rev[:, None]) ** 2).sum(axis=1)
        sd = np.sqrt(np.where(n > 1, sq / (n - 1), np.nan))
        half = Z_95 * sd / np.sqrt(n)
    per_day = parcels / days
    out = pd.DataFrame(
        {
            "rate": rates_arr,
            "cutoff": cutoffs,
            "parcels": parcels.astype(np.int64),
            "per_day": per_day,
            "explored": n.astype(np.int64),
            "explored_hits": hits.astype(np.int64),
            "hit_rate": hit_rate,
            "hit_rate_lo": lo,
            "hit_rate_hi": hi,
            "revenue_per_inspection": mean_rev,
            "revenue_per_inspection_lo": np.maximum(mean_rev - half, 0.0),
            "revenue_per_inspection_hi": mean_rev + half,
            "hits_per_day": per_day * hit_rate,
            "revenue_per_day": per_day * mean_rev,
        }
    )
    if "true_illicit" in traffic.columns:
        true_illicit = traffic["true_illicit"].to_numpy(np.float64, na_value=0.0)
        true_revenue = (
            traffic["true_revenue"].to_numpy(np.float64, na_value=0.0)
            if "true_revenue" in traffic.columns
            else np.zeros(len(traffic))
        )
        true_hits = (above * true_illicit[None, :]).sum(axis=1)
        caught = (above * (true_illicit * true_revenue)[None, :]).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["true_hit_rate"] = np.where(parcels > 0, true_hits / parcels, np.nan)
        out["true_hits_per_day"] = true_hits / days
        out["true_revenue_per_day"] = caught / days
    return out
