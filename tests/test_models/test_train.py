"""Training on a small synthetic frame gives a working, reproducible RiskModel."""

from __future__ import annotations

import io
import logging
import math

import numpy as np
import pandas as pd
import pytest

from features.cli import step_progress
from features.errors import ParcelriskError
from features.params import TrainParams
from models.bundle import REVENUE_EVAL_MODEL_FILE, RISK_EVAL_MODEL_FILE, RiskModel
from models.cli import format_summary
from models.evaluation import HEADLINE_METRICS, headline_metrics
from models.split import split_boundaries
from models.thresholds import lane_shares
from models.train import train_models, training_steps
from tests.test_models.conftest import TRAIN_SECTION

pytestmark = pytest.mark.xdist_group("models_train")
PARAMS = TrainParams.from_dict(TRAIN_SECTION)


@pytest.fixture(scope="module")
def trained(frames):
    features, truth, manifest = frames
    return train_models(features, manifest, PARAMS, truth)


@pytest.fixture(scope="module")
def not_refit(frames):
    features, truth, manifest = frames
    return train_models(features, manifest, PARAMS.replace(refit=False), truth)


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


def test_deployed_thresholds_fill_lanes_on_the_most_recent_traffic(trained, frames):
    features = frames[0]
    test = features[trained.boundaries.masks(features["declared_at"])["test"]]
    shares = lane_shares(
        trained.model.score(trained.model.manifest.matrix(test))["priority"],
        trained.model.thresholds,
    )
    assert shares["red"] == pytest.approx(0.01, abs=0.002)
    assert shares["yellow"] == pytest.approx(0.04, abs=0.003)


def test_refit_cutoffs_score_each_labelled_parcel_with_the_pass_that_never_saw_it(trained, frames):
    """The refit learnt the test period's labels: its in-sample scores of the inspected parcels
    would push the red cut-off up and leave the lane under-filled on new traffic, so those rows
    are scored by the first pass (same calibration), the unlabelled ones by the deployed model."""
    from models.labels import labelled_mask
    from models.thresholds import effective_priority, fit_lane_thresholds
    from models.train import aeo_rows

    features = frames[0]
    test = trained.boundaries.masks(features["declared_at"])["test"]
    period = features[test]
    X = trained.model.manifest.matrix(period)
    seen = labelled_mask(period)
    assert seen.any() and not seen.all()
    priority = trained.model.score(X)["priority"]
    priority[seen] = trained.model.evaluation_model().score(X[seen])["priority"]
    th = trained.model.thresholds
    expected = fit_lane_thresholds(
        effective_priority(priority, aeo_rows(period), th.aeo_discount),
        th.red_rate,
        th.yellow_rate,
        th.objective,
    )
    assert th.red_cutoff == pytest.approx(expected.red_cutoff, rel=1e-12)
    assert th.yellow_cutoff == pytest.approx(expected.yellow_cutoff, rel=1e-12)


def test_without_refit_thresholds_fill_lanes_on_validation_traffic(not_refit, frames):
    features = frames[0]
    valid = features[not_refit.boundaries.masks(features["declared_at"])["validation"]]
    shares = lane_shares(
        not_refit.model.score(not_refit.model.manifest.matrix(valid))["priority"],
        not_refit.model.thresholds,
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


# --- refit on all labelled history ------------------------------------------------------------


def test_deployed_model_is_refit_and_keeps_the_first_pass(trained, frames):
    model = trained.model
    first = model.evaluation_model()
    assert first is not model and first.evaluation_model() is first
    X = model.manifest.matrix(frames[0].head(300))
    assert not np.array_equal(model.raw_score(X), first.raw_score(X))
    # same number of rounds: the first pass's calibration applies to the refit's log-odds
    rounds = model.metadata["risk_best_iteration"]
    assert (
        model.risk_booster.current_iteration() == first.risk_booster.current_iteration() == rounds
    )
    assert model.revenue_booster.current_iteration() == model.metadata["revenue_best_iteration"]
    assert first.revenue_booster is model.revenue_booster_eval is not None
    assert first.calibration == model.calibration
    assert model.metadata["labelled_refit"] == trained.info["labelled"]
    assert "first pass" in trained.info["evaluated_model"]


def test_held_out_metrics_are_the_first_pass_whatever_the_refit(trained, not_refit):
    assert trained.metrics == not_refit.metrics
    assert not_refit.model.evaluation_model() is not_refit.model
    assert not_refit.model.metadata["refit"] is False
    assert "deployed model" in not_refit.info["evaluated_model"]


def test_mean_risk_of_deployed_and_first_pass_is_recorded(trained, not_refit):
    deployed = trained.info["test_mean_risk_deployed"]
    first = trained.info["test_mean_risk_evaluated"]
    assert 0 < deployed < 1 and 0 < first < 1
    # stationary toy data: the refit keeps the first pass's risk level (no drift to show)
    assert deployed == pytest.approx(first, rel=0.1)
    assert not_refit.info["test_mean_risk_deployed"] == not_refit.info["test_mean_risk_evaluated"]


def test_bundle_round_trip_keeps_the_first_pass_boosters(trained, frames, tmp_path):
    directory = trained.model.save(tmp_path / "bundle")
    assert (directory / RISK_EVAL_MODEL_FILE).exists()
    assert (directory / REVENUE_EVAL_MODEL_FILE).exists()
    loaded = RiskModel.load(directory)
    X = trained.model.manifest.matrix(frames[0].head(300))
    for a, b in (
        (loaded, trained.model),
        (loaded.evaluation_model(), trained.model.evaluation_model()),
    ):
        np.testing.assert_array_equal(a.score(X)["priority"], b.score(X)["priority"])


def test_bundle_without_refit_has_no_first_pass_files(not_refit, tmp_path):
    directory = not_refit.model.save(tmp_path / "bundle")
    (directory / RISK_EVAL_MODEL_FILE).write_text("stale")  # left by an earlier save
    not_refit.model.save(directory)
    assert not (directory / RISK_EVAL_MODEL_FILE).exists()
    loaded = RiskModel.load(directory)
    assert loaded.risk_booster_eval is None and loaded.evaluation_model() is loaded


def test_refit_must_be_a_boolean():
    with pytest.raises(ParcelriskError, match=r"train\.refit"):
        TrainParams.from_dict({**_params_dict(), "refit": "yes"})


# --- round cap, LightGBM params -------------------------------------------------------------


def test_reaching_the_round_cap_is_a_warning(frames, caplog):
    features, _, manifest = frames
    lightgbm = {
        **PARAMS.lightgbm.model_dump(exclude_none=True),
        "n_estimators": 3,
        "learning_rate": 0.01,
    }
    params = TrainParams.from_dict({**_params_dict(), "lightgbm": lightgbm})
    with caplog.at_level(logging.WARNING, logger="models.train"):
        result = train_models(features, manifest, params)
    assert result.info["risk_hit_round_cap"] is True
    assert result.model.risk_booster.current_iteration() == 3
    assert any(
        "train.lightgbm.n_estimators=3" in r.getMessage() and "raise" in r.getMessage()
        for r in caplog.records
    )


def test_early_stopping_before_the_cap_is_quiet(trained):
    assert trained.info["risk_hit_round_cap"] is False
    assert trained.info["risk_best_iteration"] < PARAMS.n_estimators


def test_categorical_lightgbm_params_pass_through():
    categorical = {
        "cat_smooth": 5.0,
        "cat_l2": 2.0,
        "max_cat_threshold": 16,
        "min_data_per_group": 50,
        "max_cat_to_onehot": 8,
    }
    params = TrainParams.from_dict({**_params_dict(), "lightgbm": categorical})
    assert categorical.items() <= params.lgb_params("binary").items()


def test_unknown_lightgbm_params_are_rejected():
    with pytest.raises(ParcelriskError, match=r"train\.lightgbm: cat_smoothing"):
        TrainParams.from_dict({**_params_dict(), "lightgbm": {"cat_smoothing": 5.0}})


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_are_finite_and_headline_has_the_10_percent_level(trained):
    assert all(math.isfinite(v) for v in trained.metrics.values())
    assert {"precision_at_10", "revenue_at_10"} <= set(HEADLINE_METRICS)
    assert "test_all.model.precision_at_10" in headline_metrics(trained.metrics)


def test_summary_prints_na_and_the_evaluated_model(trained):
    metrics = {k: v for k, v in trained.metrics.items() if ".revenue_at_5" not in k}
    info = {**trained.info, "not_applicable": {"test_all.*.revenue_at_*": "no revenue data"}}
    text = format_summary(metrics, info)
    assert "n/a" in text and "nan" not in text
    assert "first pass" in text.splitlines()[0]
    assert "test_all.*.revenue_at_*: no revenue data" in text


def _params_dict():
    return {
        "split": PARAMS.split,
        "lanes": {"red_rate": 0.01, "yellow_rate": 0.04},
        "lightgbm": PARAMS.lightgbm,
        "seed": 7,
        "calibration": {"min_random": 100, "min_random_illicit": 10},
    }


@pytest.mark.parametrize("refit", [True, False])
def test_train_models_announces_each_step_in_order(frames, refit):
    features, _, manifest = frames
    params = PARAMS.replace(refit=refit)
    announced: list[str] = []
    train_models(features, manifest, params, progress=announced.append)
    assert announced == list(training_steps(params))
    assert ("refit" in announced) is refit


def test_step_progress_draws_the_step_names_only_when_enabled():
    steps = ("read features", "risk model", "log to MLflow")
    for enabled in (True, False):
        out = io.StringIO()
        with step_progress(steps, enabled=enabled, file=out) as step:
            for name in steps:
                step(name)
        assert ("risk model" in out.getvalue()) is enabled
        assert ("2/3 steps" in out.getvalue()) is enabled


def test_train_command_has_a_quiet_switch():
    from typer.testing import CliRunner

    from serving.main import app

    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--quiet" in result.output


def test_the_history_exploration_rate_and_offence_labels_are_recorded(trained, frames):
    from models.labels import random_mask

    features, _, _ = frames
    metadata = trained.model.metadata
    assert metadata["history_exploration_rate"] == pytest.approx(random_mask(features).mean())
    labelled = features["inspected"] & features["illicit"].fillna(False)
    expected = features.loc[labelled.astype(bool), "offence_type"].value_counts()
    assert metadata["offence_labels"] == {str(k): int(n) for k, n in expected.items()}
    assert trained.info["thin_offences"] == {
        k: n for k, n in metadata["offence_labels"].items() if n < PARAMS.min_offence_labels
    }


def test_an_offence_with_few_labels_is_warned_about(frames, caplog):
    features, _, manifest = frames
    counts = features.loc[features["illicit"].fillna(False).astype(bool), "offence_type"]
    most = int(counts.value_counts().max())
    caplog.set_level(logging.WARNING, logger="models.train")
    result = train_models(
        features, manifest, PARAMS.replace(min_offence_labels=most + 1, refit=False)
    )
    assert set(result.info["thin_offences"]) == set(counts.dropna().unique())
    assert "few labels for" in caplog.text and "serve.exploration_rate" in caplog.text


def test_a_history_without_offence_types_trains_without_the_check(frames):
    features, _, manifest = frames
    result = train_models(
        features.drop(columns=["offence_type"]), manifest, PARAMS.replace(refit=False)
    )
    assert result.model.metadata["offence_labels"] == {} and result.info["thin_offences"] == {}


def test_baselines_score_the_holdout_a_chunk_at_a_time_as_whole(monkeypatch):
    """The logistic baseline scores in chunks (its pipeline copies what it scores several times
    over: a 10M-parcel history's test period ran out of memory): the same scores as whole."""
    import models.evaluation as evaluation

    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 5))
    X[rng.random(X.shape) < 0.1] = np.nan  # imputed, with missing flags
    X[:, 4] = rng.integers(0, 4, 600)  # a category code
    y = (rng.random(600) < 0.3).astype(float)
    frame = pd.DataFrame({"hs_chapter": ["61"] * 600, "origin_country": ["CN"] * 600})
    kwargs = {"categorical": [4], "seed": 1, "profile_strength": 10.0}
    whole = evaluation.score_baselines(
        frame[:400], X[:400], y[:400], frame[400:], X[400:], **kwargs
    )
    monkeypatch.setattr(evaluation, "SCORE_CHUNK_ROWS", 7)
    chunked = evaluation.score_baselines(
        frame[:400], X[:400], y[:400], frame[400:], X[400:], **kwargs
    )
    assert len(chunked["logistic"]["risk"]) == 200
    np.testing.assert_allclose(chunked["logistic"]["risk"], whole["logistic"]["risk"], rtol=1e-12)
    assert set(chunked) == set(whole) == {"logistic", "rules", "random"}
