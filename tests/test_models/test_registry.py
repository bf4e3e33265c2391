"""MLflow logging, load_champion and the champion/challenger gate on a temporary SQLite store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from features.errors import ParcelriskError
from features.params import TrainParams, load_settings
from features.pipeline.manifest import FeatureManifest
from models.cli import run_promotion, run_training
from models.registry import load_champion, log_training, registry_client
from models.train import train_models
from tests.test_models.conftest import REGISTRY_PARAMS as PARAMS
from tests.test_models.conftest import (
    make_census_frames,
    registry_world,
    write_features_dir,
)

pytestmark = pytest.mark.xdist_group("models_registry")
WEAK_FEATURES = ("noise_a", "noise_b", "weight_kg")


# --- MLflow end to end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(frames, tmp_path_factory):
    """v1 weak (champion first), v2 full (accepted), v3 weak (refused, then forced)."""
    features, truth, manifest = frames
    root = tmp_path_factory.mktemp("registry")
    weak = FeatureManifest(tuple(f for f in manifest.features if f.name in WEAK_FEATURES))
    full_dir = write_features_dir(root / "full", features, manifest)
    weak_dir = write_features_dir(root / "weak", features, weak)
    world = registry_world(root, truth)
    truth_path, params_path, uri = world["truth_path"], world["params_path"], world["uri"]
    settings = world["settings"]
    common = {"settings": settings, "tracking_uri": uri, "ground_truth_path": truth_path}

    state = {"uri": uri, "root": root, "params_path": params_path}
    state["train1"] = run_training(weak_dir, metrics_out=root / "metrics" / "train.json", **common)
    state["promote1"] = run_promotion(settings=load_settings(params_path), tracking_uri=uri)
    state["train2"] = run_training(full_dir, metrics_out=None, **common)
    state["promote2"] = run_promotion(settings=load_settings(params_path), tracking_uri=uri)
    state["train3"] = run_training(weak_dir, metrics_out=None, **common)
    from serving.main import app

    state["cli3"] = CliRunner().invoke(
        app,
        [
            "promote",
            "--params",
            str(params_path),
            "--tracking-uri",
            uri,
            "--report",
            str(root / "promotion.json"),
        ],
    )
    state["promote3_forced"] = run_promotion(
        settings=load_settings(params_path), tracking_uri=uri, force=True, reason="audit request 42"
    )
    return state


def _tags(store, version: str) -> dict[str, str]:
    return registry_client(store["uri"]).get_model_version("parcel-risk", version).tags


def test_training_writes_flat_metrics_json(store):
    payload = json.loads((store["root"] / "metrics" / "train.json").read_text())
    assert "test_all.model.precision_at_5" in payload
    assert all(isinstance(v, float | int) for v in payload.values())
    # nothing that changes run to run: the file is a DVC metric whose hash is in dvc.lock
    assert not any("seconds" in k for k in payload)


def test_run_logs_bundle_entity_state_and_plots(store):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store["uri"])
    run_id = store["train2"]["run_id"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"bundle", "entity_state", "plots", "shap", "tables", "feature_manifest.json"} <= top
    run = client.get_run(run_id)
    assert run.data.params["data_fingerprint"]
    assert "test_random.model.precision_at_5" in run.data.metrics
    # the served revenue boosters passed their check (models.train.check_revenue_booster)
    assert run.data.tags["revenue_guard"] == "passed"
    assert run.data.metrics["info.revenue_guard_fallback"] == 0.0
    # the code that trained it (probe 13: nothing in the run named the commit)
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert run.data.tags["mlflow.source.git.commit"] == head.strip()
    assert run.data.tags["parcelrisk.git_dirty"] in ("true", "false")
    assert run.data.tags["parcelrisk.version"]


def test_registered_version_loads_with_the_lightgbm_flavour(store, frames):
    import mlflow
    import mlflow.lightgbm

    mlflow.set_tracking_uri(store["uri"])
    booster = mlflow.lightgbm.load_model("models:/parcel-risk/2")
    model, _, _ = load_champion(store["uri"], dst=store["root"] / "dl2")  # forced v3 = weak
    full = FeatureManifest.read(store["root"] / "full")
    X = full.matrix(frames[0].head(20))
    assert booster.num_feature() == len(full.names)
    assert np.isfinite(booster.predict(X, raw_score=True)).all()
    assert model.risk_booster.num_feature() == len(WEAK_FEATURES)


def test_first_model_becomes_champion(store):
    assert store["promote1"]["outcome"] == "first"
    assert _tags(store, "1")["promotion.outcome"] == "first"


def test_better_challenger_is_promoted(store):
    assert store["promote2"]["outcome"] == "promoted", store["promote2"]["reasons"]
    assert _tags(store, "1")["promotion.replaced_by"] == "2"


def test_worse_challenger_is_refused_with_exit_code_1(store):
    result = store["cli3"]
    assert result.exit_code == 1, result.output
    assert "refused" in result.output and "precision_at_5" in result.output
    report = json.loads((store["root"] / "promotion.json").read_text())
    assert report["outcome"] == "refused" and report["promoted"] == 0
    champion = report["gate.champion.test_all.model.precision_at_5"]
    assert report["gate.challenger.test_all.model.precision_at_5"] < champion


def test_gate_scores_the_first_pass_the_training_run_measured(store):
    # same holdout, same evaluation model: the gate's figure is the training run's, not the
    # refit model's (which has seen these labels)
    trained = store["train2"]["all_metrics"]["test_all.model.precision_at_5"]
    gated = store["promote2"]["metrics"]["challenger.test_all.model.precision_at_5"]
    assert gated == pytest.approx(trained)


def test_force_records_the_reason_and_moves_the_alias(store):
    assert store["promote3_forced"]["outcome"] == "forced"
    tags = _tags(store, "3")
    assert tags["promotion.outcome"] == "forced"
    assert tags["promotion.force_reason"] == "audit request 42"
    assert tags["promotion.champion_before"] == "2"


def test_load_champion_returns_model_state_and_info(store, frames, tmp_path):
    model, state_dir, info = load_champion(store["uri"], dst=tmp_path)
    assert info["version"] == "3" and info["name"] == "parcel-risk" and info["run_id"]
    assert (state_dir / "meta.json").exists()
    assert model.metadata["entity_state_fingerprint"] == "state-fp-1"
    scores = model.score(model.manifest.matrix(frames[0].head(50)))
    assert np.isfinite(scores["risk"]).all()


def test_force_needs_a_reason(store):
    with pytest.raises(ParcelriskError, match="--reason"):
        run_promotion(
            settings=load_settings(store["params_path"]), tracking_uri=store["uri"], force=True
        )


def test_load_champion_without_champion_is_a_clear_error(tmp_path):
    with pytest.raises(ParcelriskError, match="no model 'parcel-risk'@champion"):
        load_champion(f"sqlite:///{tmp_path / 'empty.db'}", dst=tmp_path / "dl")


def test_load_champion_rejects_mismatched_entity_state(frames, tmp_path):
    features, _, manifest = frames
    features_dir = write_features_dir(tmp_path / "f", features, manifest)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train_models(features, manifest, TrainParams.from_dict(PARAMS["train"]))
    result.model.metadata["entity_state_fingerprint"] = "some-other-snapshot"
    logged = log_training(
        result, features_dir=features_dir, params=PARAMS, tracking_uri=uri, shap_sample=100
    )
    registry_client(uri).set_registered_model_alias("parcel-risk", "champion", logged.version)
    with pytest.raises(ParcelriskError, match="does not match"):
        load_champion(uri, dst=tmp_path / "dl")


# --- a revenue-less census history: promotion works without --force ---------------------------


@pytest.fixture(scope="module")
def census_store(tmp_path_factory):
    """No ground truth, no revenue: v1 weak (first), v2 full (better), v3 full again (equal)."""
    features, _, manifest = make_census_frames(n=4000, days=60, seed=3)
    root = tmp_path_factory.mktemp("census_registry")
    weak = FeatureManifest(tuple(f for f in manifest.features if f.name in WEAK_FEATURES))
    # the snapshot records the full manifest the features were built with
    full_dir = write_features_dir(
        root / "full", features, manifest, state_manifest_fingerprint=manifest.fingerprint
    )
    weak_dir = write_features_dir(root / "weak", features, weak)
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(PARAMS))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    common = {"settings": load_settings(params_path), "tracking_uri": uri, "metrics_out": None}
    state = {"uri": uri, "root": root, "manifest": manifest, "full_dir": full_dir}
    state["train1"] = run_training(weak_dir, **common)
    state["promote1"] = run_promotion(settings=load_settings(params_path), tracking_uri=uri)
    state["train2"] = run_training(full_dir, **common)
    state["promote2"] = run_promotion(settings=load_settings(params_path), tracking_uri=uri)
    state["train3"] = run_training(full_dir, **common)
    state["promote3"] = run_promotion(settings=load_settings(params_path), tracking_uri=uri)
    return state


def test_census_first_model_becomes_champion(census_store):
    assert census_store["promote1"]["outcome"] == "first"


def test_census_better_challenger_is_promoted_without_force(census_store):
    out = census_store["promote2"]
    assert out["outcome"] == "promoted", out["reasons"]
    assert any("precision_at_5 only" in r for r in out["reasons"])
    assert all(np.isfinite(v) for v in out["metrics"].values())


def test_census_equal_challenger_is_refused(census_store):
    out = census_store["promote3"]
    assert out["outcome"] == "refused"
    assert any("no better" in r for r in out["reasons"])


def test_census_run_logs_no_nan_and_says_what_is_not_applicable(census_store):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=census_store["uri"])
    run = client.get_run(census_store["train2"]["run_id"])
    assert all(np.isfinite(v) for v in run.data.metrics.values())
    assert not any("revenue_at" in k for k in run.data.metrics)
    assert run.data.tags["revenue_guard"] == "no revenue model"
    info = census_store["train2"]["info"]
    assert info["not_applicable"]["test_random.*.revenue_at_*"] == "no revenue data"


def test_model_on_a_feature_subset_loads_against_the_full_snapshot(census_store, tmp_path):
    model, _, info = load_champion(census_store["uri"], dst=tmp_path)
    assert info["version"] == "2"
    assert model.metadata["feature_manifest_fingerprint"] == census_store["manifest"].fingerprint
    assert len(model.manifest.names) < len(census_store["manifest"].names)
    assert model.metadata["inspection_census"] is True


def test_snapshot_of_another_manifest_is_refused(frames, tmp_path):
    features, _, manifest = frames
    features_dir = write_features_dir(
        tmp_path / "f", features, manifest, state_manifest_fingerprint="another-manifest"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train_models(features, manifest, TrainParams.from_dict(PARAMS["train"]))
    result.model.metadata["entity_state_fingerprint"] = "state-fp-1"
    logged = log_training(
        result, features_dir=features_dir, params=PARAMS, tracking_uri=uri, shap_sample=100
    )
    registry_client(uri).set_registered_model_alias("parcel-risk", "champion", logged.version)
    with pytest.raises(ParcelriskError, match="feature manifest another-manifest"):
        load_champion(uri, dst=tmp_path / "dl")


# --- the validation gate reaches training ------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "problem"),
    [(None, "carry no record of the validation gate"), ({"gate": "skipped"}, "--no-validate")],
)
def test_train_refuses_features_from_unvalidated_declarations(
    frames, tmp_path, source, problem
) -> None:
    features, _, manifest = frames
    features_dir = write_features_dir(tmp_path / "f", features.head(50), manifest)
    if source is None:
        (features_dir / "source.json").unlink()
    else:
        (features_dir / "source.json").write_text(json.dumps(source))
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(PARAMS))
    with pytest.raises(ParcelriskError, match=problem):
        run_training(
            features_dir,
            settings=load_settings(params_path),
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            metrics_out=None,
        )


def test_train_no_validate_is_recorded_in_mlflow(frames, tmp_path) -> None:
    features, _, manifest = frames
    features_dir = write_features_dir(tmp_path / "f", features, manifest)
    (features_dir / "source.json").write_text(json.dumps({"gate": "skipped"}))
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(PARAMS))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_training(
        features_dir,
        settings=load_settings(params_path),
        tracking_uri=uri,
        metrics_out=None,
        no_validate=True,
    )
    tags = registry_client(uri).get_run(out["run_id"]).data.tags
    assert tags["gate.declarations"] == "skipped"
    assert tags["gate.train_no_validate"] == "True"


def test_a_missing_sqlite_store_is_created_once_before_the_workers_start(tmp_path, monkeypatch):
    import sqlite3

    from models.registry import create_sqlite_store

    monkeypatch.chdir(tmp_path)
    assert create_sqlite_store("sqlite:///fresh.db") is True  # relative: the serving directory
    tables = {
        r[0]
        for r in sqlite3.connect(tmp_path / "fresh.db").execute("select name from sqlite_master")
    }
    assert {"registered_models", "model_versions", "experiments", "metrics"} <= tables
    assert create_sqlite_store("sqlite:///fresh.db") is False  # there: left alone
    assert create_sqlite_store("http://mlflow.example:5000") is False
    assert create_sqlite_store("sqlite:///:memory:") is False


def test_a_store_that_cannot_be_created_is_one_clear_error_at_once(tmp_path):
    from features.errors import ParcelriskError
    from models.registry import create_sqlite_store

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ParcelriskError, match="cannot create the MLflow store"):
        create_sqlite_store(f"sqlite:///{blocker}/sub/mlflow.db")  # parent is a file
    with pytest.raises(ParcelriskError, match="cannot create the MLflow store"):
        create_sqlite_store("sqlite:////proc/mlflow.db")  # no database can live there


def test_a_champion_built_before_keyed_pseudonyms_is_replaced_only_when_forced(frames, tmp_path):
    """The service refuses an entity state of raw consignee ids (no request would match
    them); but the process running promote cannot tell which key the service holds (an
    analyst's shell with another key made an untested challenger champion: probe, 2026-12),
    so a challenger built under another key is not compared: refused, then forced with a
    reason, both recorded."""
    from features.intake.pseudonym import process_key_id

    features, truth, manifest = frames
    weak = FeatureManifest(tuple(f for f in manifest.features if f.name in WEAK_FEATURES))
    old_dir = write_features_dir(tmp_path / "old", features, manifest)
    new_dir = write_features_dir(tmp_path / "new", features, weak)
    meta_path = new_dir / "entity_state" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "pseudonym_key_id": process_key_id()}))
    truth_path = tmp_path / "truth.parquet"
    truth.to_parquet(truth_path)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(PARAMS))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = load_settings(params_path)
    common = {"settings": settings, "tracking_uri": uri, "ground_truth_path": truth_path}
    run_training(old_dir, metrics_out=None, **common)
    assert run_promotion(settings=settings, tracking_uri=uri)["outcome"] == "first"
    run_training(new_dir, metrics_out=None, **common)
    result = run_promotion(settings=settings, tracking_uri=uri)
    assert result["outcome"] == "refused" and result["champion_before"] == "1"
    assert "built before consignee ids were keyed" in result["reasons"][0]
    result = run_promotion(
        settings=settings, tracking_uri=uri, force=True, reason="ids keyed since this release"
    )
    assert result["outcome"] == "forced" and result["champion_before"] == "1"
    tags = registry_client(uri).get_model_version("parcel-risk", "2").tags
    assert "built before consignee ids were keyed" in tags["promotion.reasons"]
    assert tags["promotion.force_reason"] == "ids keyed since this release"


def test_a_tracking_store_that_cannot_be_written_is_refused_before_the_fit(
    tmp_path, monkeypatch
) -> None:
    """MLflow found out only when logging: after the whole fit, ~100 s of retries and a
    SQLAlchemy traceback (probe, a read-only mount)."""
    import os

    from models.registry import require_writable_sqlite_store

    store = tmp_path / "mlflow.db"
    store.write_bytes(b"")
    require_writable_sqlite_store(f"sqlite:///{store}")  # writable: nothing said
    require_writable_sqlite_store("http://tracking.example:5000")  # a server says it itself
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode)
    )
    with pytest.raises(ParcelriskError, match=r"cannot be written \(.*no write permission\)"):
        require_writable_sqlite_store(f"sqlite:///{store}")
