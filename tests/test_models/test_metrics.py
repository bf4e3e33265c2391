"""Metric functions against hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from models import metrics

# ten parcels ranked by score (already in descending order); 3 illicit
SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
ILLICIT = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 0])
REVENUE = np.array([10.0, 0, 30, 0, 0, 0, 60, 0, 0, 0])


@pytest.mark.parametrize(
    ("share", "precision", "recall", "revenue"),
    [
        (0.1, 1.0, 1 / 3, 0.1),  # top 1 parcel
        (0.2, 0.5, 1 / 3, 0.1),  # top 2
        (0.3, 2 / 3, 2 / 3, 0.4),  # top 3
        (0.5, 0.4, 2 / 3, 0.4),
        (1.0, 0.3, 1.0, 1.0),
    ],
)
def test_at_share_metrics(share, precision, recall, revenue):
    assert metrics.precision_at(SCORE, ILLICIT, share) == pytest.approx(precision)
    assert metrics.recall_at(SCORE, ILLICIT, share) == pytest.approx(recall)
    assert metrics.revenue_at(SCORE, REVENUE, share) == pytest.approx(revenue)


@pytest.mark.parametrize(
    ("n", "share", "k"), [(10, 0.01, 1), (200, 0.05, 10), (0, 0.05, 0), (3, 0.9, 3)]
)
def test_top_k_takes_at_least_one_parcel(n, share, k):
    assert metrics.top_k(n, share) == k


def test_top_mask_breaks_ties_by_order():
    mask = metrics.top_mask(np.array([1.0, 1.0, 1.0, 0.0]), 0.5)
    assert mask.tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    ("score", "y", "auc"),
    [
        ([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0], 1.0),
        ([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], 0.5),
        # pairs (pos, neg): (0.8>0.3) (0.8>0.6) (0.4>0.3) (0.4<0.6) -> 3/4
        ([0.8, 0.4, 0.3, 0.6], [1, 1, 0, 0], 0.75),
    ],
)
def test_roc_auc(score, y, auc):
    assert metrics.roc_auc(np.array(score), np.array(y)) == pytest.approx(auc)


def test_pr_auc_hand_computed():
    # illicit at ranks 1, 3, 7: precisions 1, 2/3, 3/7, each weighted by recall step 1/3
    expected = (1 + 2 / 3 + 3 / 7) / 3
    assert metrics.pr_auc(SCORE, ILLICIT) == pytest.approx(expected)


def test_brier_and_ece_hand_computed():
    prob = np.array([0.05, 0.05, 0.95, 0.95])
    y = np.array([0, 1, 1, 1])
    assert metrics.brier(prob, y) == pytest.approx((0.05**2 + 0.95**2 + 0.05**2 + 0.05**2) / 4)
    # bin 0: mean 0.05 vs rate 0.5 -> 0.45 x 2/4; bin 9: 0.95 vs 1.0 -> 0.05 x 2/4
    assert metrics.expected_calibration_error(prob, y) == pytest.approx(0.45 * 0.5 + 0.05 * 0.5)


def test_degenerate_inputs_give_nan_not_errors():
    assert np.isnan(metrics.roc_auc(np.array([0.1, 0.2]), np.array([0, 0])))
    assert np.isnan(metrics.recall_at(np.array([0.1]), np.array([0]), 0.05))
    assert np.isnan(metrics.revenue_at(np.array([0.1]), np.array([0.0]), 0.05))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    ("metric", "score", "y"),
    [
        (metrics.roc_auc, [0.1, 0.2], [1, 1]),  # no clean parcel
        (metrics.pr_auc, [0.1, 0.2], [0, 0]),  # scikit-learn alone would say 0 and warn
        (metrics.brier, [], []),  # scikit-learn alone would raise
    ],
)
def test_undefined_standard_metrics_are_nan_without_warnings(metric, score, y):
    assert np.isnan(metric(np.array(score, float), np.array(y, float)))


def test_pr_auc_treats_tied_scores_as_one_threshold():
    # both illicit parcels tie with one clean one at the top: precision 2/3 at recall 1
    assert metrics.pr_auc(np.array([0.9, 0.9, 0.9, 0.1]), np.array([1, 0, 1, 0])) == (
        pytest.approx(2 / 3)
    )


def test_rates_by_group_counts_selection_and_hits():
    table = metrics.rates_by_group(SCORE, ILLICIT, np.array(list("AABBBBBBBB")), 0.3)
    a = table.set_index("group").loc["A"]
    b = table.set_index("group").loc["B"]
    assert a.selection_rate == pytest.approx(1.0) and a.hit_rate == pytest.approx(0.5)
    assert b.selection_rate == pytest.approx(1 / 8) and b.hit_rate == pytest.approx(1.0)


def test_ranking_metrics_flat_names():
    out = metrics.ranking_metrics(SCORE, ILLICIT, REVENUE, prob=SCORE)
    assert {"roc_auc", "pr_auc", "precision_at_5", "revenue_at_10", "brier", "ece"} <= set(out)


def test_selected_set_metrics():
    out = metrics.selected_set_metrics(
        np.array([1, 1, 0, 0, 0, 0, 1, 0, 0, 0], bool), ILLICIT, REVENUE
    )
    assert out["selection_rate"] == pytest.approx(0.3)
    assert out["hit_rate"] == pytest.approx(2 / 3)
    assert out["revenue_share"] == pytest.approx(0.7)
