"""Isotonic calibration of raw risk scores, stored as interpolation knots (``Calibration``)."""

from __future__ import annotations

import numpy as np

from features.errors import ParcelriskError
from models.bundle import Calibration

# Log-odds beyond the fitted range where the end knots sit: far enough that real scores
# never reach the flat part, so the map stays strictly increasing where it is used.
_TAIL_LOGODDS = 20.0
# Largest probability step the tails may add past the outermost fitted block.
_TAIL_STEP = 1e-3
_EDGE = 1e-6


def fit_isotonic(
    raw: np.ndarray, illicit: np.ndarray, weight: np.ndarray | None = None
) -> Calibration:
    """Fit a strictly increasing isotonic map from raw score to probability.

    Plain isotonic regression is a step function: whole blocks of parcels get one probability,
    so the top lanes could not be filled at an exact rate and ranking resolution is lost.
    The knots are the centroids of the isotonic blocks (centred isotonic regression), which
    keeps the calibration of the blocks and interpolates strictly between them; two tail knots
    a tiny step beyond the outer blocks keep the extremes ordered too.
    """
    from sklearn.isotonic import IsotonicRegression

    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(illicit, dtype=np.float64)
    if len(raw) < 2 or np.unique(y).size < 2:
        raise ParcelriskError(
            f"calibration needs both illicit and clean labelled parcels; got {len(y)} parcels, "
            f"{int(y.sum())} illicit"
        )
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    fitted = iso.fit(raw, y, sample_weight=weight).predict(raw)
    w = np.ones_like(raw) if weight is None else np.asarray(weight, dtype=np.float64)
    levels, block = np.unique(fitted, return_inverse=True)
    # Isotonic merges equal neighbours, so only the outer blocks can sit at exactly 0 or 1;
    # nudging them inside keeps every knot distinct and never claims certainty.
    levels = np.clip(levels, _EDGE, 1.0 - _EDGE)
    centroid = np.bincount(block, weights=raw * w) / np.bincount(block, weights=w)
    lo_p = levels[0] - min(_TAIL_STEP, levels[0] / 2)
    hi_p = levels[-1] + min(_TAIL_STEP, (1.0 - levels[-1]) / 2)
    raw_knots = np.r_[raw.min() - _TAIL_LOGODDS, centroid, raw.max() + _TAIL_LOGODDS]
    prob_knots = np.r_[lo_p, levels, hi_p]
    return Calibration(
        raw_knots=tuple(float(v) for v in raw_knots),
        prob_knots=tuple(float(v) for v in prob_knots),
        method="centred_isotonic",
    )
