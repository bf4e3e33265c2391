"""Capacity thresholds: priority cut-offs that fill the red and yellow lanes at set traffic shares."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from features.errors import ParcelriskError
from models.bundle import LaneThresholds, Objective


def fit_lane_thresholds(
    priority: np.ndarray, red_rate: float, yellow_rate: float, objective: Objective
) -> LaneThresholds:
    """Cut-offs from the priorities of ALL parcels of a period (the traffic, not only inspected).

    Red takes the top ``red_rate`` of traffic, yellow the next ``yellow_rate``.
    """
    priority = np.asarray(priority, dtype=np.float64)
    priority = priority[np.isfinite(priority)]
    if not (0 < red_rate < 1 and 0 <= yellow_rate < 1 and red_rate + yellow_rate < 1):
        raise ParcelriskError(
            f"lane rates must be in (0, 1) with red + yellow < 1, got red={red_rate} yellow={yellow_rate}"
        )
    if len(priority) == 0:
        raise ParcelriskError("no parcels to fit lane thresholds on")
    ranked = np.sort(priority)[::-1]
    n = len(ranked)
    k_red = max(1, round(n * red_rate))
    k_yellow = max(k_red, round(n * (red_rate + yellow_rate)))
    red_cutoff = float(ranked[k_red - 1])
    yellow_cutoff = float(ranked[min(k_yellow, n) - 1])
    content = {
        "objective": objective,
        "red_cutoff": red_cutoff,
        "yellow_cutoff": yellow_cutoff,
        "red_rate": float(red_rate),
        "yellow_rate": float(yellow_rate),
    }
    version = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
    return LaneThresholds(**content, version=version)


def lane_shares(priority: np.ndarray, thresholds: LaneThresholds) -> dict[str, float]:
    """Share of parcels each lane receives under ``thresholds``."""
    priority = np.asarray(priority, dtype=np.float64)
    red = priority >= thresholds.red_cutoff
    yellow = ~red & (priority >= thresholds.yellow_cutoff)
    return {
        "red": float(red.mean()),
        "yellow": float(yellow.mean()),
        "green": float(1.0 - red.mean() - yellow.mean()),
    }
