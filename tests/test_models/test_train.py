"""Training on a small synthetic frame gives a working, reproducible RiskModel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from models.bundle import RiskModel
from models.split import split_boundaries
from models.thresholds import lane_shares
from models.train import TrainParams, train_models
from tests.test_models.conftest import TRAIN_SECTION

pytestmark = pytest.mark.xdist_group("models_train")
PARAMS = TrainParams.from_dict(TRAIN_SECTION)


@pytest.fixture(scope="module")
def trained(frames):
    features, truth, manifest = frames
    return train_models(features, manifest, PARAMS, truth)


def test_split_is_by_date_and_ordered(frames):
    features, _, _ = frames
    b = split_boundaries(features["declared_at"], PARAMS.split)
    masks = b.masks(features["declared_at"])
    assert sum(m.sum() for m in masks.values()) == len(features)
    assert features.loc[masks["train"], "declared_at"].max() < b.validation_start
    assert features.loc[masks["test"], "declared_at"].min() >= b.test_start
    assert b.validation_start == b.validation_start.normalize()


def test_split_rejects_bad_fractions(frames):
    with pytest.raises(ParcelriskError, match="sum to 1"):
        split_boundaries(frames[0]["declared_at"], {"train": 0.5, "validation": 0.2, "test": 0.2})


def test_model_beats_random_and_reports_baselines(trained):
    m = trained.metrics
    assert m["test_all.model.roc_auc"] > 0.65
    assert m["test_all.model.precision_at_5"] > 2 * m["test_all.random.precision_at_5"]
    for scorer in ("logistic", "rules", "random", "oracle"):
        assert f"test_all.{scorer}.revenue_at_5" in m
    assert "test_random.model.precision_at_5" in m
    assert "test_all.ratio.revenue_at_5" in m and "test_all.legacy.hit_rate" in m
    assert trained.model.metadata["calibration_sample"] == "random"


def test_save_load_round_trip_scores_identically(trained, frames, tmp_path):
    X = trained.model.manifest.matrix(frames[0].head(500))
    loaded = RiskModel.load(trained.model.save(tmp_path / "bundle"))
    before, after = trained.model.score(X), loaded.score(X)
    for key in ("raw", "risk", "expected_revenue", "priority"):
        np.testing.assert_array_equal(before[key], after[key])
    assert loaded.thresholds == trained.model.thresholds


def test_contributions_sum_to_raw_score(trained, frames):
    X = trained.model.manifest.matrix(frames[0].head(200))
    contrib = trained.model.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1), trained.model.raw_score(X), atol=1e-9)


def test_risk_is_a_probability_and_revenue_positive(trained, frames):
    scores = trained.model.score(trained.model.manifest.matrix(frames[0]))
    assert scores["risk"].min() >= 0 and scores["risk"].max() <= 1
    assert (scores["expected_revenue"] >= 0).all()
    assert trained.model.revenue_booster is not None


def test_thresholds_fill_lanes_on_validation_traffic(trained, frames):
    features = frames[0]
    b = trained.boundaries
    valid = features[b.masks(features["declared_at"])["validation"]]
    shares = lane_shares(
        trained.model.score(trained.model.manifest.matrix(valid))["priority"],
        trained.model.thresholds,
    )
    assert shares["red"] == pytest.approx(0.01, abs=0.002)
    assert shares["yellow"] == pytest.approx(0.04, abs=0.003)


def test_training_is_deterministic(trained, frames):
    features, truth, manifest = frames
    again = train_models(features, manifest, PARAMS, truth)
    X = manifest.matrix(features.head(300))
    np.testing.assert_array_equal(again.model.raw_score(X), trained.model.raw_score(X))


def test_revenue_objective_ranks_on_expected_revenue(frames):
    features, _, manifest = frames
    params = TrainParams.from_dict({**_params_dict(), "objective": "revenue"})
    result = train_models(features, manifest, params)
    scores = result.model.score(manifest.matrix(features.head(100)))
    np.testing.assert_array_equal(scores["priority"], scores["expected_revenue"])
    assert result.model.thresholds.objective == "revenue"
    assert not any(k.startswith("test_all.") for k in result.metrics)


def test_too_few_labels_is_a_clear_error(frames):
    features, _, manifest = frames
    unlabelled = features.assign(
        inspected=False, illicit=pd.array([pd.NA] * len(features), dtype="boolean")
    )
    with pytest.raises(ParcelriskError, match="too few labels"):
        train_models(unlabelled, manifest, PARAMS)


def test_missing_label_column_is_a_clear_error(frames):
    features, _, manifest = frames
    with pytest.raises(ParcelriskError, match="selection_reason"):
        train_models(features.drop(columns="selection_reason"), manifest, PARAMS)


def test_ground_truth_must_cover_the_test_period(frames):
    features, truth, manifest = frames
    with pytest.raises(ParcelriskError, match="ground truth lacks"):
        train_models(features, manifest, PARAMS, truth.head(100))


def test_unknown_params_are_rejected():
    with pytest.raises(ParcelriskError, match="unknown key"):
        TrainParams.from_dict({"learning_rate": 0.1})


def _params_dict():
    return {
        "split": PARAMS.split,
        "lanes": {"red_rate": 0.01, "yellow_rate": 0.04},
        "lightgbm": PARAMS.lightgbm,
        "seed": 7,
        "calibration": {"min_random": 100, "min_random_illicit": 10},
    }
