"""train --engine dask: the boosters fitted by lightgbm.dask on a LocalCluster of two worker
processes, the rest of training as the pandas engine does it.

One cluster serves the module (started once: it costs a few seconds); the CLI reaches it by its
address, as ``--scheduler`` reaches a team's cluster.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from features.errors import ParcelriskError
from features.params import TrainParams
from models.dask_train import (
    DaskFitter,
    dask_fitter,
    early_stopping_iteration,
    validation_curve,
)
from models.evaluation import HEADLINE_METRICS
from models.fitting import LocalFitter
from models.labels import illicit_labels, labelled_mask
from models.registry import registry_client
from models.train import booster_data, train_models
from tests.test_models.conftest import TRAIN_SECTION, write_features_dir

pytestmark = pytest.mark.xdist_group("dask")  # one cluster at a time on a shared machine
PARAMS = TrainParams.from_dict(TRAIN_SECTION)
ROOT = Path(__file__).resolve().parents[2]
# Headline metrics of the first pass on the ground truth of all 2,214 test parcels: dask engine
# minus pandas engine, at most. lightgbm.dask is a data-parallel fit: each worker bins some
# features on its own rows and the workers' histograms are summed, so the trees differ from
# lgb.train's, and the order lightgbm.dask ranks the workers in (its own, per fit) changes them
# again: over 20 runs, the risk model kept 16 or 20 rounds (pandas: 20), the revenue model 4
# (pandas: 3), and the differences were ROC-AUC +0.002 to +0.004, PR-AUC +0.006 to +0.023,
# precision@5% -0.009 (one parcel in 111), revenue@5% -0.007 to +0.023 (a 4-round gamma model on
# a few hundred revenues), calibration error -0.021 to -0.015. The bounds are about twice those.
# Since the first pass learns only results recorded before the test period (fewer labels in
# its last days), ROC-AUC differences up to 0.011 were seen: its bound is 0.02.
TOLERANCE = {
    "roc_auc": 0.02,
    "pr_auc": 0.05,
    "precision_at_5": 0.03,
    "revenue_at_5": 0.05,
    "ece": 0.04,
}


@pytest.fixture(scope="module")
def fitter() -> DaskFitter:
    with dask_fitter(None) as fitted_on_a_local_cluster:
        yield fitted_on_a_local_cluster


@pytest.fixture(scope="module")
def scheduler(fitter: DaskFitter) -> str:
    return fitter.client.scheduler.address


@pytest.fixture(scope="module")
def both(frames, scheduler):
    features, truth, manifest = frames
    pandas = train_models(features, manifest, PARAMS, truth)
    dask = train_models(features, manifest, PARAMS, truth, engine="dask", scheduler=scheduler)
    return pandas, dask


# --- train_models on the cluster ---------------------------------------------------------------


def test_the_dask_engine_gives_the_same_metrics_as_the_pandas_engine(both):
    pandas, dask = both
    assert set(dask.metrics) == set(pandas.metrics)
    assert dask.info["engine"] == "dask" and pandas.info["engine"] == "pandas"
    for metric, tolerance in TOLERANCE.items():
        key = f"test_all.model.{metric}"
        assert abs(dask.metrics[key] - pandas.metrics[key]) <= tolerance, (
            f"{key}: dask {dask.metrics[key]:.4f}, pandas {pandas.metrics[key]:.4f}"
        )
    assert set(TOLERANCE) <= set(HEADLINE_METRICS)
    # the dask model still ranks like a model, not like the rules or chance
    assert dask.metrics["test_all.model.roc_auc"] > dask.metrics["test_all.rules.roc_auc"] + 0.1


def test_the_dask_engine_gives_plain_boosters_of_the_same_features(both):
    pandas, dask = both
    for name in ("risk_booster", "revenue_booster", "risk_booster_eval", "revenue_booster_eval"):
        ours, theirs = getattr(dask.model, name), getattr(pandas.model, name)
        assert isinstance(ours, lgb.Booster), name
        assert ours.feature_name() == theirs.feature_name(), name
        assert _categorical(ours) == _categorical(theirs) != "", name
        assert "[machines: ]" in ours.model_to_string(), name  # no worker's host:port kept
    rounds = dask.info["risk_best_iteration"]
    assert dask.model.risk_booster_eval.current_iteration() == rounds < PARAMS.n_estimators
    assert dask.model.risk_booster.current_iteration() == rounds  # the refit: the chosen rounds
    assert not dask.info["risk_hit_round_cap"]


def _categorical(booster: lgb.Booster) -> str:
    text = booster.model_to_string()
    return next(line for line in text.splitlines() if line.startswith("[categorical_feature:"))


# --- early stopping, emulated --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("curve", "rounds", "expected"),
    [
        ([5, 4, 3, 3, 3, 3], 2, (3, 5)),  # a tie is no improvement: the first best stays
        ([3, 2, 1], 5, (3, 3)),  # never stops: all iterations run
        ([1, 2, 3, 4], 2, (1, 3)),  # the first iteration is the best
        ([3, 2, 2.5, 1, 2, 2, 2], 2, (4, 6)),  # a bump inside the patience does not stop it
        ([2, 1, 3, 3], 2, (2, 4)),  # stops on the last iteration: the cap is reached
    ],
)
def test_the_chooser_follows_early_stoppings_rule(curve, rounds, expected):
    assert early_stopping_iteration(curve, rounds) == expected
    assert _lightgbm_callback(curve, rounds) == expected


def test_the_chooser_agrees_with_lightgbms_callback_on_noisy_curves():
    rng = np.random.default_rng(3)
    for _ in range(200):
        curve = np.round(1 / np.arange(1, 61) + rng.normal(0, 0.02, 60), 2)  # ties happen
        rounds = int(rng.integers(1, 15))
        assert early_stopping_iteration(curve, rounds) == _lightgbm_callback(curve, rounds)


def test_an_empty_curve_has_no_best_iteration():
    with pytest.raises(ValueError, match="empty"):
        early_stopping_iteration([], 5)


def _lightgbm_callback(curve, rounds: int) -> tuple[int, int]:
    """What ``lgb.early_stopping`` itself decides, fed ``curve`` as ``lgb.train`` feeds it."""
    callback = lgb.early_stopping(rounds, verbose=False)
    for i, score in enumerate(curve):
        env = lgb.callback.CallbackEnv(
            model=None,
            params={},
            iteration=i,
            begin_iteration=0,
            end_iteration=len(curve),
            evaluation_result_list=[lgb.EvalResult("validation", "l2", float(score), False)],
        )
        try:
            callback(env)
        except lgb.callback.EarlyStopException as stop:
            return stop.best_iteration + 1, i + 1
    raise AssertionError("lgb.early_stopping always stops on the last iteration")


def _fits(frames) -> dict[str, tuple]:
    """Train and validation rows for each objective train_models fits."""
    features, _, manifest = frames
    X = manifest.matrix(features)
    rng = np.random.default_rng(11)
    labelled = labelled_mask(features)
    kind = np.digitize(np.log(features["value_ratio"]) + rng.normal(0, 0.5, len(X)), [-0.3, 0.3])
    revenue = features["value_ratio"].to_numpy() * rng.gamma(2.0, 5.0, len(X))
    targets = {"binary": illicit_labels(features), "multiclass": kind, "gamma": revenue}
    cut = len(X) * 3 // 4
    train, valid = np.arange(len(X)) < cut, np.arange(len(X)) >= cut
    out = {}
    for objective, y in targets.items():
        rows = labelled if objective == "binary" else np.ones(len(X), dtype=bool)
        extra = {"num_class": 3} if objective == "multiclass" else {}
        out[objective] = (
            {**PARAMS.lgb_params(objective), **extra},
            booster_data(X[rows & train], y[rows & train].astype(float), manifest),
            booster_data(X[rows & valid], y[rows & valid].astype(float), manifest),
        )
    return out


@pytest.mark.parametrize("objective", ["binary", "multiclass", "gamma"])
def test_the_validation_curve_is_lightgbms_own_metric(frames, objective):
    params, train, valid = _fits(frames)[objective]
    recorded: dict = {}
    booster = lgb.train(
        params,
        lgb.Dataset(train.X, train.y, feature_name=train.feature_names),
        num_boost_round=40,
        valid_sets=[lgb.Dataset(valid.X, valid.y)],
        valid_names=["validation"],
        callbacks=[lgb.record_evaluation(recorded)],
    )
    (lightgbms,) = recorded["validation"].values()
    ours = validation_curve(booster, valid.X, valid.y, params)
    np.testing.assert_allclose(ours, lightgbms, rtol=1e-9)
    # from one iteration to the next to the last bits (gamma's curve sits ~1e-10 off, the
    # same at every iteration: LightGBM takes a constant term's log in float32)
    np.testing.assert_allclose(ours - ours[0], np.subtract(lightgbms, lightgbms[0]), atol=1e-13)


def test_an_objective_the_chooser_has_no_metric_for_is_refused(frames):
    params, train, valid = _fits(frames)["gamma"]
    booster = lgb.train(params, lgb.Dataset(train.X, train.y), num_boost_round=2)
    with pytest.raises(ParcelriskError, match="cannot early-stop objective 'huber'"):
        validation_curve(booster, valid.X, valid.y, {**params, "objective": "huber"})


@pytest.mark.parametrize(
    ("objective", "n_estimators"),
    [("binary", 300), ("multiclass", 300), ("gamma", 300), ("binary", 8)],
)
def test_on_one_worker_the_dask_fit_is_lgb_train_early_stopped(
    frames, fitter, objective, n_estimators
):
    """All rows on one worker: LightGBM fits serially there, so the trees are lgb.train's and
    the emulated early stopping must keep the ones lgb.early_stopping kept (8 rounds: the cap)."""
    params, train, valid = _fits(frames)[objective]
    local = LocalFitter().fit_early_stopped(params, train, valid, n_estimators, 20)
    one_worker = DaskFitter(fitter.client, n_workers=1)
    dask = one_worker.fit_early_stopped(params, train, valid, n_estimators, 20)
    assert (dask.rounds, dask.hit_round_cap) == (local.rounds, local.hit_round_cap)
    assert _trees(dask.booster) == _trees(local.booster)
    assert local.hit_round_cap == (n_estimators == 8)


def test_a_weighted_fit_on_two_workers_keeps_its_weights(frames, fitter):
    # distil_mixture weighs each parcel: with every weight on one class the model learns it alone
    params, train, _ = _fits(frames)["binary"]
    weights = np.where(train.y == 1, 1.0, 1e-6)
    data = booster_data(train.X, train.y, frames[2], weight=weights)
    booster = fitter.fit_rounds(params, data, 20)
    assert booster.predict(train.X).mean() > 0.9


def _trees(booster: lgb.Booster) -> str:
    text = booster.model_to_string()
    return text[text.index("Tree=0") : text.index("end of trees")]


# --- the CLI ---------------------------------------------------------------------------------------


def test_the_cli_trains_on_the_cluster_registers_and_promotes(frames, scheduler, tmp_path):
    features, truth, manifest = frames
    features_dir = write_features_dir(tmp_path / "features", features, manifest)
    truth.to_parquet(tmp_path / "truth.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": TRAIN_SECTION}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--params", str(params), "--tracking-uri", uri]

    from serving.main import app

    trained = CliRunner().invoke(
        app,
        ["train", "--features", str(features_dir), "--ground-truth", str(tmp_path / "truth.parquet"),
         "--metrics-out", str(tmp_path / "train.json"), "--engine", "dask",
         "--scheduler", scheduler, "-q", *common],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "registered parcel-risk version 1" in trained.output
    promoted = CliRunner().invoke(app, ["promote", *common])
    assert promoted.exit_code == 0, promoted.output
    assert "version 1: first" in promoted.output

    client = registry_client(uri)
    version = client.get_model_version_by_alias("parcel-risk", "champion")
    run = client.get_run(version.run_id)
    assert str(version.version) == "1"
    assert run.data.params["train.engine"] == "dask"
    assert run.data.params["train.scheduler"] == "address"  # not the address itself


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from serving.main import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_an_unreachable_scheduler_is_one_line_naming_it(frames, tmp_path):
    features, _, manifest = frames
    # a history training can split: the features are read (and checked) before the cluster
    features_dir = write_features_dir(tmp_path / "features", features, manifest)
    done = _cli("train", "--features", str(features_dir), "--engine", "dask",
                "--scheduler", "tcp://127.0.0.1:1", "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
                "--metrics-out", str(tmp_path / "m.json"), "-q")  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in errors[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_an_unknown_engine_is_refused_by_name(frames, tmp_path):
    features, _, manifest = frames
    features_dir = write_features_dir(tmp_path / "features", features.head(500), manifest)
    done = _cli("train", "--features", str(features_dir), "--engine", "spark", "-q")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: unknown engine 'spark' (choose pandas or dask)"


def test_a_scheduler_needs_the_dask_engine(frames, tmp_path):
    from serving.main import app

    features, _, manifest = frames
    features_dir = write_features_dir(tmp_path / "features", features.head(500), manifest)
    done = CliRunner().invoke(
        app, ["train", "--features", str(features_dir), "--scheduler", "tcp://127.0.0.1:1"]
    )
    assert done.exit_code == 2 and "--scheduler needs --engine dask" in done.output
    with pytest.raises(ParcelriskError, match="needs the dask engine"):
        train_models(features, manifest, PARAMS, scheduler="tcp://127.0.0.1:1")
