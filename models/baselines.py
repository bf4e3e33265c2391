"""Baselines scored on the same split as the model: what the model has to beat.

- ``logistic``: standardised logistic regression on the same feature matrix (NaN imputed);
- ``risk_profile``: ASYCUDA-style selectivity profile, the smoothed historical hit rate of the
  (HS chapter, origin country) cell learned on the training period;
- ``random``: random selection (the exploration quota as a policy): its metrics are what it
  gives in expectation (``models.metrics.random_selection_metrics``), its seeded uniform scores
  only rank the parcels of the predictions table;
- the legacy rules as recorded (``legacy_selection``): what the rules actually picked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

RULE_PREFIX = "rule:"
RANDOM_BASELINE = "random"  # the scorer whose metrics are random selection's expectation
PROFILE_KEYS = ("hs_chapter", "origin_country")


def fit_logistic(X: np.ndarray, y: np.ndarray, seed: int, categorical: Sequence[int] = ()):
    """L2 logistic regression on the same matrix, given a fair encoding.

    Numbers: signed log1p (values, counts and ratios are heavy-tailed), median-imputed with
    missing flags, standardised. Category codes: one-hot (a code is not a magnitude), rare
    codes pooled.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    categorical = list(categorical)
    numeric = [j for j in range(X.shape[1]) if j not in categorical]
    encode = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    FunctionTransformer(_signed_log1p, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                numeric,
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value=-1.0),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                ),
                categorical,
            ),
        ]
    )
    model = make_pipeline(encode, LogisticRegression(C=0.5, max_iter=2000, random_state=seed))
    return model.fit(X, y)


def _signed_log1p(X: np.ndarray) -> np.ndarray:
    return np.sign(X) * np.log1p(np.abs(X))


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
