"""CLI commands of the learning side: ``parcelrisk train`` and ``parcelrisk promote``.

Thin edges: ``run_training`` and ``run_promotion`` read files, call the core
(``models.train.train_models``, ``models.promotion.promote_version``) and log to MLflow; the
commands parse options, print and set the exit code. Heavy imports (pandas, LightGBM, MLflow)
happen inside the functions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import typer

from features.cli import params_option, scheduler_option, settings_from, step_progress
from features.errors import ParcelriskError
from features.params import Settings, TrainParams

log = logging.getLogger(__name__)

# What dvc.yaml's train stage writes (`--metrics-out`): a plain `parcelrisk train` writes no
# file, so an analyst's small run never overwrites the pipeline's metrics (a README walkthrough
# found `dvc metrics show` reporting a 20k-parcel run beside the 300k demo's features).
DEFAULT_METRICS = Path("metrics/train.json")
# ``lanes``: the model ranked as the lanes fill, by priority (probe 36: ``model`` ranks revenue
# by expected revenue, and reported 0.76 revenue@1% where the red lane, by risk, caught 2%)
SUMMARY_SCORERS = ("model", "lanes", "logistic", "rules", "random", "oracle")
SUMMARY_METRICS = ("precision_at_5", "recall_at_5", "revenue_at_5", "roc_auc", "pr_auc", "ece")
# how a tracking store says it ran out of space (SQLite; PostgreSQL quotes the system's error)
STORE_FULL_MESSAGES = ("database or disk is full", "No space left on device")


def _read_features(features_dir: Path, params: TrainParams):
    """The rows of the feature frame training needs (``models.training_rows``), its manifest
    and its path: never the whole file, so the history may be larger than this process."""
    from features.pipeline.build import FEATURES_FILE
    from features.pipeline.manifest import FeatureManifest
    from models.training_rows import read_training_rows

    path = Path(features_dir) / FEATURES_FILE
    if not path.exists():
        raise ParcelriskError(
            f"{path} not found (run `parcelrisk features build --out {features_dir}`)"
        )
    manifest = FeatureManifest.read(features_dir)
    rows = read_training_rows(path, params.split, refit=params.refit, seed=params.seed)
    return rows, manifest, path


def _read_truth(path: Path | None):
    import pandas as pd

    if path is None:
        return None
    if not Path(path).exists():
        raise ParcelriskError(f"ground truth file not found: {path}")
    return pd.read_parquet(path)


def run_training(
    features_dir: Path,
    *,
    ground_truth_path: Path | None = None,
    settings: Settings,
    tracking_uri: str | None = None,
    metrics_out: Path | None = None,
    no_validate: bool = False,
    progress: bool = False,
    engine: str = "pandas",
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Train on ``features_dir``, log the run and register the version; return the headline metrics.

    The features must come from declarations that passed the validation gate (their
    ``source.json`` says so); ``no_validate`` trains on others anyway, recorded in MLflow.
    ``progress`` shows a bar of the steps on stderr. ``engine``: where the boosters are fitted,
    "pandas" (this process) or "dask" (on the cluster at ``scheduler``, default a LocalCluster
    of two worker processes); the run records which (``train.engine``, ``train.scheduler``).
    """
    from features.intake.io import atomic_write
    from models.registry import (
        entity_state_fingerprint,
        fingerprint_file,
        log_training,
        require_writable_sqlite_store,
    )
    from models.train import check_engine, train_models, training_steps

    check_engine(engine, scheduler)  # before reading anything
    require_writable_sqlite_store(tracking_uri)  # before the fit, not after it
    train_params, promote_params = settings.train, settings.promote
    features_dir = Path(features_dir)
    state_fp = entity_state_fingerprint(features_dir / "entity_state")  # fail before training
    gate = _gate_of(features_dir, no_validate)
    steps = ("read features", *training_steps(train_params), "log to MLflow")
    with step_progress(steps, enabled=progress) as step:
        step("read features")
        rows, manifest, features_path = _read_features(features_dir, train_params)
        truth = _read_truth(ground_truth_path)
        result = train_models(
            rows,
            manifest,
            train_params,
            truth,
            progress=step,
            aeo_discount=settings.serve.aeo_risk_discount,
            engine=engine,
            scheduler=scheduler,
        )
        result.model.metadata.update(
            {
                "data_fingerprint": fingerprint_file(features_path),
                "entity_state_fingerprint": state_fp,
                "gate": gate,
            }
        )
        step("log to MLflow")
        params = settings.model_dump(mode="json", by_alias=True, exclude_none=True)
        # how the boosters were fitted; of a cluster, only how it was found (an address can
        # name internal hosts)
        params["train"]["engine"] = engine
        if engine == "dask":
            params["train"]["scheduler"] = "address" if scheduler else "local_cluster"
        try:
            logged = log_training(
                result,
                features_dir=features_dir,
                params=params,
                tracking_uri=tracking_uri,
                model_name=promote_params.model_name,
                ground_truth_path=ground_truth_path,
            )
        except Exception as exc:  # a full store arrives as MLflow's, SQLAlchemy's or sqlite3's
            message = logging_failure_message(exc)
            if message is None:  # left as it is to the CLI's entry point (MLflow's: one line)
                raise
            raise ParcelriskError(message) from None
    # The file DVC tracks holds what the run learnt, not how long it took: a wall time made
    # its hash, and so dvc.lock, change on every rerun of an unchanged pipeline. The fit time
    # is printed and kept in the MLflow run (train_info.json).
    summary = {
        **result.headline,
        "info.labelled": result.info["labelled"],
        "info.test_parcels": result.info["test_parcels"],
    }
    if metrics_out is not None:
        text = json.dumps(summary, indent=1, sort_keys=True, default=float)
        atomic_write(Path(metrics_out), lambda tmp: tmp.write_text(text))
    return {
        "metrics": summary,
        "all_metrics": result.metrics,
        "model_name": logged.name,
        "version": logged.version,
        "run_id": logged.run_id,
        "info": result.info,
    }


def logging_failure_message(exc: BaseException) -> str | None:
    """The one line a ``train`` ends with when logging its run to MLflow ran out of space or
    met another disk error; None for any other error.

    It comes after minutes of fitting, so it says what was lost (no version: ``log_training``
    registers one only once every artifact is logged) and what to do. A full SQLite store
    reaches here as an MLflow error whose first line is SQLAlchemy's "raised as a result of
    Query-invoked autoflush" (the line the CLI's entry point would print, saying nothing of
    space), or, while MLflow creates its tables, as SQLAlchemy's own error (a traceback there).
    """
    import errno

    # an OSError about no path, not ENOSPC, is a fault: the entry point keeps its traceback
    if isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or exc.filename is not None):
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        reason = "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror
        what = f"{reason or type(exc).__name__}" + (f" ({paths})" if paths else "")
    elif any(full in str(exc) for full in STORE_FULL_MESSAGES):
        what = "the MLflow tracking store is full (no space left on device)"
    else:
        return None
    return (
        f"{what} while logging the training run to MLflow: no model version was registered, "
        "the run is marked FAILED where the store still allowed it; free space (or fix the "
        "cause) and run `parcelrisk train` again"
    )


def _gate_of(features_dir: Path, no_validate: bool) -> dict[str, Any]:
    """How the declarations behind ``features_dir`` passed the validation gate; refuse any that
    did not, unless ``no_validate`` (then say so in the record)."""
    from features.pipeline.build import SOURCE_FILE

    path = Path(features_dir) / SOURCE_FILE
    source: dict[str, Any] = {}
    if path.exists():
        try:
            source = json.loads(path.read_text())
        except ValueError as exc:
            raise ParcelriskError(f"{path} is unreadable: {exc}") from exc
    status = source.get("gate", "unknown")
    if status != "passed" and not no_validate:
        why = (
            "were built with --no-validate"
            if status == "skipped"
            else f"carry no record of the validation gate ({path.name} missing)"
        )
        raise ParcelriskError(
            f"features in {features_dir} {why}: rebuild them from validated declarations "
            "(`parcelrisk features build`), or pass --no-validate to train on them anyway"
        )
    if no_validate:
        log.warning("train --no-validate: training on features whose gate status is %r", status)
    return {
        "declarations": status,
        "how": source.get("gate_how", "unknown"),
        "source_fingerprint": source.get("source_fingerprint"),
        "train_no_validate": no_validate,
    }


def format_summary(metrics: dict[str, float], info: dict[str, Any] | None = None) -> str:
    """A plain-text table of the headline metrics per evaluation and scorer.

    A metric that could not be computed prints ``n/a``; with the training ``info``, the summary
    says which model the metrics describe and why the missing ones are not applicable.
    """
    info = info or {}
    lines = []
    if info.get("evaluated_model"):
        lines.append(f"held-out metrics of the {info['evaluated_model']}")
    if info.get("rankings"):
        lines.append(f"ranked by: {info['rankings']}")
    for evaluation in ("test_all", "test_random"):
        rows = [
            s
            for s in SUMMARY_SCORERS
            if any(f"{evaluation}.{s}.{m}" in metrics for m in SUMMARY_METRICS)
        ]
        if not rows:
            continue
        if evaluation == "test_random" and "test_random.parcels" in metrics:
            lines.append(_unbiased_sample_said(metrics))
        lines.append(f"{evaluation}:  " + " ".join(f"{m:>15}" for m in SUMMARY_METRICS))
        for scorer in rows:
            values = [_number(metrics.get(f"{evaluation}.{scorer}.{m}")) for m in SUMMARY_METRICS]
            lines.append(f"  {scorer:<10} " + " ".join(f"{v:>15}" for v in values))
        legacy = {
            k.split(".", 2)[2]: v
            for k, v in metrics.items()
            if k.startswith(f"{evaluation}.legacy.")
        }
        if legacy:
            lines.append(
                "  legacy     " + ", ".join(f"{k}={_number(v)}" for k, v in sorted(legacy.items()))
            )
        ratio = {
            k.split(".", 2)[2]: v
            for k, v in metrics.items()
            if k.startswith(f"{evaluation}.ratio.")
        }
        if ratio:
            lines.append(
                "  model/oracle "
                + ", ".join(
                    f"{k}={_number(v, 3)}"
                    for k, v in sorted(ratio.items())
                    if "_at_5" in k or "_at_1" in k
                )
            )
    inspected = [s for s in SUMMARY_SCORERS if f"test_inspected.{s}.roc_auc" in metrics]
    if inspected:
        lines.append(
            f"test_inspected: the {int(metrics.get('test_inspected.parcels', 0))} inspected "
            f"parcels of the test period ({int(metrics.get('test_inspected.illicit', 0))} "
            "illicit), chosen by targeting: biased; compares scorers, not a rate to expect"
        )
        lines.append("                 " + " ".join(f"{m:>15}" for m in ("roc_auc", "pr_auc")))
        for scorer in inspected:
            values = [
                _number(metrics.get(f"test_inspected.{scorer}.{m}")) for m in ("roc_auc", "pr_auc")
            ]
            lines.append(f"  {scorer:<14} " + " ".join(f"{v:>15}" for v in values))
    census = info.get("census_labelled") or {}
    if census.get("history"):
        lines.append(
            "census labels (selection_reason 'census', or a day every parcel of which was "
            "inspected): "
            + ", ".join(
                f"{part} {census.get(part, 0):,}" for part in ("train", "validation", "test")
            )
            + " (unbiased: calibration and test_random use them; not the random quota)"
        )
    for pattern, why in (info.get("not_applicable") or {}).items():
        lines.append(f"n/a {pattern}: {why}")
    return "\n".join(lines)


def _unbiased_sample_said(metrics: dict[str, float]) -> str:
    """What the test_random rows were measured on: how many parcels, whose labels."""
    parcels, census = metrics["test_random.parcels"], metrics.get("test_random.census_parcels", 0)
    return (
        f"test_random is measured on {int(parcels):,} unbiased parcels "
        f"({int(metrics.get('test_random.illicit', 0)):,} illicit): "
        f"{int(parcels - census):,} random exploration, {int(census):,} census"
    )


def _number(value: float | None, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


def run_promotion(
    *,
    version: str | None = None,
    features_dir: Path | None = None,
    champion_features_dir: Path | None = None,
    ground_truth_path: Path | None = None,
    settings: Settings,
    tracking_uri: str | None = None,
    force: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    """Read the promote params and the registry, then run the gate (``models.promotion``)."""
    from models.promotion import promote_version, promotion_lock
    from models.registry import registry_client, require_tracking_store

    uri = require_tracking_store(tracking_uri)  # never a new, empty store
    with promotion_lock(uri):
        return promote_version(
            registry_client(uri),
            settings.promote,
            version=version,
            features_dir=features_dir,
            champion_features_dir=champion_features_dir,
            ground_truth_path=ground_truth_path,
            force=force,
            reason=reason,
        )


def train(
    features: Path = typer.Option(..., "--features", help="Directory of `features build` output."),
    ground_truth: Path | None = typer.Option(
        None, "--ground-truth", help="Generator ground truth: evaluate on all test parcels."
    ),
    params: Path | None = params_option("sections train, promote"),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
    ),
    metrics_out: Path | None = typer.Option(
        None,
        "--metrics-out",
        help=f"Also write the headline metrics as JSON here (the demo's DVC pipeline gives "
        f"{DEFAULT_METRICS}); they are in the MLflow run either way.",
    ),
    no_validate: bool = typer.Option(
        False,
        "--no-validate",
        help="Train on features from unvalidated declarations (recorded in MLflow).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar on stderr."),
    engine: str = typer.Option(
        "pandas",
        "--engine",
        help="pandas (boosters fitted in this process) or dask (fitted by lightgbm.dask on a "
        "Dask cluster; the same artifacts, metrics and registration).",
    ),
    scheduler: str | None = scheduler_option(),
) -> None:
    """Train the risk and revenue models, evaluate against baselines, log and register in MLflow."""
    if scheduler is not None and engine != "dask":
        raise typer.BadParameter("--scheduler needs --engine dask", param_hint="--scheduler")
    out = run_training(
        features,
        ground_truth_path=ground_truth,
        settings=settings_from(params),
        tracking_uri=tracking_uri,
        metrics_out=metrics_out,
        no_validate=no_validate,
        # a bar in a log file or a pipe is noise: only a person at a terminal sees one
        progress=not quiet and sys.stderr.isatty(),
        engine=engine,
        scheduler=scheduler,
    )
    typer.echo(format_summary(out["all_metrics"], out["info"]))
    typer.echo(
        f"registered {out['model_name']} version {out['version']} (run {out['run_id']}), "
        f"fit {out['info']['fit_seconds']} s; metrics in "
        + (f"{metrics_out} and " if metrics_out is not None else "")
        + "the MLflow run"
    )


def promote(
    version: str | None = typer.Option(
        None, "--version", help="Challenger version (default: latest)."
    ),
    features: Path | None = typer.Option(
        None, "--features", help="Features DIR holding the holdout (default: the challenger's)."
    ),
    champion_features: Path | None = typer.Option(
        None,
        "--champion-features",
        help="The same history built with the champion's feature params (when they changed): "
        "the champion is scored there.",
    ),
    ground_truth: Path | None = typer.Option(None, "--ground-truth", help="Ground truth file."),
    params: Path | None = params_option("section promote"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    force: bool = typer.Option(False, "--force", help="Promote even if the gate refuses."),
    reason: str | None = typer.Option(
        None, "--reason", help="Why --force: recorded on the version."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write the decision as JSON here (DVC metrics)."
    ),
) -> None:
    """Champion/challenger gate: move alias `champion` only if the challenger beats the champion."""
    if reason is not None and not force:
        # recorded only with an override: given alone it was dropped unsaid (probe, 2026-12)
        raise typer.BadParameter(
            "--reason is recorded with --force (why the gate is overridden); a promotion the "
            "gate decides records its own reasons",
            param_hint="--reason",
        )
    _quiet_downloads()
    out = run_promotion(
        version=version,
        features_dir=features,
        champion_features_dir=champion_features,
        ground_truth_path=ground_truth,
        settings=settings_from(params),
        tracking_uri=tracking_uri,
        force=force,
        reason=reason,
    )
    if report is not None:
        from features.intake.io import atomic_write

        payload = {
            k: out.get(k)
            for k in ("model_name", "challenger", "champion_before", "outcome", "comparison")
        }
        if out.get("outcome") == "forced":
            payload["force_reason"] = reason
        payload.update(
            promoted=int(out["promote"]),
            reasons=out["reasons"],
            **{f"gate.{k}": v for k, v in out.get("metrics", {}).items()},
        )
        if out.get("lanes"):  # what the promotion did to the lane rates, as recorded
            payload["lanes"] = out["lanes"]
        text = json.dumps(payload, indent=1, default=str)
        atomic_write(Path(report), lambda tmp: tmp.write_text(text))
    for line in out["reasons"]:
        typer.echo(f"  {line}")
    typer.echo(
        f"{out['model_name']} version {out['challenger']}: {out['outcome']} "
        f"(champion before: {out['champion_before'] or 'none'})"
    )
    if out["outcome"] == "refused":
        raise typer.Exit(1)


def _quiet_downloads() -> None:
    # MLflow draws a progress bar per artifact download; in a CLI summary they are noise.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(promote)
