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
from features.intake.span import ISOLATED_GAP_DAYS, DenseSpan, dense_span

log = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")
DATE_KEYS = ("validation_start", "test_start")


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
    # a few declarations far from the rest (a mistyped year) do not stretch the span divided
    dense = dense_span(declared_at.to_numpy(dtype="datetime64[us]").astype(np.int64))
    if dense is None:
        raise ParcelriskError("cannot split a feature frame without declaration times")
    day = "%Y-%m-%d"
    for rows, side, edge_us, extreme_us, part in (
        (dense.before, "before", dense.start_us, dense.earliest_us, "first"),
        (dense.after, "after", dense.end_us, dense.latest_us, "last"),
    ):
        if len(rows):
            log.warning(
                "train.split: %d declaration(s) lie more than %d days %s the rest of the "
                "history (%s %s; the %s: %s): a mistyped year? They are left out of the "
                "period the fractions divide and fall in the %s part",
                len(rows),
                ISOLATED_GAP_DAYS,
                side,
                side,
                f"{_stamp(edge_us):{day}}",
                "earliest" if side == "before" else "latest",
                f"{_stamp(extreme_us):{day}}",
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
    dense_start, dense_end = _stamp(dense.start_us), _stamp(dense.end_us)
    span = dense_end - dense_start
    validation_start = (dense_start + span * share["train"]).ceil("D")
    test_start = (dense_start + span * (share["train"] + share["validation"])).ceil("D")
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


def _stamp(t_us: int) -> pd.Timestamp:
    return pd.Timestamp(t_us * 1000, tz="UTC")
