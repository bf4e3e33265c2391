"""An offence type that never recovers revenue (seized counterfeits: no duty) is carried as 0 in
the revenue mixture, and the deployed revenue booster is checked before it is served: within a
bound the labels support and, when distilled, faithful to the mixture; else the first pass's (or
a pooled, or no) revenue model is served, with a warning and the reason in the metadata."""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pytest

import models.train as train
from features.params import TrainParams
from models.bundle import RiskModel
from models.registry import _revenue_guard_tag
from models.train import (
    REVENUE_BOUND_FACTOR,
    Distilled,
    check_revenue_booster,
    kind_recovery_shares,
    train_models,
)
from tests.test_models.conftest import TRAIN_SECTION

pytestmark = pytest.mark.xdist_group("models_train")
PARAMS = TrainParams.from_dict(TRAIN_SECTION)
FINE = 150.0


@pytest.fixture(scope="module")
def seized(frames):
    """The toy stream with three offence types: illicit postal parcels (channel 0) are prohibited
    goods with a fine, express ones (channel 1) counterfeits that recover 0.00 every time, the
    others undervaluation."""
    features, truth, manifest = frames
    found = features["offence_type"].notna().to_numpy()
    channel = features["channel"].to_numpy()
    prohibited, counterfeit = found & (channel == 0), found & (channel == 1)
    features = features.assign(
        offence_type=features["offence_type"]
        .where(~prohibited, "prohibited")
        .where(~counterfeit, "counterfeit"),
        revenue_recovered=(features["revenue_recovered"] + np.where(prohibited, FINE, 0.0)).where(
            ~counterfeit, 0.0
        ),
    )
    return features, truth, manifest


@pytest.fixture(scope="module")
def seized_model(seized):
    features, truth, manifest = seized
    return train_models(features, manifest, PARAMS, truth)


def label_bound(features) -> float:
    return REVENUE_BOUND_FACTOR * float(features["revenue_recovered"].max())


def test_a_kind_that_never_recovers_revenue_keeps_the_deployed_booster_in_range(
    seized, seized_model
):
    """Before: the refit's distilled booster predicted up to 5.8e9 EUR on this history (labels
    at most 293 EUR; log R2 -8 against the mixture), the first pass's stayed in range."""
    features = seized[0]
    model = seized_model.model
    X = model.manifest.matrix(features)
    for booster in (model.revenue_booster, model.revenue_booster_eval):
        assert np.max(booster.predict(X)) <= features["revenue_recovered"].max()
    info = model.metadata["revenue_by_offence"]
    for stage in ("first_pass", "deployed"):
        assert info["distilled"][stage]["fidelity_r2_log"] > 0.9
    guard = model.metadata["revenue_guard"]
    assert guard["fallback"] is None and seized_model.info["revenue_guard_fallback"] is False
    assert {s: c["passed"] for s, c in guard["checks"].items()} == {
        "first_pass": True,
        "deployed": True,
    }
    assert "never recovered revenue, carried as 0: counterfeit" in model.metadata["revenue_model"]


def test_the_zero_revenue_kind_is_worth_about_nothing(seized, seized_model):
    features = seized[0]
    model = seized_model.model
    predicted = model.revenue_if_illicit(model.manifest.matrix(features))
    kind = features["offence_type"]
    counterfeit = (kind == "counterfeit").to_numpy()
    other = (kind.notna() & (kind != "counterfeit")).to_numpy()
    assert predicted[counterfeit].mean() < 0.1 * predicted[other].mean()


def test_kind_recovery_shares_are_the_hurdle_of_each_kind():
    codes = np.array([0, 0, 1, 1, 1, 1, np.nan, 2])
    revenue = np.array([0.0, 0.0, 10.0, 0.0, 5.0, 7.0, 3.0, np.nan])
    rows = np.isfinite(revenue)
    # kind 2 recorded no revenue: it takes the share of all rows (4 of 7)
    np.testing.assert_allclose(kind_recovery_shares(codes, revenue, rows, 3), [0.0, 0.75, 4 / 7])


def large_booster(X: np.ndarray) -> lgb.Booster:
    """A gamma booster that predicts 1e7 EUR everywhere (the 'mean' of its targets)."""
    data = lgb.Dataset(X, np.full(len(X), 1e7), free_raw_data=False)
    return lgb.train({"objective": "gamma", "verbose": -1, "num_leaves": 2}, data, 1)


def test_check_revenue_booster_names_each_problem(seized_model):
    model = seized_model.model
    X = np.zeros((50, len(model.manifest.names)))
    ok = check_revenue_booster(model.revenue_booster, X, 1e6, 0.95)
    assert ok.passed and ok.problems == () and ok.to_dict()["passed"] is True
    bad = check_revenue_booster(large_booster(X), X, 500.0, 0.4)
    assert not bad.passed and len(bad.problems) == 2
    assert "predicts up to 1e+07 EUR (bound 500 EUR" in bad.problems[0]
    assert "log R2 0.400" in bad.problems[1]


def sabotage(monkeypatch, stages: set[int], how: str) -> None:
    """``distil_mixture``'s calls ``stages`` (0: first pass, 1: deployed) return a broken
    student: unfaithful (a low log R2) or far beyond any label."""
    real, calls = train.distil_mixture, []

    def broken(params, revenue_booster, offence_booster, risk, X, fit, *rest, **kw):
        student = real(params, revenue_booster, offence_booster, risk, X, fit, *rest, **kw)
        calls.append(None)
        if len(calls) - 1 not in stages:
            return student
        if how == "unfaithful":
            return Distilled(student.booster, student.rows, 0.3)
        return Distilled(large_booster(X[fit]), student.rows, student.fidelity_r2)

    monkeypatch.setattr(train, "distil_mixture", broken)


@pytest.mark.parametrize(
    ("how", "why"), [("unfaithful", "log R2 0.300"), ("beyond", "predicts up to 1e+07 EUR")]
)
def test_a_failing_deployed_booster_falls_back_to_the_first_pass(
    seized, monkeypatch, caplog, tmp_path, how, why
):
    features, truth, manifest = seized
    sabotage(monkeypatch, {1}, how)
    with caplog.at_level(logging.WARNING, logger="models.train"):
        result = train_models(features, manifest, PARAMS, truth)
    model = result.model
    assert model.revenue_booster is model.revenue_booster_eval
    guard = model.metadata["revenue_guard"]
    assert guard["checks"]["first_pass"]["passed"] and not guard["checks"]["deployed"]["passed"]
    assert (
        why in guard["fallback"]
        and "first pass's revenue booster is deployed" in (guard["fallback"])
    )
    assert result.info["revenue_guard_fallback"] is True
    assert any(why in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    X = model.manifest.matrix(features)
    assert model.score(X)["expected_revenue"].max() <= label_bound(features)
    # the bundle (what the MLflow run logs and promote loads) keeps the record
    loaded = RiskModel.load(model.save(tmp_path / "bundle"))
    assert loaded.metadata["revenue_guard"]["fallback"] == guard["fallback"]


def test_a_failing_mixture_falls_back_to_one_pooled_model(seized, monkeypatch, caplog):
    features, truth, manifest = seized
    sabotage(monkeypatch, {0}, "beyond")
    with caplog.at_level(logging.WARNING, logger="models.train"):
        model = train_models(features, manifest, PARAMS, truth).model
    assert model.metadata["revenue_by_offence"] is None
    assert model.metadata["revenue_model"].startswith("fitted (pooled: the distilled mixture")
    guard = model.metadata["revenue_guard"]
    assert [(s, c["passed"]) for s, c in guard["checks"].items()] == [
        ("first_pass", False),
        ("first_pass_pooled", True),
        ("deployed", True),
    ]
    assert "one pooled revenue model instead" in guard["fallback"]
    assert any("revenue guard" in r.getMessage() for r in caplog.records)
    for booster in (model.revenue_booster, model.revenue_booster_eval):
        assert booster.num_feature() == len(model.manifest.names)
        assert booster.predict(model.manifest.matrix(features)).max() <= label_bound(features)


def test_no_revenue_model_is_served_when_every_candidate_fails(seized, monkeypatch):
    features, truth, manifest = seized
    monkeypatch.setattr(train, "REVENUE_BOUND_FACTOR", 1e-6)
    params = PARAMS.replace(objective="revenue")
    result = train_models(features, manifest, params, truth)
    model = result.model
    assert model.revenue_booster is None and model.revenue_booster_eval is None
    assert model.metadata["revenue_model"].startswith("skipped: the revenue model predicts")
    assert model.metadata["objective"] == "risk"
    assert "no revenue model, lanes rank on risk" in model.metadata["revenue_guard"]["fallback"]


@pytest.mark.parametrize(
    ("guard", "tag"),
    [
        (None, "no revenue model"),
        ({"checks": {}, "fallback": None}, "no revenue model"),
        ({"checks": {"first_pass": {}}, "fallback": None}, "passed"),
        (
            {"checks": {"deployed": {}}, "fallback": "the refit ... instead"},
            "the refit ... instead",
        ),
    ],
)
def test_the_training_run_is_tagged_with_the_guard_outcome(guard, tag):
    assert _revenue_guard_tag(guard) == tag
