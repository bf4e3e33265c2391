"""The random baseline is what random selection gives in expectation, not one draw of it."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from models import baselines
from models.evaluation import evaluate_holdout
from models.metrics import random_selection_metrics, ranking_metrics


def _holdout(n: int, illicit: int, revenue: bool = False) -> pd.DataFrame:
    y = np.zeros(n, dtype=bool)
    y[np.random.default_rng(0).choice(n, illicit, replace=False)] = True
    return pd.DataFrame(
        {
            "declaration_id": [f"D{i}" for i in range(n)],
            "declared_at": pd.Timestamp("2026-10-01", tz="UTC"),
            "inspected": True,
            "illicit": pd.array(y, dtype="boolean"),
            "revenue_recovered": np.where(y, 10.0, 0.0) if revenue else np.nan,
            "selection_reason": "random",
        }
    )


@pytest.mark.parametrize("seed", range(5))
def test_the_random_row_is_the_prevalence_whatever_the_seed(seed):
    """Probe 42: 414 random parcels with 21 illicit read precision@5% 0.000 (one draw)."""
    frame = _holdout(414, 21, revenue=True)
    draw = baselines.random_scores(len(frame), seed)
    metrics, _ = evaluate_holdout(frame, {"random": {"risk": draw, "value": draw, "prob": None}})
    assert metrics["test_random.random.precision_at_5"] == pytest.approx(21 / 414)
    assert metrics["test_random.random.recall_at_5"] == pytest.approx(21 / 414)  # k/n
    assert metrics["test_random.random.revenue_at_5"] == pytest.approx(21 / 414)
    assert metrics["test_random.random.roc_auc"] == 0.5


def test_the_expectation_is_the_mean_over_every_order():
    y = np.array([1, 0, 1, 0, 0, 0], dtype=float)
    revenue = np.array([5.0, 0, 1.0, 0, 0, 0])
    orders = [np.array(p, dtype=float) for p in itertools.permutations(range(len(y)))]
    expected = random_selection_metrics(y, revenue, levels=(50,))
    every = [ranking_metrics(-o, y, revenue, levels=(50,)) for o in orders]
    for key in ("precision_at_50", "recall_at_50", "revenue_at_50", "roc_auc", "pr_auc"):
        assert expected[key] == pytest.approx(np.mean([m[key] for m in every]))


def test_one_class_or_no_revenue_is_left_out_as_any_scorers():
    metrics, reasons = evaluate_holdout(
        _holdout(50, 0), {"random": {"risk": np.zeros(50), "value": np.zeros(50), "prob": None}}
    )
    assert "test_random.random.roc_auc" not in metrics
    assert "test_random.random.recall_at_5" not in metrics
    assert metrics["test_random.random.precision_at_5"] == 0.0
    assert reasons["test_random.*.revenue_at_*"] == "no revenue data"
