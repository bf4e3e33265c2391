"""Which parcels carry labels, and which of those describe all the traffic.

Labels exist only for inspected parcels with a recorded outcome, and past inspections were
chosen by the legacy rules, so most labels are biased toward what the rules target. The unbiased
sample is the random-exploration parcels, or every parcel when the administration inspects
everything (a census). Training fits on every label; calibration and evaluation prefer the
unbiased sample.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.intake.contract import RANDOM_SELECTION

UnbiasedSample = Literal["random", "census", "none"]
OUTCOME_COLUMNS = ("inspected", "illicit", "selection_reason")  # what unbiased_mask reads


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Refuse a frame without ``columns`` in one line that names them."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ParcelriskError(f"{what} lacks column(s): {', '.join(missing)}")


def labelled_mask(frame: pd.DataFrame) -> np.ndarray:
    """Inspected parcels with a recorded outcome: the only ones with labels."""
    inspected = frame["inspected"].astype("boolean").fillna(False).to_numpy(bool)
    return inspected & frame["illicit"].notna().to_numpy()


def recorded_before(frame: pd.DataFrame, when: pd.Timestamp) -> np.ndarray:
    """Rows whose result was recorded (``inspected_at``) before ``when``, or whose record
    time is unknown (a frame without the column, an empty cell): what a model trained at
    ``when`` could have learnt from."""
    if "inspected_at" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    at = pd.to_datetime(frame["inspected_at"], utc=True)
    return (at.isna() | (at < when)).to_numpy(dtype=bool)


def random_mask(frame: pd.DataFrame) -> np.ndarray:
    """Parcels inspected by the random exploration quota: the unbiased labels."""
    return (frame["selection_reason"].astype("str") == RANDOM_SELECTION).fillna(False).to_numpy(
        bool
    ) & labelled_mask(frame)


def unbiased_mask(frame: pd.DataFrame) -> tuple[np.ndarray, UnbiasedSample]:
    """The parcels of ``frame`` whose labels describe all its traffic, and what kind they are.

    ``random``: the random-exploration parcels, when the frame has any; ``census``: every
    parcel, when every one was inspected with a result (nothing was selected, so nothing is
    biased); ``none``: no unbiased labels (legacy selection only).
    """
    random = random_mask(frame)
    if random.any():
        return random, "random"
    labelled = labelled_mask(frame)
    if len(frame) and labelled.all():
        return labelled, "census"
    return np.zeros(len(frame), dtype=bool), "none"


def unbiased_rows(frame: pd.DataFrame, kind: UnbiasedSample) -> np.ndarray:
    """The rows of ``frame`` in an unbiased sample of ``kind`` (found by ``unbiased_mask`` on
    the frame, or on a larger one it is part of)."""
    if kind == "random":
        return random_mask(frame)
    if kind == "census":
        return labelled_mask(frame)
    return np.zeros(len(frame), dtype=bool)


def illicit_labels(frame: pd.DataFrame) -> np.ndarray:
    """1.0 for illicit, 0.0 otherwise (unlabelled parcels too: mask them with labelled_mask)."""
    return frame["illicit"].astype("boolean").fillna(False).to_numpy(dtype=np.float64)
