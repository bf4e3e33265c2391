"""Baselines scored on the same split as the model: what the model has to beat.

- ``logistic``: standardised logistic regression on the same feature matrix (NaN imputed);
- ``risk_profile``: ASYCUDA-style selectivity profile, the smoothed historical hit rate of the
  (HS chapter, origin country) cell learned on the training period;
- ``random``: seeded uniform scores (the exploration quota as a policy);
- the legacy rules as recorded (``legacy_selection``): what the rules actually picked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RULE_PREFIX = "rule:"
PROFILE_KEYS = ("hs_chapter", "origin_country")


def fit_logistic(X: np.ndarray, y: np.ndarray, seed: int):
    """Median-imputed (with missing flags), standardised, L2 logistic regression."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=1000, random_state=seed),
    )
    return model.fit(X, y)


@dataclass(frozen=True)
class RiskProfile:
    """Smoothed hit rate per (HS chapter, origin) cell: (hits + m * prior) / (inspections + m)."""

    table: pd.Series  # indexed by PROFILE_KEYS
    prior: float

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        keys = pd.MultiIndex.from_frame(frame[list(PROFILE_KEYS)].astype("str"))
        return self.table.reindex(keys).fillna(self.prior).to_numpy(dtype=np.float64)


def fit_risk_profile(
    labelled: pd.DataFrame, illicit: np.ndarray, strength: float = 20.0
) -> RiskProfile:
    frame = labelled[list(PROFILE_KEYS)].astype("str").assign(y=np.asarray(illicit, float))
    prior = float(frame["y"].mean())
    cells = frame.groupby(list(PROFILE_KEYS))["y"].agg(["sum", "count"])
    table = (cells["sum"] + strength * prior) / (cells["count"] + strength)
    return RiskProfile(table=table, prior=prior)


def random_scores(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def legacy_selection(selection_reason: pd.Series) -> np.ndarray:
    """Parcels the legacy rules picked (selection_reason 'rule:...')."""
    return selection_reason.astype("str").str.startswith(RULE_PREFIX).fillna(False).to_numpy(bool)
