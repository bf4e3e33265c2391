"""Champion roll-over: a newly promoted model is loaded beside the running one and swapped in
between batches; a broken one is refused while the running one goes on serving."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass

import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

from features.errors import ParcelriskError
from serving.rollover import RETRY_MAX_CHECKS, ChampionWatcher, load_failure_passes
from serving.sqlite_store import StoreReplaced, StoreUnavailable
from tests.test_serving.conftest import auth, fresh_declarations, service_client

# --- the watcher's rules, with fakes ----------------------------------------------------------


@dataclass
class FakeRuntime:
    model_version: str


class Registry:
    """The alias's version, what loading it does, and what got installed."""

    def __init__(self, alias: str | None, serving: str | None) -> None:
        self.alias = alias
        self.serving = serving
        self.broken: set[str] = set()
        self.loads: list[str] = []
        self.failures: list[Exception] = []  # raised by the next loads, one each

    def champion(self) -> str | None:
        if self.alias == "unreachable":
            raise ConnectionError("registry down")
        return self.alias

    def load(self) -> FakeRuntime:
        assert self.alias is not None
        self.loads.append(self.alias)
        if self.alias in self.broken:
            raise RuntimeError(f"bundle of v{self.alias} is corrupt")
        if self.failures:
            raise self.failures.pop(0)
        return FakeRuntime(self.alias)

    def install(self, runtime: FakeRuntime) -> None:
        self.serving = runtime.model_version

    def watcher(self) -> ChampionWatcher:
        return ChampionWatcher(
            current=lambda: self.serving,
            champion=self.champion,
            load=self.load,  # type: ignore[arg-type]
            install=self.install,  # type: ignore[arg-type]
            interval_s=0,
        )


def test_nothing_is_loaded_while_the_alias_stays():
    registry = Registry(alias="3", serving="3")
    assert registry.watcher().check() is None
    assert registry.loads == []


def test_a_moved_alias_is_loaded_and_installed_once():
    registry = Registry(alias="3", serving="3")
    watcher = registry.watcher()
    registry.alias = "4"
    switch = watcher.check()
    assert switch is not None and (switch.from_version, switch.to_version) == ("3", "4")
    assert registry.serving == "4"
    assert watcher.check() is None and registry.loads == ["4"]


def test_a_broken_version_is_refused_not_retried_and_the_next_one_loads(caplog):
    registry = Registry(alias="5", serving="4")
    registry.broken.add("5")
    watcher = registry.watcher()
    assert watcher.check() is None
    assert registry.serving == "4" and watcher.failed_version == "5"
    assert "champion v5 not loaded, v4 goes on serving" in caplog.text
    assert watcher.check() is None and registry.loads == ["5"]  # not tried again
    registry.alias = "6"
    assert watcher.check() is not None and registry.serving == "6"


def _store_restarting() -> StoreUnavailable:
    return StoreUnavailable(
        "decision store postgresql://127.0.0.1/decisions cannot take this now: connection "
        "failed: FATAL: the database system is shutting down"
    )


def _download_failed(cause: Exception) -> ParcelriskError:
    """As the registry wraps a failed download: naming the artifact, raised from the cause."""
    try:
        raise cause
    except Exception as exc:
        try:
            raise ParcelriskError(
                "model 'parcel-risk' version 5: artifact bundle/ missing"
            ) from exc
        except ParcelriskError as wrapped:
            return wrapped


def test_a_store_outage_during_the_load_is_tried_again_at_the_next_check(caplog):
    registry = Registry(alias="5", serving="4")
    registry.failures.append(_store_restarting())
    watcher = registry.watcher()
    assert watcher.check() is None and registry.serving == "4"
    assert watcher.failed_version is None and watcher.retry_version == "5"
    assert "champion v5 not loaded (try 1), v4 goes on serving: StoreUnavailable" in caplog.text
    assert "shutting down" in caplog.text
    switch = watcher.check()
    assert switch is not None and registry.serving == "5" and registry.loads == ["5", "5"]
    assert watcher.retry_version is None and watcher.retry_failures == 0


@pytest.mark.parametrize(
    "failure",
    [
        _download_failed(ConnectionError("Connection refused")),
        _download_failed(TimeoutError("read timed out")),
        _download_failed(OSError(28, "No space left on device")),
        _download_failed(MlflowException("API request to /api/2.0/... failed")),
        MlflowException("service unavailable", error_code=TEMPORARILY_UNAVAILABLE),
        sqlite3.OperationalError("database is locked"),
    ],
    ids=["refused", "timeout", "disk-full", "mlflow-network", "mlflow-503", "sqlite-locked"],
)
def test_a_failure_that_can_pass_is_retried(failure):
    assert load_failure_passes(failure)
    registry = Registry(alias="5", serving="4")
    registry.failures.append(failure)
    watcher = registry.watcher()
    assert watcher.check() is None and watcher.failed_version is None
    assert watcher.check() is not None and registry.serving == "5"


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("bundle of v5 is corrupt"),
        ParcelriskError("entity-state snapshot does not match the model"),
        _download_failed(FileNotFoundError("bundle/ not found")),
        MlflowException("version 5 not found", error_code=RESOURCE_DOES_NOT_EXIST),
        StoreReplaced("decision store was replaced under the running service"),
    ],
    ids=["corrupt", "snapshot", "artifact-missing", "version-gone", "store-replaced"],
)
def test_a_broken_version_is_not_taken_for_a_passing_failure(failure):
    assert not load_failure_passes(failure)
    registry = Registry(alias="5", serving="4")
    registry.failures.append(failure)
    watcher = registry.watcher()
    assert watcher.check() is None and watcher.failed_version == "5"
    assert watcher.check() is None and registry.loads == ["5"]


def test_a_lasting_outage_is_tried_again_ever_less_often_up_to_a_bound(caplog):
    registry = Registry(alias="5", serving="4")
    registry.failures.extend(_store_restarting() for _ in range(7))
    watcher = registry.watcher()
    tried_at = []
    for n in range(1, 60):
        before = len(registry.loads)
        watcher.check()
        if len(registry.loads) > before:
            tried_at.append(n)
        if registry.serving == "5":
            break
    # gaps of 1, 2, 4, 8 checks, then 8 (RETRY_MAX_CHECKS) until the store is back
    assert tried_at == [1, 2, 4, 8, 16, 24, 32, 40]
    assert tried_at[-1] - tried_at[-2] == RETRY_MAX_CHECKS
    assert registry.serving == "5"
    assert caplog.text.count("v4 goes on serving: StoreUnavailable") == 7  # each try logged


def test_an_alias_moved_during_the_retries_is_loaded_at_once():
    registry = Registry(alias="5", serving="4")
    registry.failures.extend([_store_restarting(), _store_restarting()])
    watcher = registry.watcher()
    watcher.check()
    watcher.check()  # second failure: the next try waits a check
    registry.alias = "6"
    assert watcher.check() is not None and registry.serving == "6"
    assert registry.loads == ["5", "5", "6"]


def test_an_unreachable_registry_keeps_the_champion(caplog):
    registry = Registry(alias="unreachable", serving="4")
    assert registry.watcher().check() is None
    assert registry.serving == "4" and "champion check failed" in caplog.text


def test_a_worker_without_a_champion_takes_the_first_one_promoted():
    registry = Registry(alias=None, serving=None)
    watcher = registry.watcher()
    assert watcher.check() is None
    registry.alias = "1"
    assert watcher.check() is not None and registry.serving == "1"


def test_the_background_check_runs_and_stops():
    registry = Registry(alias="2", serving="1")
    watcher = registry.watcher()
    watcher.interval_s = 0.01
    watcher.start()
    try:
        for _ in range(500):
            if registry.serving == "2":
                break
            threading.Event().wait(0.01)
    finally:
        watcher.stop()
    assert registry.serving == "2"


# --- the running service -----------------------------------------------------------------------


@pytest.fixture
def registry_copy(real_pipeline, tmp_path, monkeypatch):
    """The real pipeline's registry copied (artifacts shared, read only) and params that leave
    the checks to the test (``champion_check_s: 0``)."""
    import mlflow

    from models.registry import registry_client

    # SQLite's backup, not a file copy: recent writes may still sit in the source's WAL
    source = sqlite3.connect(real_pipeline["root"] / "mlflow.db")
    copy = sqlite3.connect(tmp_path / "mlflow.db")
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    params = yaml.safe_load(real_pipeline["params"].read_text())
    params["serve"]["champion_check_s"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # MLflow resolves a version's source (models:/m-...) through the process-wide tracking URI,
    # not the client's: point it at the copy for this test, whatever an earlier test set
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    env = {
        "PARCELRISK_TRACKING_URI": uri,
        "PARCELRISK_PARAMS": str(tmp_path / "params.yaml"),
        "PARCELRISK_AUDIT_DB": str(tmp_path / "audit.db"),
        "PARCELRISK_MODEL_DIR": str(tmp_path / "model"),
    }
    yield registry_client(uri), params["promote"]["model_name"], env
    mlflow.set_tracking_uri(previous)


def _new_version(client, name: str, like: str, *, broken: bool = False) -> str:
    """Register another version (the same run's artifacts, or a run without any)."""
    source = client.get_model_version(name, like)
    run_id = source.run_id
    if broken:
        run_id = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    version = client.create_model_version(name, source.source, run_id=run_id).version
    return str(version)


def _score(client, frame: pd.DataFrame) -> list[dict]:
    payload = json.loads(frame.to_json(orient="records", date_format="iso"))
    r = client.post("/score", json={"declarations": payload}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


def _service():
    from serving.service import _WORKER

    assert _WORKER.service is not None
    return _WORKER.service


def test_a_promotion_is_picked_up_between_requests_without_a_failure(registry_copy, real_pipeline):
    client_mlflow, name, env = registry_copy
    v1 = real_pipeline["version"]
    fresh = fresh_declarations(real_pipeline["history"], 400, prefix="ROLL")
    with service_client(env) as client:
        first = _score(client, fresh.iloc[:100])
        assert {d["model"]["version"] for d in first} == {v1}

        # requests keep coming while the new champion is loaded and swapped in
        answers: list[list[dict]] = []
        stop = threading.Event()

        def keep_scoring() -> None:
            for start in range(100, 300, 10):
                answers.append(_score(client, fresh.iloc[start : start + 10]))
                if stop.is_set():
                    break

        v2 = _new_version(client_mlflow, name, v1)
        client_mlflow.set_registered_model_alias(name, "champion", v2)
        traffic = threading.Thread(target=keep_scoring)
        traffic.start()
        switch = _service().watcher.check()
        stop.set()
        traffic.join()
        assert switch is not None and (switch.from_version, switch.to_version) == (v1, v2)
        # every answer came from one model, and every request was answered
        assert all(len({d["model"]["version"] for d in a}) == 1 for a in answers)
        assert {d["model"]["version"] for a in answers for d in a} <= {v1, v2}
        after = _score(client, fresh.iloc[300:])
        assert {d["model"]["version"] for d in after} == {v2}
        assert client.get("/readyz").status_code == 200
        # the new champion's state replayed the log: every declaration scored since its
        # snapshot's cutoff, each once, is in it (the last batch once the next one catches up)
        service = _service()
        service.runtime.catch_up(service.store, service.outcome_store)
        scored = 100 + sum(len(a) for a in answers) + len(after)
        assert len(service.runtime.live) == scored


def test_a_broken_promotion_is_refused_and_the_champion_keeps_serving(registry_copy, real_pipeline):
    client_mlflow, name, env = registry_copy
    v1 = real_pipeline["version"]
    fresh = fresh_declarations(real_pipeline["history"], 20, prefix="BROKEN")
    with service_client(env) as client:
        bad = _new_version(client_mlflow, name, v1, broken=True)
        client_mlflow.set_registered_model_alias(name, "champion", bad)
        watcher = _service().watcher
        assert watcher.check() is None and watcher.failed_version == bad
        assert {d["model"]["version"] for d in _score(client, fresh)} == {v1}
        assert client.get("/readyz").status_code == 200


def test_a_worker_started_before_any_promotion_becomes_ready(registry_copy, real_pipeline):
    client_mlflow, name, env = registry_copy
    client_mlflow.delete_registered_model_alias(name, "champion")
    with service_client(env) as client:
        assert client.get("/readyz").status_code == 503
        client_mlflow.set_registered_model_alias(name, "champion", real_pipeline["version"])
        assert _service().watcher.check() is not None
        assert client.get("/readyz").status_code == 200
        fresh = fresh_declarations(real_pipeline["history"], 5, prefix="LATE")
        assert len(_score(client, fresh)) == 5
