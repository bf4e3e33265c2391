"""The ``lanes`` scorer: every @k metric ranked by the priority the red and yellow lanes fill on,
beside the ``model`` row's risk / expected revenue rankings (probe 36: train reported
revenue@1% 0.76 on the expected-revenue ranking while the red lane, by risk, held 2%)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from features.params import TrainParams
from models.cli import format_summary
from models.evaluation import (
    describe_rankings,
    evaluate_holdout,
    headline_metrics,
    score_lanes,
)
from models.labels import unbiased_mask
from models.metrics import precision_at, revenue_at
from models.thresholds import effective_priority
from models.train import aeo_rows, train_models
from tests.test_models.conftest import TRAIN_SECTION

pytestmark = pytest.mark.xdist_group("models_train")
LEVELS = (1, 5, 10)


def _holdout(n: int = 2_000, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A holdout whose risk and expected revenue rank apart: the riskiest parcels are cheap,
    the revenue sits on expensive ones of risk about 0.3. Returns it, risk and expected revenue."""
    rng = np.random.default_rng(seed)
    risk = rng.uniform(0.01, 0.6, n)
    amount = 5.0 + 5_000.0 * np.exp(-(((risk - 0.3) / 0.05) ** 2)) * rng.uniform(0.5, 1.5, n)
    illicit = rng.random(n) < risk
    picked = rng.random(n)
    random_pick, rule_pick = picked < 0.6, (picked >= 0.6) & (picked < 0.75)
    inspected = random_pick | rule_pick
    frame = pd.DataFrame(
        {
            "inspected": inspected,
            "illicit": pd.array(np.where(inspected, illicit, pd.NA), dtype="boolean"),
            "revenue_recovered": np.where(inspected, np.where(illicit, amount, 0.0), np.nan),
            "selection_reason": pd.Series(
                np.where(random_pick, "random", np.where(rule_pick, "rule:x", None)), dtype="str"
            ),
            "aeo_operator": (rng.random(n) < 0.3).astype(float),
            "truth_p_illicit": risk,
            "truth_illicit": illicit,
            "truth_revenue_at_stake": amount,
            "truth_revenue_if_illicit": amount,
        }
    )
    return frame, risk, risk * amount


def _model_scores(risk: np.ndarray, expected: np.ndarray, objective: str) -> dict:
    """What ``score_model`` gives a model with a revenue booster under ``objective``."""
    priority = expected if objective == "revenue" else risk
    return {
        "risk": risk,
        "value": expected,
        "prob": risk,
        "expected_revenue": expected,
        "priority": priority,
    }


@pytest.mark.parametrize("objective", ["risk", "revenue"])
def test_lanes_revenue_at_k_is_the_share_caught_by_the_top_k_by_the_objective(objective):
    frame, risk, expected = _holdout()
    frame = frame.assign(aeo_operator=0.0)  # no AEO: priority as it is
    model = _model_scores(risk, expected, objective)
    lanes = score_lanes(model, aeo_rows(frame), 0.5)
    metrics, _ = evaluate_holdout(frame, {"model": model, "lanes": lanes}, levels=LEVELS)

    ranked_by = risk if objective == "risk" else expected
    sample, _ = unbiased_mask(frame)
    caught = np.nan_to_num(frame["revenue_recovered"].to_numpy(float), nan=0.0)
    truth_rev = frame["truth_revenue_at_stake"].to_numpy(float) * frame["truth_illicit"]
    for k in LEVELS:
        share = k / 100
        assert metrics[f"test_random.lanes.revenue_at_{k}"] == pytest.approx(
            revenue_at(ranked_by[sample], caught[sample], share)
        )
        assert metrics[f"test_all.lanes.revenue_at_{k}"] == pytest.approx(
            revenue_at(ranked_by, truth_rev.to_numpy(float), share)
        )


def test_under_objective_risk_lanes_and_model_report_different_revenue():
    """The probe's case: the model row's revenue@1% ranks by expected revenue, the red lane by
    risk; on this holdout the two differ by far."""
    frame, risk, expected = _holdout()
    model = _model_scores(risk, expected, "risk")
    lanes = score_lanes(model, np.zeros(len(frame), dtype=bool), 0.5)
    metrics, _ = evaluate_holdout(frame, {"model": model, "lanes": lanes}, levels=LEVELS)
    for evaluation in ("test_random", "test_all"):
        assert (
            metrics[f"{evaluation}.model.revenue_at_1"]
            > 2 * metrics[f"{evaluation}.lanes.revenue_at_1"]
        )
        # precision ranks by risk in both rows under objective risk
        assert (
            metrics[f"{evaluation}.lanes.precision_at_5"]
            == metrics[f"{evaluation}.model.precision_at_5"]
        )


def test_under_objective_revenue_lanes_rank_precision_by_expected_revenue():
    frame, risk, expected = _holdout()
    model = _model_scores(risk, expected, "revenue")
    lanes = score_lanes(model, np.zeros(len(frame), dtype=bool), 0.5)
    metrics, _ = evaluate_holdout(frame, {"model": model, "lanes": lanes}, levels=LEVELS)
    sample, _ = unbiased_mask(frame)
    y = frame["illicit"].astype("boolean").fillna(False).to_numpy(float)
    assert metrics["test_random.lanes.precision_at_5"] == pytest.approx(
        precision_at(expected[sample], y[sample], 0.05)
    )
    assert metrics["test_random.lanes.precision_at_5"] != pytest.approx(
        metrics["test_random.model.precision_at_5"]
    )
    assert metrics["test_all.lanes.revenue_at_5"] == metrics["test_all.model.revenue_at_5"]


@pytest.mark.parametrize("objective", ["risk", "revenue"])
def test_the_model_row_is_unchanged_by_the_lanes_row(objective):
    frame, risk, expected = _holdout()
    model = _model_scores(risk, expected, objective)
    alone, alone_reasons = evaluate_holdout(frame, {"model": model})
    lanes = score_lanes(model, aeo_rows(frame), 0.5)
    both, both_reasons = evaluate_holdout(frame, {"model": model, "lanes": lanes})
    assert {k: v for k, v in both.items() if ".lanes." not in k} == alone
    assert both_reasons == alone_reasons


def test_lanes_rank_aeo_declarations_discounted_as_served():
    frame, risk, expected = _holdout()
    aeo = aeo_rows(frame)
    assert aeo.any() and not aeo.all()
    lanes = score_lanes(_model_scores(risk, expected, "risk"), aeo, 0.5)
    np.testing.assert_array_equal(lanes["risk"], np.where(aeo, risk * 0.5, risk))
    np.testing.assert_array_equal(lanes["value"], lanes["risk"])
    assert lanes["prob"] is None


def test_lanes_metrics_are_finite_without_calibration_figures():
    """A priority is not a probability: no Brier or ECE for lanes, and no NaN anywhere; a
    holdout without revenue leaves lanes' revenue out with the reason every scorer shares."""
    frame, risk, expected = _holdout()
    model = _model_scores(risk, expected, "revenue")
    scores = {"model": model, "lanes": score_lanes(model, aeo_rows(frame), 0.5)}
    metrics, _ = evaluate_holdout(frame, scores)
    assert all(math.isfinite(v) for v in metrics.values())
    assert not any(k.endswith((".lanes.ece", ".lanes.brier")) for k in metrics)
    assert "test_all.lanes.revenue_at_5" in headline_metrics(metrics)

    no_revenue = frame.assign(revenue_recovered=np.nan)
    metrics, reasons = evaluate_holdout(no_revenue, scores)
    assert all(math.isfinite(v) for v in metrics.values())
    assert not any(k.startswith("test_random.lanes.revenue_at_") for k in metrics)
    assert reasons["test_random.*.revenue_at_*"] == "no revenue data"


def test_rankings_say_risk_for_revenue_without_a_revenue_model_and_no_aeo_when_off():
    thresholds = SimpleNamespace(objective="risk", aeo_discount=1.0)
    said = describe_rankings(SimpleNamespace(revenue_booster=None, thresholds=thresholds))
    assert (
        said == "model: precision by risk, revenue by risk; lanes: both by priority = risk "
        "(objective: risk)"
    )


# --- through train_models: the lanes row is the deployed lanes' ranking ------------------------


@pytest.fixture(scope="module", params=["risk", "revenue"])
def trained(frames, request):
    """A first pass (no refit) under each objective, with AEO declarations in the traffic."""
    features, truth, manifest = frames
    aeo = np.random.default_rng(11).random(len(features)) < 0.3
    features = features.assign(aeo_operator=aeo.astype(float))
    params = TrainParams.from_dict({**TRAIN_SECTION, "objective": request.param, "refit": False})
    return train_models(features, manifest, params, truth), request.param


def test_train_reports_lanes_ranked_by_the_served_priority(trained):
    result, objective = trained
    assert result.model.thresholds.objective == objective
    predictions = result.predictions
    served = effective_priority(
        predictions["model_priority"].to_numpy(float),
        aeo_rows(predictions),
        result.model.thresholds.aeo_discount,
    )
    sample = predictions["unbiased_sample"].to_numpy(bool)
    caught = np.nan_to_num(predictions["revenue_recovered"].to_numpy(float), nan=0.0)
    truth_rev = predictions["truth_revenue_at_stake"].to_numpy(float) * predictions[
        "truth_illicit"
    ].to_numpy(float)
    for k in (1, 5, 10):
        assert result.metrics[f"test_random.lanes.revenue_at_{k}"] == pytest.approx(
            revenue_at(served[sample], caught[sample], k / 100)
        )
        assert result.metrics[f"test_all.lanes.revenue_at_{k}"] == pytest.approx(
            revenue_at(served, truth_rev, k / 100)
        )
    # the model row still ranks revenue by expected revenue, as before
    value = predictions["model_value"].to_numpy(float)
    assert result.metrics["test_all.model.revenue_at_5"] == pytest.approx(
        revenue_at(value, truth_rev, 0.05)
    )


def test_train_summary_shows_the_lanes_row_and_what_each_row_ranks_by(trained):
    result, objective = trained
    text = format_summary(result.metrics, result.info)
    (said,) = [line for line in text.splitlines() if line.startswith("ranked by:")]
    assert "model: precision by risk, revenue by expected revenue" in said
    priority = "risk" if objective == "risk" else "expected revenue"
    assert f"lanes: both by priority = {priority}" in said
    assert f"(objective: {objective}; AEO declarations' x 0.5, as served)" in said
    rows = [line.split()[0] for line in text.splitlines() if line.startswith("  ")]
    assert rows.count("lanes") == 2  # test_all and test_random
