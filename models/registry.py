"""MLflow tracking and the model registry: log a training run, resolve versions, load the champion.

The registry is the only place that knows where a model lives. A run holds the LightGBM flavour
(``model/``), the whole ``RiskModel`` bundle (``bundle/``), the entity-state snapshot it was
trained with (``entity_state/``), plots, SHAP and tables; the registered version points at the run
and the alias ``champion`` marks the version the service loads (``load_champion``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.errors import ParcelriskError
from models.bundle import BUNDLE_FILE, RiskModel

if TYPE_CHECKING:
    from mlflow import ActiveRun, MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from models.train import TrainResult

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_MODEL_NAME = "parcel-risk"
CHAMPION_ALIAS = "champion"
EXPERIMENT = "parcelrisk"
BUNDLE_ARTIFACT = "bundle"
ENTITY_STATE_ARTIFACT = "entity_state"
ENTITY_STATE_META = "meta.json"
# on each registered version: the SHA-256 of its bundle.json, which holds the digests of the
# bundle's other files and the entity state's fingerprint (``load_version`` checks the chain)
BUNDLE_DIGEST_TAG = "bundle.sha256"
# What a version with missing artifacts most likely is: versions registered before
# ``log_training`` registered last could be left so by a train killed or out of disk space.
INTERRUPTED_TRAINING = (
    "the training run may have been interrupted before it was fully logged, or its artifacts "
    "were removed since; retrain (`parcelrisk train`) for a new version, but keep this one if "
    "decisions were recorded with it: it is their link to the model that made them (restore "
    "its artifacts to recompute them)"
)


def code_version_tags() -> dict[str, str]:
    """The commit of the project's checkout (MLflow's own ``mlflow.source.git.commit``), whether
    it had uncommitted changes, and the package version; a checkout without git (an installed
    wheel, a Bento) says so rather than leave the tag out."""
    import subprocess
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    root = Path(__file__).resolve().parent.parent
    try:
        version = package_version("parcelrisk")
    except PackageNotFoundError:
        version = "unknown"
    tags = {"parcelrisk.version": version}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        tags["mlflow.source.git.commit"] = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        tags["parcelrisk.git_dirty"] = "true" if dirty else "false"
    except (OSError, subprocess.SubprocessError):
        tags["mlflow.source.git.commit"] = "unknown (not a git checkout)"
    return tags


def resolve_tracking_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def create_sqlite_store(tracking_uri: str | None) -> bool:
    """Create a SQLite tracking store that does not exist yet, here and once; True if created.

    Service workers each open the store as they start: on a missing file each would create and
    migrate it at the same moment, and all but one fail with "duplicate column name: step"
    where the answer is "no champion registered yet"."""
    uri = resolve_tracking_uri(tracking_uri)
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return False
    path = Path(uri[len(prefix) :])
    if path.exists() or str(path) == ":memory:":
        return False
    # MLflow retries an unopenable file for minutes before it gives up: say it at once
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParcelriskError(f"cannot create the MLflow store {uri}: {exc.strerror}") from None
    import sqlite3

    try:
        sqlite3.connect(path).close()  # an empty database file: MLflow adds its tables
    except sqlite3.Error as exc:
        raise ParcelriskError(f"cannot create the MLflow store {uri}: {exc}") from None
    registry_client(uri).search_registered_models(max_results=1)
    return path.exists()


def require_writable_sqlite_store(tracking_uri: str | None) -> None:
    """Refuse, before any fit, a SQLite tracking store this process cannot write (a read-only
    mount, a file or folder without write permission): MLflow found out only when logging,
    after the whole fit, retried for ~100 s and ended in a SQLAlchemy traceback (probe,
    2026-12). A missing file is made by ``create_sqlite_store``; other stores say it when
    the run is logged."""
    import os

    uri = resolve_tracking_uri(tracking_uri)
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix + ":memory:":
        return
    path = Path(uri[len(prefix) :])
    where = path if path.exists() else path.parent
    # SQLite writes its journal beside the file: the folder must take new files too
    for target in {where, path.parent}:
        if target.exists() and not os.access(target, os.W_OK):
            raise ParcelriskError(
                f"the MLflow tracking store {uri} cannot be written ({target}: "
                f"{'read-only' if _read_only_mount(target) else 'no write permission'}): a "
                "trained model could not be logged or registered; give a store this process "
                "can write (--tracking-uri or MLFLOW_TRACKING_URI)"
            )


def _read_only_mount(path: Path) -> bool:
    import os

    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def registry_client(tracking_uri: str | None) -> MlflowClient:
    """A client of the tracking store and registry at ``tracking_uri`` (resolved).

    MLflow opens a database store here and reads its tables: a damaged or unreadable file
    raised SQLAlchemy's text (the SQL, a web link) as a worker's readiness reason, with two
    tracebacks in the log (probe 21); it is one line naming the store."""
    from mlflow import MlflowClient
    from sqlalchemy.exc import SQLAlchemyError

    uri = resolve_tracking_uri(tracking_uri)
    try:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ParcelriskError(
            f"the MLflow tracking store {shown_uri(uri)} cannot be read: {first[:300]}: restore it from "
            "a backup, or point --tracking-uri (MLFLOW_TRACKING_URI) at a store that reads"
        ) from None


def shown_uri(uri: str) -> str:
    """``uri`` for a message: a database URL's password written as ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # not a database URL (http://, file:): nothing to hide
        return uri


def require_tracking_store(tracking_uri: str | None) -> str:
    """The tracking URI of a command that works on models already registered, resolved; a
    SQLite store must exist and be MLflow's (other URIs are left to MLflow).

    MLflow creates and migrates whatever SQLite file it is pointed at: a mistyped path became
    a new empty store ("no champion"), a decision store got MLflow's tables added to it, and
    a file that is not SQLite ended in a traceback."""
    import sqlite3

    uri = resolve_tracking_uri(tracking_uri)
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix + ":memory:":
        return uri
    path = Path(uri[len(prefix) :])
    if not path.exists():
        raise ParcelriskError(
            f"the MLflow tracking store {uri} does not exist ({path}: no such file): give "
            "--tracking-uri (or MLFLOW_TRACKING_URI) of the store the models were trained into"
        )
    if not path.is_file():
        raise ParcelriskError(f"the MLflow tracking store {uri}: {path} is not a file")
    read_only = f"{path.resolve().as_uri()}?mode=ro"  # looking must not change it either
    try:
        with contextlib.closing(sqlite3.connect(read_only, uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:  # "file is not a database", unreadable
        raise ParcelriskError(f"the MLflow tracking store {uri}: {path}: {exc}") from None
    if "registered_models" not in tables:
        raise ParcelriskError(
            f"the MLflow tracking store {uri}: {path} is a SQLite file without MLflow's tables, "
            "not a tracking store"
        )
    return uri


def fingerprint_file(path: Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits): the data fingerprint of a run."""
    from features.intake.validation import fingerprint_file as sha256_of_file

    return sha256_of_file(path)[:16]


def entity_state_fingerprint(directory: Path) -> str:
    meta = Path(directory) / ENTITY_STATE_META
    if not meta.exists():
        raise ParcelriskError(
            f"entity state snapshot missing: {meta} not found (run `parcelrisk features build`)"
        )
    try:
        return str(json.loads(meta.read_text())["fingerprint"])
    except (KeyError, ValueError) as exc:
        raise ParcelriskError(f"entity state {meta} has no fingerprint: {exc}") from exc


def _ensure_experiment(uri: str) -> None:
    """Create the experiment with its artifacts beside a SQLite store, not under the cwd."""
    client = registry_client(uri)
    if client.get_experiment_by_name(EXPERIMENT) is not None:
        return
    location = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        location = (db.resolve().parent / "mlartifacts" / EXPERIMENT).as_uri()
    client.create_experiment(EXPERIMENT, artifact_location=location)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


# --------------------------------------------------------------------------------------------
# logging a training run
# --------------------------------------------------------------------------------------------


def _revenue_guard_tag(guard: dict[str, Any] | None) -> str:
    """The run's ``revenue_guard`` tag: "passed", the fallback and why, or "no revenue model"."""
    if not guard or not guard.get("checks"):
        return "no revenue model"
    return str(guard["fallback"] or "passed")[:4900]


@dataclass(frozen=True)
class LoggedModel:
    name: str
    version: str
    run_id: str
    metrics_path: Path | None = None
    headline: dict[str, float] = field(default_factory=dict)


def log_training(
    result: TrainResult,
    *,
    features_dir: Path,
    params: dict[str, Any],
    tracking_uri: str | None,
    model_name: str = DEFAULT_MODEL_NAME,
    ground_truth_path: Path | None = None,
    shap_sample: int = 2000,
) -> LoggedModel:
    """Log one training run to MLflow and register its model version.

    ``result.model.metadata`` must already carry the data and entity-state fingerprints.
    """
    import lightgbm as lgb
    import mlflow
    import mlflow.lightgbm
    import pandas as pd
    from mlflow.models import infer_signature

    from models.explain import global_shap, report_plots

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _ensure_experiment(uri)
    mlflow.set_experiment(EXPERIMENT)
    model = result.model
    manifest = model.manifest
    features_dir = Path(features_dir)
    meta = model.metadata
    with tempfile.TemporaryDirectory(prefix="parcelrisk-run-") as tmp, _training_run() as run:
        tmp_dir = Path(tmp)
        flat_params = _flatten(
            "", {"train": params.get("train", {}), "promote": params.get("promote", {})}, {}
        )
        flat_params.update(
            {
                "features_dir": str(features_dir.resolve()),
                "ground_truth": str(Path(ground_truth_path).resolve()) if ground_truth_path else "",
                "data_fingerprint": meta.get("data_fingerprint", ""),
                "entity_state_fingerprint": meta.get("entity_state_fingerprint", ""),
                "manifest_fingerprint": manifest.fingerprint,
                "n_features": len(manifest.names),
            }
        )
        mlflow.log_params({k: str(v)[:500] for k, v in flat_params.items()})
        mlflow.set_tags(
            {
                "data_fingerprint": meta.get("data_fingerprint", ""),
                "entity_state_fingerprint": meta.get("entity_state_fingerprint", ""),
                "thresholds_version": model.thresholds.version,
                "split": json.dumps(meta.get("split", {})),
                # how the declarations passed the validation gate (features.intake.validation)
                **{f"gate.{k}": str(v) for k, v in (meta.get("gate") or {}).items()},
                # a served revenue booster that failed its check, and what replaced it
                "revenue_guard": _revenue_guard_tag(meta.get("revenue_guard")),
                # the code that trained it: with the params, data and seed logged, what a
                # rebuild needs (probe 13: nothing in the run named the commit)
                **code_version_tags(),
            }
        )
        finite = {k: float(v) for k, v in result.metrics.items() if np.isfinite(v)}
        mlflow.log_metrics(finite)
        mlflow.log_metrics(
            {
                f"info.{k}": float(v)
                for k, v in result.info.items()
                if isinstance(v, int | float) and np.isfinite(v)
            }
        )

        # the LightGBM flavour, on the float matrix with the manifest's column names
        X_test = result.test_matrix
        example = pd.DataFrame(X_test[:5], columns=manifest.names)
        signature = infer_signature(example, model.raw_score(example.to_numpy()))
        # not registered here: the version is created last, once everything below is logged
        info = mlflow.lightgbm.log_model(
            model.risk_booster,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=[
                f"lightgbm=={lgb.__version__}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
            ],
        )

        bundle_dir = model.save(tmp_dir / BUNDLE_ARTIFACT)
        mlflow.log_artifacts(str(bundle_dir), BUNDLE_ARTIFACT)
        mlflow.log_artifacts(str(features_dir / ENTITY_STATE_ARTIFACT), ENTITY_STATE_ARTIFACT)
        mlflow.log_text(manifest.to_json(), "feature_manifest.json")
        mlflow.log_dict(
            {
                "raw_knots": model.calibration.raw_knots,
                "prob_knots": model.calibration.prob_knots,
                "method": model.calibration.method,
            },
            "calibration.json",
        )
        mlflow.log_dict(model.thresholds.__dict__, "thresholds.json")
        mlflow.log_dict(result.info, "train_info.json")

        tables_dir = tmp_dir / "tables"
        tables_dir.mkdir()
        for name, table in result.tables.items():
            table.to_csv(tables_dir / f"{name}.csv", index=False)
        mlflow.log_artifacts(str(tables_dir), "tables")
        plots = report_plots(result.predictions, tmp_dir / "plots")
        for path in plots:
            mlflow.log_artifact(str(path), "plots")
        try:
            global_shap(model, X_test, tmp_dir / "shap", sample=shap_sample)
            mlflow.log_artifacts(str(tmp_dir / "shap"), "shap")
        except Exception:  # explanations must not lose a trained model
            log.exception("global SHAP failed; the run is logged without it")

        tags = {
            "run_id": run.info.run_id,
            "data_fingerprint": meta.get("data_fingerprint", ""),
            "entity_state_fingerprint": meta.get("entity_state_fingerprint", ""),
            "thresholds_version": model.thresholds.version,
            "features_dir": str(features_dir.resolve()),
            "ground_truth": str(Path(ground_truth_path).resolve()) if ground_truth_path else "",
            BUNDLE_DIGEST_TAG: _sha256(bundle_dir / BUNDLE_FILE),
        }
        version = _register_version(f"models:/{info.model_id}", model_name, tags)
    return LoggedModel(model_name, version, run.info.run_id, headline=result.headline)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_registered_bundle(mv: ModelVersion, bundle_dir: Path) -> None:
    """Refuse a bundle whose ``bundle.json`` is not the one registered with the version.

    ``bundle.json`` records the digests of the bundle's other files (``check_bundle_digests``)
    and the entity state's fingerprint, so one digest kept apart from the artifacts anchors them
    all: the registry (the tracking database) and the artifact store are separate stores, and a
    write to the artifacts alone (a swapped booster with a recomputed bundle.json) no longer
    loads as the version that was gated and promoted. Versions registered before the tag
    existed load as they did.
    """
    registered = (mv.tags or {}).get(BUNDLE_DIGEST_TAG)
    if registered is None:
        log.info(
            "model %s v%s: no %s tag (registered before it existed)",
            mv.name,
            mv.version,
            BUNDLE_DIGEST_TAG,
        )
        return
    path = bundle_dir / BUNDLE_FILE
    actual = _sha256(path) if path.is_file() else "missing"
    if actual != registered:
        raise ParcelriskError(
            f"model {mv.name!r} version {mv.version} (run {mv.run_id}): {BUNDLE_ARTIFACT}/"
            f"{BUNDLE_FILE} is not the one registered with the version (SHA-256 "
            f"{actual[:12]}, registered {str(registered)[:12]}): the artifacts were changed after "
            "training; a version's files are never rewritten, so it is refused (train again)"
        )


def _register_version(model_uri: str, model_name: str, tags: dict[str, str]) -> str:
    """Create the model version of a run whose artifacts are all logged, with its tags; its number.

    The last step of ``log_training``, on purpose: a version is what ``promote`` and the
    service pick up, and registered first (as ``log_model(registered_model_name=...)`` does)
    a train killed or out of disk space while logging left a version whose ``bundle/`` or
    ``entity_state/`` was missing or partial. Now such a train leaves at most a run with no
    version. The tags come with the creation so no version is ever seen without them.
    """
    import mlflow

    return str(mlflow.register_model(model_uri, model_name, tags=tags).version)


@contextlib.contextmanager
def _training_run() -> Iterator[ActiveRun]:
    """An MLflow run that ends FINISHED, or FAILED on any error, raising only that error.

    ``with mlflow.start_run()`` marks a failed run FAILED too, but when the store itself is
    what failed (a full disk) that write fails as well and chains its traceback onto the first
    (seven of them, ending in "database or disk is full"); the first error is the one to report.
    """
    import os
    import socket

    import mlflow

    _end_runs_of_dead_trainings(socket.gethostname())
    run = mlflow.start_run(tags={RUN_HOST_TAG: socket.gethostname(), RUN_PID_TAG: str(os.getpid())})
    try:
        yield run
    except BaseException:
        _end_run_as_failed()
        raise
    mlflow.end_run()


# Who logs a training run: a run left RUNNING by a training killed on this host (SIGKILL, a
# machine out of memory) is ended KILLED by the next one, not left "running" forever in the
# tracking UI (probe, 2026-12)
RUN_HOST_TAG = "parcelrisk.host"
RUN_PID_TAG = "parcelrisk.pid"


def _end_runs_of_dead_trainings(host: str) -> None:
    """Mark KILLED the RUNNING runs that a training on ``host``
    started and whose process is gone; never raise (a sweep, not the training's work)."""
    import os

    import mlflow

    try:
        client = mlflow.MlflowClient()
        runs = mlflow.search_runs(
            filter_string=f"attributes.status = 'RUNNING' and tags.`{RUN_HOST_TAG}` = '{host}'",
            search_all_experiments=True,
            max_results=100,
            output_format="list",
        )
        for run in runs:
            pid = run.data.tags.get(RUN_PID_TAG, "")
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # alive: another training at work
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # alive, another user's
            client.set_terminated(run.info.run_id, "KILLED")
            log.warning(
                "MLflow run %s was left RUNNING by a training that died (pid %s): marked KILLED",
                run.info.run_id,
                pid,
            )
    except Exception as exc:  # the sweep must never stop a training
        log.debug("sweep of dead trainings' runs skipped: %s", exc)


def _end_run_as_failed() -> None:
    """Mark the active run FAILED where the store still allows it; never raise."""
    import mlflow

    # MLflow's SQL store logs a failed write with its full traceback (the first error's
    # chained in) before it raises: here that failure is expected and said below in one line
    store_log = logging.getLogger("mlflow.store.db.utils")
    disabled = store_log.disabled
    store_log.disabled = True
    try:
        mlflow.end_run("FAILED")
    except Exception as exc:  # the store is full or gone too: the run stays RUNNING
        # the type only: a store's message can quote its URI, credentials and all
        log.warning("the MLflow run could not be marked FAILED (%s)", type(exc).__name__)
    finally:
        store_log.disabled = disabled


# --------------------------------------------------------------------------------------------
# resolving versions
# --------------------------------------------------------------------------------------------


def latest_version(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise ParcelriskError(f"no registered versions of model {name!r}: run `parcelrisk train`")
    return str(max(int(v.version) for v in versions))


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    mv = alias_model_version(client, name, alias)
    return None if mv is None else str(mv.version)


def alias_model_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The model version ``name@alias`` (its tags included); None when there is none.

    Only the registry's "not found" means none: any other failure (a server that refuses
    connections or answers 500, a timeout) raises. Read as "no champion", it made `promote`
    move the alias without the gate, recorded as the first model, and `monitor` tell the
    operator to train one (probe, 2026-12)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        not_found = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
            exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)
        )
        if not_found:
            return None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.error_code
        raise ParcelriskError(
            f"cannot read {name}@{alias} from the registry at {client.tracking_uri}: {first[:300]}"
        ) from None


def version_artifact_error(
    name: str, version: str, run_id: str, copy: Path, exc: Exception
) -> ParcelriskError:
    """``exc`` about a downloaded artifact, naming the version and the run's artifact instead
    of this worker's temporary copy (``/tmp/parcelrisk-model-.../load-1/entity_state``, which
    tells an operator nothing and is gone at the next load: probe 21), with what to do."""
    artifact = Path(copy).name
    said = str(exc).replace(str(copy), f"artifact {artifact}/ of run {run_id}")
    return ParcelriskError(
        f"model {name!r} version {version}: {said}: promote another version, or retrain "
        "(`parcelrisk train`) and promote the new one; keep this one if decisions were recorded "
        "with it (restore its artifacts to recompute them)"
    )


def load_version(
    client: MlflowClient, name: str, version: str, dst: Path, *, lane_tag: bool = True
) -> tuple[RiskModel, Path, dict[str, str]]:
    """Download one version's bundle and entity state into ``dst`` and check they belong together.

    ``lane_tag``: put in force the thresholds its ``lane_thresholds`` tag names (``parcelrisk
    lanes set``) instead of the bundle's. An unreadable tag (edited by hand: ``lanes set``
    writes only what it has recorded) puts in force the last version recorded on the run, with
    an error in the log: an analyst chose it, the running workers keep serving it, and a worker
    (re)started meanwhile must not stay down over a tag; with no record either, the version is
    refused. An auditor's load passes False: a recorded decision names its own thresholds
    version (``models.lane_versions.resolve_thresholds``).
    """
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        raise ParcelriskError(f"model {name!r} version {version} not found: {exc}") from exc
    return load_model_version(client, mv, dst, lane_tag=lane_tag)


def load_recorded_run(
    client: MlflowClient, name: str, version: str, run_id: str, bundle_sha256: str, dst: Path
) -> tuple[RiskModel, Path, dict[str, str]]:
    """The model a decision recorded (its run and ``bundle.json`` SHA-256, under the decision's
    MAC), loaded from that run whatever the registry says today: a version deleted in a
    registry clean-up, or its name given to another run, still explains its decisions. The
    recorded digest stands where the registry's tag would, so only that very bundle loads."""
    from types import SimpleNamespace

    if not (run_id and bundle_sha256):
        raise ParcelriskError(
            f"model {name!r} version {version}: the decision recorded no run and bundle digest"
        )
    recorded = SimpleNamespace(
        name=name, version=version, run_id=run_id, tags={BUNDLE_DIGEST_TAG: bundle_sha256}
    )
    return load_model_version(client, recorded, dst, lane_tag=False)


def load_model_version(
    client: MlflowClient, mv: Any, dst: Path, *, lane_tag: bool = True
) -> tuple[RiskModel, Path, dict[str, str]]:
    """``load_version`` of a registry entry already read (``mv``: name, version, run_id,
    tags)."""
    from mlflow.exceptions import MlflowException

    name, version = mv.name, mv.version
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for artifact in (BUNDLE_ARTIFACT, ENTITY_STATE_ARTIFACT):
        target = dst / artifact
        if target.exists():
            shutil.rmtree(target)
        try:
            paths[artifact] = Path(client.download_artifacts(mv.run_id, artifact, str(dst)))
        except (MlflowException, OSError) as exc:
            raise ParcelriskError(
                f"model {name!r} version {version} (run {mv.run_id}): artifact {artifact}/ "
                f"missing ({_first_line(exc)}){_looked_in(client, mv.run_id)}: "
                f"{INTERRUPTED_TRAINING}"
            ) from exc
        if not paths[artifact].is_dir() or not any(paths[artifact].iterdir()):
            raise ParcelriskError(
                f"model {name!r} version {version} (run {mv.run_id}): artifact {artifact}/ is "
                f"empty: {INTERRUPTED_TRAINING}"
            )
    _check_registered_bundle(mv, paths[BUNDLE_ARTIFACT])
    try:
        model = RiskModel.load(paths[BUNDLE_ARTIFACT])
    except ParcelriskError as exc:  # a corrupt or edited file: say which version holds it
        raise ParcelriskError(
            f"model {name!r} version {version} (run {mv.run_id}): {exc}"
        ) from None
    expected = model.metadata.get("entity_state_fingerprint")
    try:
        actual = entity_state_fingerprint(paths[ENTITY_STATE_ARTIFACT])
    except ParcelriskError as exc:  # named as the registry holds it, not as this copy
        raise version_artifact_error(
            name, version, mv.run_id, paths[ENTITY_STATE_ARTIFACT], exc
        ) from None
    if expected != actual:
        raise ParcelriskError(
            f"model {name!r} version {version}: entity state fingerprint {actual} does not match "
            f"the model's {expected}; the snapshot and the model were not built together"
        )
    # The model may use a subset of the features (constant ones dropped at training); the
    # snapshot computes them all, with the full manifest recorded in the model's metadata.
    state_manifest = json.loads((paths[ENTITY_STATE_ARTIFACT] / ENTITY_STATE_META).read_text()).get(
        "manifest_fingerprint"
    )
    model_manifest = model.metadata.get("feature_manifest_fingerprint", model.manifest.fingerprint)
    if state_manifest is not None and state_manifest != model_manifest:
        raise ParcelriskError(
            f"model {name!r} version {version}: the entity state's feature manifest "
            f"{state_manifest} is not the one the model's features were built with "
            f"({model_manifest})"
        )
    if lane_tag:
        from models.lane_versions import check_applies, last_recorded_thresholds, tagged_thresholds

        try:
            tagged = tagged_thresholds(dict(mv.tags or {}))
            if tagged is not None:
                check_applies(tagged, model.thresholds)
        except ParcelriskError as exc:
            tagged = last_recorded_thresholds(client, mv.run_id, model.thresholds)
            if tagged is None:
                raise ParcelriskError(
                    f"model {name!r} version {version}: {exc} (set them again: "
                    "`parcelrisk lanes set`)"
                ) from None
            log.error(
                "model %s v%s: %s; the last thresholds recorded on its run, %s, go in force "
                "(set them again: `parcelrisk lanes set`)",
                name,
                version,
                exc,
                tagged.version,
            )
        if tagged is not None and tagged.version != model.thresholds.version:
            log.info(
                "model %s v%s: lane thresholds %s in force (set after training; bundle's %s)",
                name,
                version,
                tagged.version,
                model.thresholds.version,
            )
            model.thresholds = tagged
    info = {
        "name": name,
        "version": str(version),
        "run_id": mv.run_id,
        # what a decision records of its model (the bundle's files are pinned by their digests
        # in bundle.json): the registry's name and version can later be given to another run
        "bundle_sha256": _sha256(paths[BUNDLE_ARTIFACT] / BUNDLE_FILE),
    }
    return model, paths[ENTITY_STATE_ARTIFACT], info


def _looked_in(client: MlflowClient, run_id: str) -> str:
    """Where the tracking store says a run's artifacts are: a tracking directory moved or
    copied elsewhere keeps the old absolute path there (probe 30: "missing", and no word of
    where it looked)."""
    try:
        uri = client.get_run(run_id).info.artifact_uri
    except Exception:  # the message is a courtesy: the error is the missing file
        return ""
    return (
        f"; looked in {uri} (a tracking store moved or copied keeps its runs' old artifact "
        "paths: put the artifacts back there)"
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_champion(
    tracking_uri: str | None,
    name: str = DEFAULT_MODEL_NAME,
    alias: str = CHAMPION_ALIAS,
    dst: Path | None = None,
) -> tuple[RiskModel, Path, dict[str, str]]:
    """The model behind ``name@alias``, its entity-state snapshot dir and {name, version, run_id,
    bundle_sha256}.

    Downloads into ``dst`` (a fresh temporary directory if None). Raises ``ParcelriskError`` if
    the alias, the bundle or the entity state is missing, or their fingerprints disagree.
    """
    client = registry_client(tracking_uri)
    version = alias_version(client, name, alias)
    if version is None:
        raise ParcelriskError(
            f"no model {name!r}@{alias} in the registry at {resolve_tracking_uri(tracking_uri)}: "
            f"train one (`parcelrisk train`) and promote it (`parcelrisk promote`)"
        )
    dst = Path(tempfile.mkdtemp(prefix="parcelrisk-champion-")) if dst is None else Path(dst)
    model, state_dir, info = load_version(client, name, version, dst)
    return model, state_dir, {**info, "alias": alias}
