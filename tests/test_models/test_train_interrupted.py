"""A train that dies while logging (a full disk, kill -9) must leave no registered version, and
end in one line; a version whose artifacts are missing says its training may have been cut off."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from features.errors import ParcelriskError
from features.params import TrainParams
from models import registry
from models.registry import BUNDLE_ARTIFACT, ENTITY_STATE_ARTIFACT, load_version, registry_client
from models.train import train_models
from tests.test_models.conftest import (
    REGISTRY_PARAMS,
    make_frames,
    registry_world,
    write_features_dir,
)
from tests.test_serving.conftest import run_cli

pytestmark = pytest.mark.xdist_group("models_registry")
NAME = REGISTRY_PARAMS["promote"]["model_name"]
# what a full SQLite store answers when MLflow then tries to mark the run FAILED
STORE_FULL = (
    "(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush "
    "block if this flush is occurring prematurely)\n(sqlite3.OperationalError) database or "
    "disk is full"
)


@pytest.fixture(scope="module")
def small():
    """A short history: a train of a few seconds."""
    return make_frames(n=4000, seed=2)


@pytest.fixture
def world(small, tmp_path):
    features, truth, manifest = small
    return {
        **registry_world(tmp_path, truth),
        "features_dir": write_features_dir(tmp_path / "features", features, manifest),
    }


def _disk_full_at_entity_state(monkeypatch) -> None:
    """``log_artifacts`` of the entity state runs out of space (the bundle is logged before it)."""
    import mlflow

    log_artifacts = mlflow.log_artifacts

    def full(local_dir: str, artifact_path: str | None = None) -> None:
        if artifact_path == ENTITY_STATE_ARTIFACT:
            raise OSError(errno.ENOSPC, "No space left on device", local_dir)
        log_artifacts(local_dir, artifact_path)

    monkeypatch.setattr(mlflow, "log_artifacts", full)


def _versions(uri: str) -> list[str]:
    return [v.version for v in registry_client(uri).search_model_versions(f"name='{NAME}'")]


def test_a_train_that_runs_out_of_space_registers_no_version(world, monkeypatch) -> None:
    from models.cli import run_training

    _disk_full_at_entity_state(monkeypatch)
    with pytest.raises((OSError, ParcelriskError)):
        run_training(
            world["features_dir"],
            settings=world["settings"],
            tracking_uri=world["uri"],
            metrics_out=None,
        )
    assert _versions(world["uri"]) == []
    runs = registry_client(world["uri"]).search_runs(
        [e.experiment_id for e in registry_client(world["uri"]).search_experiments()]
    )
    assert [r.info.status for r in runs] == ["FAILED"]


def test_a_full_disk_during_train_ends_in_one_line(world, monkeypatch, capsys) -> None:
    # the artifact store is full, and so is the tracking store MLflow then marks the run in
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def store_full(*args, **kwargs) -> None:
        raise MlflowException(STORE_FULL)

    _disk_full_at_entity_state(monkeypatch)
    monkeypatch.setattr(MlflowClient, "set_terminated", store_full)
    code, _, err = run_cli(
        capsys,
        "train",
        "--features",
        str(world["features_dir"]),
        "--params",
        str(world["params_path"]),
        "--tracking-uri",
        world["uri"],
        "--metrics-out",
        str(world["root"] / "train.json"),
        "-q",
    )
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and "no space left on device" in errors[0], err
    assert "no model version was registered" in errors[0]
    assert "Traceback" not in err
    assert _versions(world["uri"]) == []


def test_a_version_without_its_bundle_says_training_may_have_been_interrupted(
    small, world, tmp_path
) -> None:
    features, _, manifest = small
    result = train_models(features, manifest, TrainParams.from_dict(REGISTRY_PARAMS["train"]))
    result.model.metadata["entity_state_fingerprint"] = "state-fp-1"
    logged = registry.log_training(
        result,
        features_dir=world["features_dir"],
        params=REGISTRY_PARAMS,
        tracking_uri=world["uri"],
        shap_sample=100,
    )
    client = registry_client(world["uri"])
    # what a train killed between registering and logging its bundle left behind
    artifacts = Path(urlparse(client.get_run(logged.run_id).info.artifact_uri).path)
    shutil.rmtree(artifacts / BUNDLE_ARTIFACT)
    with pytest.raises(ParcelriskError) as caught:
        load_version(client, NAME, logged.version, tmp_path / "dl")
    message = str(caught.value)
    assert "\n" not in message
    assert f"artifact {BUNDLE_ARTIFACT}/ missing" in message
    assert "training run may have been interrupted" in message
    assert "retrain (`parcelrisk train`)" in message
    # never "delete this version": the decisions recorded with it would lose their model (probe 12)
    assert "delete" not in message and "keep this one if decisions were recorded" in message


def test_a_run_left_running_by_a_killed_training_is_ended_by_the_next(tmp_path) -> None:
    """A SIGKILL skips every handler: its run stayed RUNNING forever in the UI (probe)."""
    import os
    import socket
    import subprocess
    import sys

    import mlflow

    from models.registry import RUN_HOST_TAG, RUN_PID_TAG, _end_runs_of_dead_trainings

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = mlflow.MlflowClient(uri)
        experiment = client.create_experiment("parcel-risk")
        host = socket.gethostname()
        killed = client.create_run(
            experiment, tags={RUN_HOST_TAG: host, RUN_PID_TAG: str(dead.pid)}
        )
        alive = client.create_run(
            experiment, tags={RUN_HOST_TAG: host, RUN_PID_TAG: str(os.getpid())}
        )
        elsewhere = client.create_run(
            experiment, tags={RUN_HOST_TAG: "another-host", RUN_PID_TAG: str(dead.pid)}
        )
        _end_runs_of_dead_trainings(host)
        status = {r: client.get_run(r.info.run_id).info.status for r in (killed, alive, elsewhere)}
        assert status[killed] == "KILLED"
        assert status[alive] == "RUNNING" and status[elsewhere] == "RUNNING"
    finally:
        mlflow.set_tracking_uri(previous)
