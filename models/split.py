"""Time-based split of the feature frame into train / validation / test by declaration date."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.intake.contract import utc_instant

log = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")
DATE_KEYS = ("validation_start", "test_start")
# A few declarations far before (or after) the rest of a history, a year typed 2006 for 2026
# or the January slip 2025 for 2026, would stretch the period the fractions divide: one such
# row put every real parcel of a retrain in the test period and left none to train on (probe
# 10). Up to this share of the rows (at least one), each end's declarations separated from the
# rest by more than ISOLATED_GAP are left out of the span divided; they stay in the first or
# last part. A history without such gaps is split exactly as before.
ISOLATED_GAP = pd.Timedelta(days=30)
ISOLATED_MAX_SHARE = 0.001


@dataclass(frozen=True)
class DenseSpan:
    """The declaration period the fractions divide, and the isolated rows left out of it."""

    start: pd.Timestamp
    end: pd.Timestamp
    before: int  # isolated declarations before ``start``
    after: int  # and after ``end``
    earliest: pd.Timestamp
    latest: pd.Timestamp


def dense_span(declared_at: pd.Series) -> DenseSpan:
    """The span of ``declared_at`` without its isolated ends (``ISOLATED_GAP``)."""
    t = np.sort(declared_at.to_numpy(dtype="datetime64[us]").astype(np.int64))
    n = len(t)
    gap = ISOLATED_GAP // pd.Timedelta(microseconds=1)
    k = min(max(1, int(n * ISOLATED_MAX_SHARE)), max(0, (n - 2) // 2))
    before = after = 0
    if k:
        wide = np.flatnonzero(np.diff(t[: k + 1]) > gap)
        before = int(wide[-1]) + 1 if len(wide) else 0
        wide = np.flatnonzero(np.diff(t[n - k - 1 :]) > gap)
        after = k - int(wide[0]) if len(wide) else 0

    def stamp(us: int) -> pd.Timestamp:
        return pd.Timestamp(us * 1000, tz="UTC")

    return DenseSpan(
        stamp(t[before]), stamp(t[n - 1 - after]), before, after, stamp(t[0]), stamp(t[-1])
    )


@dataclass(frozen=True)
class SplitBoundaries:
    """Half-open periods [start, validation_start), [validation_start, test_start), [test_start, end]."""

    start: pd.Timestamp
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp

    def to_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, payload: dict[str, str]) -> SplitBoundaries:
        return cls(**{k: pd.Timestamp(v) for k, v in payload.items()})

    def masks(self, declared_at: pd.Series) -> dict[str, np.ndarray]:
        t = declared_at
        return {
            "train": (t < self.validation_start).to_numpy(),
            "validation": ((t >= self.validation_start) & (t < self.test_start)).to_numpy(),
            "test": (t >= self.test_start).to_numpy(),
        }


def split_boundaries(declared_at: pd.Series, split: Mapping[str, Any]) -> SplitBoundaries:
    """Boundaries of the train / validation / test periods from ``train.split``.

    Two forms, exactly one per config:
    - fractions ``{train, validation, test}`` of the declaration period's length, cut at whole
      UTC days (a day's parcels stay together, and the cut reads well in reports);
    - dates ``{validation_start, test_start}`` (ISO date or datetime; naive means UTC), for an
      administration that knows which months it wants to hold out.
    """
    if declared_at.empty:
        raise ParcelriskError("cannot split an empty feature frame")
    keys = set(split)
    unknown = keys - set(PARTS) - set(DATE_KEYS)
    if unknown:
        raise ParcelriskError(
            f"train.split: unknown key(s) {', '.join(sorted(unknown))}; give either fractions "
            f"{{{', '.join(PARTS)}}} or dates {{{', '.join(DATE_KEYS)}}}"
        )
    if keys & set(PARTS) and keys & set(DATE_KEYS):
        raise ParcelriskError(
            f"train.split mixes fractions and dates ({', '.join(sorted(keys))}): give either "
            f"{{{', '.join(PARTS)}}} or {{{', '.join(DATE_KEYS)}}}"
        )
    start, end = declared_at.min(), declared_at.max()
    if keys & set(DATE_KEYS):
        return _boundaries_from_dates(start, end, split)
    dense = dense_span(declared_at)
    day = "%Y-%m-%d"
    for count, side, edge, extreme, part in (
        (dense.before, "before", dense.start, dense.earliest, "first"),
        (dense.after, "after", dense.end, dense.latest, "last"),
    ):
        if count:
            log.warning(
                "train.split: %d declaration(s) lie more than %d days %s the rest of the "
                "history (%s %s; the %s: %s): a mistyped year? They are left out of the "
                "period the fractions divide and fall in the %s part",
                count,
                ISOLATED_GAP.days,
                side,
                side,
                f"{edge:{day}}",
                "earliest" if side == "before" else "latest",
                f"{extreme:{day}}",
                part,
            )
    return _boundaries_from_fractions(start, end, split, dense)


def _boundaries_from_fractions(
    start: pd.Timestamp, end: pd.Timestamp, fractions: Mapping[str, Any], dense: DenseSpan
) -> SplitBoundaries:
    missing = [p for p in PARTS if p not in fractions]
    if missing:
        raise ParcelriskError(f"train.split lacks fraction(s): {', '.join(missing)}")
    try:
        share = {p: float(fractions[p]) for p in PARTS}
    except (TypeError, ValueError) as exc:
        raise ParcelriskError(f"train.split fractions must be numbers: {exc}") from exc
    if any(v <= 0 for v in share.values()) or not np.isclose(sum(share.values()), 1.0):
        raise ParcelriskError(
            f"train.split fractions must be positive and sum to 1, got {dict(fractions)}"
        )
    span = dense.end - dense.start
    validation_start = (dense.start + span * share["train"]).ceil("D")
    test_start = (dense.start + span * (share["train"] + share["validation"])).ceil("D")
    if not start < validation_start < test_start <= end:
        raise ParcelriskError(
            f"declaration period {start} .. {end} is too short for a train/validation/test split"
        )
    return SplitBoundaries(start, validation_start, test_start, end)


def _boundaries_from_dates(
    start: pd.Timestamp, end: pd.Timestamp, dates: Mapping[str, Any]
) -> SplitBoundaries:
    missing = [k for k in DATE_KEYS if k not in dates]
    if missing:
        raise ParcelriskError(f"train.split lacks date(s): {', '.join(missing)}")
    validation_start, test_start = (utc_instant(dates[k], f"train.split {k}") for k in DATE_KEYS)
    if not validation_start < test_start:
        raise ParcelriskError(
            f"train.split validation_start {validation_start} must be before "
            f"test_start {test_start}"
        )
    # Each period must hold parcels: the train period starts at the first declaration and the
    # test period ends at the last one.
    if not start < validation_start:
        raise ParcelriskError(
            f"train.split validation_start {validation_start} leaves no training period: the "
            f"declarations run from {start} to {end}"
        )
    if not test_start <= end:
        raise ParcelriskError(
            f"train.split test_start {test_start} leaves no test period: the declarations run "
            f"from {start} to {end}"
        )
    return SplitBoundaries(start, validation_start, test_start, end)
