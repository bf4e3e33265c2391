"""The facts of one generated history a risk analyst checks first, and the oracle's ceiling.

The oracle ranks parcels by the true ``p_illicit``: its ROC-AUC and precision@5% bound what any
model trained on these declarations can reach. A newcomer adds a fact to ``summarize``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import roc_auc_score

from features.intake.contract import RANDOM_SELECTION

if TYPE_CHECKING:
    import pandas as pd


def oracle_roc_auc(p_illicit: np.ndarray, illicit: np.ndarray) -> float:
    """ROC-AUC of ranking by the true probability (ties count half); NaN with a single class."""
    y = np.asarray(illicit, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, p_illicit))


def precision_at(p_illicit: np.ndarray, illicit: np.ndarray, share: float) -> float:
    """Share of illicit parcels among the top ``share`` ranked by ``p_illicit`` (stable on ties)."""
    # scikit-learn has no precision at a top share; precision_score over a top mask gives the
    # same number three times slower (its input checks), so this stays a mean of the top rows.
    k = max(1, round(share * len(p_illicit)))
    top = np.argsort(-np.asarray(p_illicit), kind="stable")[:k]
    return float(np.asarray(illicit, dtype=bool)[top].mean())


def summarize(declarations: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """The facts of one generated history that a risk analyst checks first."""
    inspected = declarations["inspected"].to_numpy(dtype=bool)
    reason = declarations["selection_reason"]
    found = declarations["illicit"].fillna(False).to_numpy(dtype=bool)
    done = declarations[inspected]
    by_reason = done["illicit"].astype(bool).groupby(done["selection_reason"]).agg(["size", "mean"])
    hit_rates = {
        str(name): {"inspected": int(row["size"]), "hit_rate": round(float(row["mean"]), 4)}
        for name, row in by_reason.iterrows()
    }
    y = truth["illicit"].to_numpy(dtype=bool)
    p = truth["p_illicit"].to_numpy()
    mix = truth["offence_type"].value_counts(normalize=True)
    return {
        "parcels": len(declarations),
        "days": int(
            (declarations["declared_at"].max() - declarations["declared_at"].min()).days + 1
        ),
        "prevalence": round(float(y.mean()), 4),
        "inspection_rate": round(float(inspected.mean()), 4),
        "random_share": round(float((reason == RANDOM_SELECTION).mean()), 4),
        "hit_rate_inspected": round(float(found[inspected].mean()), 4) if inspected.any() else None,
        "hit_rate_by_selection_reason": dict(sorted(hit_rates.items())),
        "offence_mix": {k: round(float(v), 4) for k, v in mix.items()},
        "oracle_roc_auc": round(oracle_roc_auc(p, y), 4),
        "oracle_precision_at_5pct": round(precision_at(p, y, 0.05), 4),
        "revenue_at_stake_total_eur": round(float(truth["revenue_at_stake"].sum()), 2),
        "revenue_recovered_total_eur": round(
            float(declarations["revenue_recovered"].fillna(0).sum()), 2
        ),
    }
