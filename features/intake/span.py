"""A history's span without its isolated ends: a few declarations far from the rest.

A year typed 2006 for 2026, or the January slip 2025 for 2026, makes one declaration lie years
from the others. ``train.split``'s fractions divided the whole span, so one such row sent every
real parcel of a retrain to the test period (probe 10); the gate names such rows
(``declared_at.isolated``) and the split divides the span without them (``models.split``).

Up to ``ISOLATED_MAX_SHARE`` of the rows (at least one) at each end, those separated from the
rest by more than ``ISOLATED_GAP`` are isolated; more of them are a period of the history.
Pure numpy over UTC microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

US_PER_DAY = 86_400_000_000
ISOLATED_GAP_DAYS = 30
ISOLATED_MAX_SHARE = 0.001


@dataclass(frozen=True)
class DenseSpan:
    """The span of a history's declaration times without its isolated ends (UTC us)."""

    start_us: int
    end_us: int
    before: np.ndarray  # positions (in the input) of the isolated declarations before start
    after: np.ndarray  # and after end
    earliest_us: int
    latest_us: int


def dense_span(t_us: np.ndarray) -> DenseSpan | None:
    """``DenseSpan`` of declaration times (UTC us; missing ones, NaT's minimum, left out);
    None when there are none."""
    t_us = np.asarray(t_us, dtype=np.int64)
    present = np.flatnonzero(t_us != np.iinfo(np.int64).min)
    if not len(present):
        return None
    order = present[np.argsort(t_us[present], kind="stable")]
    t = t_us[order]
    n = len(t)
    gap = ISOLATED_GAP_DAYS * US_PER_DAY
    k = min(max(1, int(n * ISOLATED_MAX_SHARE)), max(0, (n - 2) // 2))
    before = after = 0
    if k:
        wide = np.flatnonzero(np.diff(t[: k + 1]) > gap)
        before = int(wide[-1]) + 1 if len(wide) else 0
        wide = np.flatnonzero(np.diff(t[n - k - 1 :]) > gap)
        after = k - int(wide[0]) if len(wide) else 0
    return DenseSpan(
        start_us=int(t[before]),
        end_us=int(t[n - 1 - after]),
        before=np.sort(order[:before]),
        after=np.sort(order[n - after :]),
        earliest_us=int(t[0]),
        latest_us=int(t[-1]),
    )
