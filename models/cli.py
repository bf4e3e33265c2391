"""CLI commands of the learning side: ``parcelrisk train`` and ``parcelrisk promote``.

Thin edges: ``run_training`` and ``run_promotion`` read files, call the pure core
(``models.train``, ``models.registry.decide_promotion``) and log to MLflow; the commands parse
options and print. Heavy imports (pandas, LightGBM, MLflow) happen inside the functions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import typer

from features.errors import ParcelriskError

log = logging.getLogger(__name__)

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_METRICS = Path("metrics/train.json")
FEATURES_FILE = "features.parquet"
SUMMARY_SCORERS = ("model", "logistic", "rules", "random", "oracle")
SUMMARY_METRICS = ("precision_at_5", "recall_at_5", "revenue_at_5", "roc_auc", "pr_auc", "ece")


def read_params(path: Path) -> dict[str, Any]:
    import yaml

    if not Path(path).exists():
        raise ParcelriskError(f"params file not found: {path}")
    return yaml.safe_load(Path(path).read_text()) or {}


def _read_features(features_dir: Path):
    import pandas as pd

    from features.pipeline.manifest import FeatureManifest

    path = Path(features_dir) / FEATURES_FILE
    if not path.exists():
        raise ParcelriskError(
            f"{path} not found (run `parcelrisk features build --out {features_dir}`)"
        )
    return pd.read_parquet(path), FeatureManifest.read(features_dir), path


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
    params_path: Path = DEFAULT_PARAMS,
    tracking_uri: str | None = None,
    metrics_out: Path | None = DEFAULT_METRICS,
    no_validate: bool = False,
) -> dict[str, Any]:
    """Train on ``features_dir``, log the run and register the version; return the headline metrics.

    The features must come from declarations that passed the validation gate (their
    ``source.json`` says so); ``no_validate`` trains on others anyway, recorded in MLflow.
    """
    from features.intake.contract import atomic_write
    from models.registry import (
        PromoteParams,
        entity_state_fingerprint,
        fingerprint_file,
        log_training,
    )
    from models.train import TrainParams, train_models

    params = read_params(params_path)
    train_params = TrainParams.from_dict(params.get("train", {}))
    promote_params = PromoteParams.from_dict(params.get("promote", {}))
    features_dir = Path(features_dir)
    state_fp = entity_state_fingerprint(features_dir / "entity_state")  # fail before training
    gate = _gate_of(features_dir, no_validate)
    frame, manifest, features_path = _read_features(features_dir)
    truth = _read_truth(ground_truth_path)
    result = train_models(frame, manifest, train_params, truth)
    result.model.metadata.update(
        {
            "data_fingerprint": fingerprint_file(features_path),
            "entity_state_fingerprint": state_fp,
            "gate": gate,
        }
    )
    logged = log_training(
        result,
        features_dir=features_dir,
        params=params,
        tracking_uri=tracking_uri,
        model_name=promote_params.model_name,
        ground_truth_path=ground_truth_path,
    )
    summary = {
        **result.headline,
        "info.fit_seconds": result.info["fit_seconds"],
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
    for evaluation in ("test_all", "test_random"):
        rows = [
            s
            for s in SUMMARY_SCORERS
            if any(f"{evaluation}.{s}.{m}" in metrics for m in SUMMARY_METRICS)
        ]
        if not rows:
            continue
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
    for pattern, why in (info.get("not_applicable") or {}).items():
        lines.append(f"n/a {pattern}: {why}")
    return "\n".join(lines)


def _number(value: float | None, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


def run_promotion(
    *,
    version: str | None = None,
    features_dir: Path | None = None,
    ground_truth_path: Path | None = None,
    params_path: Path = DEFAULT_PARAMS,
    tracking_uri: str | None = None,
    force: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    """Score champion and challenger on the challenger's test period and move the alias if due."""
    import pandas as pd

    from models.evaluation import attach_truth, evaluate_holdout, score_model
    from models.registry import (
        Decision,
        PromoteParams,
        alias_version,
        decide_promotion,
        latest_version,
        load_version,
        record_decision,
        registry_client,
    )
    from models.split import SplitBoundaries

    if force and not (reason and reason.strip()):
        raise ParcelriskError(
            "--force needs --reason TEXT: the override is recorded on the version"
        )
    params = PromoteParams.from_dict(read_params(params_path).get("promote", {}))
    name = params.model_name
    client = registry_client(tracking_uri)
    version = str(version) if version is not None else latest_version(client, name)
    champion = alias_version(client, name, "champion")
    result: dict[str, Any] = {
        "model_name": name,
        "challenger": version,
        "champion_before": champion,
    }
    if champion is None:
        decision = Decision(True, ["first registered model: becomes champion"], "")
        record_decision(client, name, version, decision, champion_before=None, outcome="first")
        return {**result, "outcome": "first", "promote": True, "reasons": decision.reasons}
    if champion == version:
        return {
            **result,
            "outcome": "unchanged",
            "promote": False,
            "reasons": [f"version {version} is already the champion"],
        }

    with tempfile.TemporaryDirectory(prefix="parcelrisk-promote-") as tmp:
        challenger_model, _, _ = load_version(client, name, version, Path(tmp) / "challenger")
        champion_model, _, _ = load_version(client, name, champion, Path(tmp) / "champion")
    tags = client.get_model_version(name, version).tags
    features_dir = Path(features_dir or tags.get("features_dir", ""))
    if not (features_dir / FEATURES_FILE).exists():
        raise ParcelriskError(
            f"holdout features not found in {features_dir!s}: pass --features DIR"
        )
    frame, _, _ = _read_features(features_dir)
    split = challenger_model.metadata.get("split")
    if not split:
        raise ParcelriskError(f"version {version} records no split: cannot find its test period")
    test_start = SplitBoundaries.from_dict(split).test_start
    holdout = frame.loc[frame["declared_at"] >= test_start].reset_index(drop=True)
    if holdout.empty:
        raise ParcelriskError(
            f"no parcels in {features_dir} on or after the test start {test_start}"
        )
    truth_path = ground_truth_path or (
        Path(tags["ground_truth"]) if tags.get("ground_truth") else None
    )
    if truth_path is not None and Path(truth_path).exists():
        holdout = attach_truth(holdout, pd.read_parquet(truth_path))
    per_model = {}
    # Each version's evaluation model (its first pass if refit): a refit challenger has seen
    # the labels of its own test period, and a refit champion may have too.
    for role, model in (("champion", champion_model), ("challenger", challenger_model)):
        try:
            scores = score_model(model.evaluation_model(), holdout)
        except ParcelriskError as exc:
            raise ParcelriskError(f"cannot score the {role} on {features_dir}: {exc}") from exc
        per_model[role] = evaluate_holdout(holdout, {"model": scores})[0]
    decision = decide_promotion(per_model["champion"], per_model["challenger"], params)
    outcome = "promoted" if decision.promote else ("forced" if force else "refused")
    gate = {
        f"{role}.{k}": v
        for role, m in per_model.items()
        for k, v in m.items()
        if k.endswith(("precision_at_5", "revenue_at_5", ".ece", "roc_auc"))
    }
    record_decision(
        client,
        name,
        version,
        decision,
        champion_before=champion,
        outcome=outcome,
        force_reason=reason if outcome == "forced" else None,
        metrics=gate,
    )
    return {
        **result,
        "outcome": outcome,
        "promote": outcome in ("promoted", "forced"),
        "reasons": decision.reasons,
        "metrics": gate,
        "holdout_parcels": len(holdout),
    }


def train(
    features: Path = typer.Option(..., "--features", help="Directory of `features build` output."),
    ground_truth: Path | None = typer.Option(
        None, "--ground-truth", help="Generator ground truth: evaluate on all test parcels."
    ),
    params: Path = typer.Option(
        DEFAULT_PARAMS, "--params", help="params.yaml (sections train, promote)."
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
    ),
    metrics_out: Path = typer.Option(
        DEFAULT_METRICS, "--metrics-out", help="Headline metrics JSON (DVC)."
    ),
    no_validate: bool = typer.Option(
        False,
        "--no-validate",
        help="Train on features from unvalidated declarations (recorded in MLflow).",
    ),
) -> None:
    """Train the risk and revenue models, evaluate against baselines, log and register in MLflow."""
    out = run_training(
        features,
        ground_truth_path=ground_truth,
        params_path=params,
        tracking_uri=tracking_uri,
        metrics_out=metrics_out,
        no_validate=no_validate,
    )
    typer.echo(format_summary(out["all_metrics"], out["info"]))
    typer.echo(
        f"registered {out['model_name']} version {out['version']} (run {out['run_id']}), "
        f"fit {out['info']['fit_seconds']} s; metrics in {metrics_out}"
    )


def promote(
    version: str | None = typer.Option(
        None, "--version", help="Challenger version (default: latest)."
    ),
    features: Path | None = typer.Option(
        None, "--features", help="Features DIR holding the holdout (default: the challenger's)."
    ),
    ground_truth: Path | None = typer.Option(None, "--ground-truth", help="Ground truth file."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml (section promote)."),
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
    _quiet_downloads()
    out = run_promotion(
        version=version,
        features_dir=features,
        ground_truth_path=ground_truth,
        params_path=params,
        tracking_uri=tracking_uri,
        force=force,
        reason=reason,
    )
    if report is not None:
        from features.intake.contract import atomic_write

        payload = {
            k: out.get(k) for k in ("model_name", "challenger", "champion_before", "outcome")
        }
        payload.update(
            promoted=int(out["promote"]),
            reasons=out["reasons"],
            **{f"gate.{k}": v for k, v in out.get("metrics", {}).items()},
        )
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
