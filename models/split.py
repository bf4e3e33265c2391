"""Time-based split of the feature frame into train / validation / test by declaration date."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import ParcelriskError

PARTS = ("train", "validation", "test")


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


def split_boundaries(declared_at: pd.Series, fractions: dict[str, float]) -> SplitBoundaries:
    """Cut the declaration period at whole UTC days by the fractions of its length.

    Whole days keep a day's parcels together (and make the cut readable in reports).
    """
    missing = [p for p in PARTS if p not in fractions]
    if missing:
        raise ParcelriskError(f"train.split lacks fraction(s): {', '.join(missing)}")
    total = sum(float(fractions[p]) for p in PARTS)
    if any(float(fractions[p]) <= 0 for p in PARTS) or not np.isclose(total, 1.0):
        raise ParcelriskError(
            f"train.split fractions must be positive and sum to 1, got {dict(fractions)}"
        )
    if declared_at.empty:
        raise ParcelriskError("cannot split an empty feature frame")
    start, end = declared_at.min(), declared_at.max()
    span = end - start
    validation_start = (start + span * float(fractions["train"])).ceil("D")
    test_start = (start + span * (float(fractions["train"]) + float(fractions["validation"]))).ceil(
        "D"
    )
    if not start < validation_start < test_start <= end:
        raise ParcelriskError(
            f"declaration period {start} .. {end} is too short for a train/validation/test split"
        )
    return SplitBoundaries(start, validation_start, test_start, end)
