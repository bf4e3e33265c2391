"""Training: the LightGBM risk and revenue models, calibration, lane thresholds, baselines, metrics.

Pure core: ``train_models(features, manifest, params, ground_truth)`` takes the feature frame of
``features build`` and returns a ``TrainResult``; it reads and writes nothing. The CLI
(``models.cli``) and ``models.registry`` do the I/O and the MLflow logging.

Labels exist only for inspected parcels and past inspections were chosen by the legacy rules, so
the models are fitted on every labelled parcel but measured on the random-exploration parcels of
the test period (the unbiased sample an administration has) and, on generated data, against the
ground truth of every test parcel.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.contract import RANDOM_SELECTION
from features.errors import ParcelriskError
from features.manifest import FeatureManifest
from models import baselines
from models.bundle import Objective, RiskModel
from models.calibration import fit_isotonic
from models.metrics import (
    LEVELS,
    calibration_table,
    ranking_metrics,
    rates_by_group,
    selected_set_metrics,
    top_k,
)
from models.split import SplitBoundaries, split_boundaries
from models.thresholds import fit_lane_thresholds

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger(__name__)

MIN_REVENUE_EUR = 0.01  # gamma needs positive targets; an offence with no duty still counts
TRUTH_COLUMNS = ("declaration_id", "p_illicit", "illicit", "revenue_at_stake")
HEADLINE_METRICS = (
    "roc_auc",
    "pr_auc",
    "precision_at_5",
    "recall_at_5",
    "revenue_at_5",
    "precision_at_1",
    "revenue_at_1",
    "ece",
)
# Parameters of lgb.train under the sklearn-style names params.yaml uses.
_LGB_NAMES = {
    "num_leaves": "num_leaves",
    "max_depth": "max_depth",
    "learning_rate": "learning_rate",
    "min_child_samples": "min_data_in_leaf",
    "subsample": "bagging_fraction",
    "subsample_freq": "bagging_freq",
    "colsample_bytree": "feature_fraction",
    "reg_lambda": "lambda_l2",
    "num_threads": "num_threads",  # 0 = LightGBM's default (all cores)
}


@dataclass(frozen=True)
class TrainParams:
    """The ``train`` section of params.yaml."""

    split: dict[str, float] = field(
        default_factory=lambda: {"train": 0.6, "validation": 0.2, "test": 0.2}
    )
    objective: Objective = "risk"
    red_rate: float = 0.01
    yellow_rate: float = 0.04
    lightgbm: dict[str, Any] = field(default_factory=dict)
    seed: int = 7
    # Calibrate on the random-exploration parcels of the validation period when at least this
    # many with this many illicit exist (unbiased); otherwise on all labelled validation parcels.
    calibration_min_random: int = 300
    calibration_min_random_illicit: int = 15
    profile_strength: float = 20.0

    @classmethod
    def from_dict(cls, section: dict[str, Any]) -> TrainParams:
        section = dict(section or {})
        lanes = section.pop("lanes", {}) or {}
        calibration = section.pop("calibration", {}) or {}
        known = {
            "split",
            "objective",
            "lightgbm",
            "seed",
            "profile_strength",
        }
        unknown = set(section) - known
        if unknown:
            raise ParcelriskError(f"unknown key(s) in params train: {', '.join(sorted(unknown))}")
        out = cls(
            **section,
            red_rate=float(lanes.get("red_rate", 0.01)),
            yellow_rate=float(lanes.get("yellow_rate", 0.04)),
            calibration_min_random=int(calibration.get("min_random", 300)),
            calibration_min_random_illicit=int(calibration.get("min_random_illicit", 15)),
        )
        if out.objective not in ("risk", "revenue"):
            raise ParcelriskError(f"train.objective must be risk or revenue, got {out.objective!r}")
        return out

    def lgb_params(self, objective: str) -> dict[str, Any]:
        cfg = {"n_estimators": 1000, "early_stopping_rounds": 50, **self.lightgbm}
        out: dict[str, Any] = {
            "objective": objective,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 2,
            "verbose": -1,
        }
        for key, name in _LGB_NAMES.items():
            if key in cfg:
                out[name] = cfg[key]
        return out

    @property
    def n_estimators(self) -> int:
        return int(self.lightgbm.get("n_estimators", 1000))

    @property
    def early_stopping_rounds(self) -> int:
        return int(self.lightgbm.get("early_stopping_rounds", 50))


@dataclass
class TrainResult:
    model: RiskModel
    metrics: dict[str, float]  # flat: "<evaluation>.<scorer>.<metric>"
    boundaries: SplitBoundaries
    predictions: pd.DataFrame  # test period: ids, labels, truth, every scorer's scores
    tables: dict[str, pd.DataFrame]  # by-origin rates, calibration bins
    info: dict[str, Any]  # counts, iterations, timings
    test_matrix: np.ndarray  # model matrix of the test period, rows as in ``predictions``

    @property
    def headline(self) -> dict[str, float]:
        return headline_metrics(self.metrics)


def headline_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The few test metrics tracked by DVC: per evaluation and scorer, the HEADLINE_METRICS."""
    out = {}
    for key, value in metrics.items():
        parts = key.split(".")
        if len(parts) == 3 and (parts[2] in HEADLINE_METRICS or parts[1] in ("legacy", "ratio")):
            out[key] = value
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------------------------
# labels and fitting
# --------------------------------------------------------------------------------------------


def labelled_mask(frame: pd.DataFrame) -> np.ndarray:
    """Inspected parcels with a recorded outcome: the only ones with labels."""
    inspected = frame["inspected"].astype("boolean").fillna(False).to_numpy(bool)
    return inspected & frame["illicit"].notna().to_numpy()


def random_mask(frame: pd.DataFrame) -> np.ndarray:
    """Parcels inspected by the random exploration quota: the unbiased labels."""
    return (frame["selection_reason"].astype("str") == RANDOM_SELECTION).fillna(False).to_numpy(
        bool
    ) & labelled_mask(frame)


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame["illicit"].astype("boolean").fillna(False).to_numpy(dtype=np.float64)


def _fit_booster(
    params: TrainParams,
    objective: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    manifest: FeatureManifest,
) -> lgb.Booster:
    import lightgbm as lgb

    categorical = [manifest.names.index(n) for n in manifest.categorical_names]
    train_set = lgb.Dataset(
        X_train,
        y_train,
        feature_name=manifest.names,
        categorical_feature=categorical,
        free_raw_data=True,
    )
    valid_set = lgb.Dataset(X_valid, y_valid, reference=train_set)
    booster = lgb.train(
        params.lgb_params(objective),
        train_set,
        num_boost_round=params.n_estimators,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    # Keep only the trees up to the best iteration, so the in-memory model and the saved
    # bundle score identically whatever num_iteration a caller passes.
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ParcelriskError(f"{what} lacks column(s): {', '.join(missing)}")


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


def score_model(model: RiskModel, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Scores of a bundle on a feature frame: risk ranks risk, expected revenue ranks revenue."""
    scores = model.score(model.manifest.matrix(frame))
    value = scores["expected_revenue"] if model.revenue_booster is not None else scores["risk"]
    return {"risk": scores["risk"], "value": value, "prob": scores["risk"], **scores}


def attach_truth(frame: pd.DataFrame, ground_truth: pd.DataFrame) -> pd.DataFrame:
    """Frame rows with the generator's truth (``truth_*`` columns), in frame order."""
    _require_columns(ground_truth, TRUTH_COLUMNS, "ground truth")
    truth = ground_truth[list(TRUTH_COLUMNS)].drop_duplicates("declaration_id")
    merged = frame[["declaration_id"]].merge(
        truth.rename(columns={c: f"truth_{c}" for c in TRUTH_COLUMNS[1:]}),
        on="declaration_id",
        how="left",
        validate="many_to_one",
    )
    if merged["truth_p_illicit"].isna().any():
        missing = merged.loc[merged["truth_p_illicit"].isna(), "declaration_id"].head(3).tolist()
        raise ParcelriskError(
            f"ground truth lacks {int(merged['truth_p_illicit'].isna().sum())} test parcel(s), "
            f"e.g. {missing}"
        )
    out = frame.copy()
    for c in TRUTH_COLUMNS[1:]:
        out[f"truth_{c}"] = merged[f"truth_{c}"].to_numpy()
    if "revenue_if_illicit" in ground_truth.columns:
        lookup = ground_truth.drop_duplicates("declaration_id").set_index("declaration_id")
        out["truth_revenue_if_illicit"] = (
            lookup["revenue_if_illicit"].reindex(frame["declaration_id"]).to_numpy()
        )
    return out


def evaluate_holdout(
    holdout: pd.DataFrame,
    scores: dict[str, dict[str, np.ndarray]],
    levels: tuple[int, ...] = LEVELS,
) -> dict[str, float]:
    """Flat metrics of every scorer on one holdout period.

    ``holdout`` holds the labels (and ``truth_*`` columns when ground truth is known);
    ``scores[name]`` has ``risk`` and ``value`` (optionally ``prob``) aligned with its rows.
    ``test_random.*``: on the random-exploration parcels against their inspection results;
    ``test_all.*``: on all parcels against the truth, with the oracle and model/oracle ratios;
    ``*.legacy.*``: the legacy rules as recorded, and the model at the legacy selection rate.
    """
    metrics: dict[str, float] = {}
    rnd = random_mask(holdout)
    y_rnd = _labels(holdout)[rnd]
    rev_rnd = holdout["revenue_recovered"].to_numpy(np.float64, na_value=0.0)[rnd]
    for name, s in scores.items():
        result = ranking_metrics(
            s["risk"][rnd],
            y_rnd,
            rev_rnd,
            value=s["value"][rnd],
            prob=s["prob"][rnd] if s.get("prob") is not None else None,
            levels=levels,
        )
        metrics.update({f"test_random.{name}.{k}": v for k, v in result.items()})

    legacy = baselines.legacy_selection(holdout["selection_reason"])
    legacy_rate = float(legacy.mean())
    labelled = labelled_mask(holdout)
    y_all = _labels(holdout)
    rev_all = holdout["revenue_recovered"].to_numpy(np.float64, na_value=0.0)
    metrics["test_random.legacy.selection_rate"] = legacy_rate
    metrics["test_random.legacy.hit_rate"] = (
        float(y_all[legacy & labelled].mean()) if (legacy & labelled).any() else float("nan")
    )
    metrics["test_random.legacy.revenue_per_inspection"] = (
        float(rev_all[legacy].mean()) if legacy.any() else float("nan")
    )
    if "model" in scores and rnd.any() and legacy_rate > 0:
        top = _top_share(scores["model"]["risk"][rnd], legacy_rate)
        metrics["test_random.legacy.model_precision_at_legacy_rate"] = float(y_rnd[top].mean())

    if "truth_p_illicit" in holdout.columns:
        truth_y = holdout["truth_illicit"].astype("boolean").fillna(False).to_numpy(np.float64)
        truth_rev = holdout["truth_revenue_at_stake"].to_numpy(np.float64, na_value=0.0) * truth_y
        p = holdout["truth_p_illicit"].to_numpy(np.float64)
        # The fair revenue oracle is p x revenue-if-illicit. A truth file with only the realised
        # revenue_at_stake (0 on clean parcels) makes the oracle see the label: an upper bound.
        label_aware = "truth_revenue_if_illicit" not in holdout.columns
        stake = holdout[
            "truth_revenue_at_stake" if label_aware else "truth_revenue_if_illicit"
        ].to_numpy(np.float64, na_value=0.0)
        oracle = {"risk": p, "value": p * stake, "prob": p}
        metrics["test_all.oracle.revenue_label_aware"] = float(label_aware)
        for name, s in {**scores, "oracle": oracle}.items():
            result = ranking_metrics(
                s["risk"],
                truth_y,
                truth_rev,
                value=s["value"],
                prob=s.get("prob"),
                levels=levels,
            )
            metrics.update({f"test_all.{name}.{k}": v for k, v in result.items()})
        if "model" in scores:
            for key in [k for k in metrics if k.startswith("test_all.oracle.")]:
                metric = key.rsplit(".", 1)[1]
                if metric.split("_at_")[0] in ("precision", "recall", "revenue"):
                    ratio = metrics[f"test_all.model.{metric}"] / metrics[key]
                    metrics[f"test_all.ratio.{metric}"] = float(ratio) if metrics[key] else np.nan
        legacy_truth = selected_set_metrics(legacy, truth_y, truth_rev)
        metrics.update({f"test_all.legacy.{k}": v for k, v in legacy_truth.items()})
        if "model" in scores and legacy_rate > 0:
            top = _top_share(scores["model"]["risk"], legacy_rate)
            model_at = selected_set_metrics(top, truth_y, truth_rev)
            metrics["test_all.legacy.model_hit_rate_at_legacy_rate"] = model_at["hit_rate"]
            top_value = _top_share(scores["model"]["value"], legacy_rate)
            metrics["test_all.legacy.model_revenue_share_at_legacy_rate"] = selected_set_metrics(
                top_value, truth_y, truth_rev
            )["revenue_share"]
    return metrics


def _top_share(score: np.ndarray, share: float) -> np.ndarray:
    order = np.argsort(-np.asarray(score, np.float64), kind="stable")
    mask = np.zeros(len(order), dtype=bool)
    mask[order[: top_k(len(order), share)]] = True
    return mask


# --------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------


def train_models(
    features: pd.DataFrame,
    manifest: FeatureManifest,
    params: TrainParams,
    ground_truth: pd.DataFrame | None = None,
) -> TrainResult:
    """Fit the risk and revenue models, calibration, thresholds and baselines; evaluate all."""
    started = time.perf_counter()
    _require_columns(
        features,
        (
            "declaration_id",
            "declared_at",
            "inspected",
            "illicit",
            "revenue_recovered",
            "selection_reason",
        ),
        "feature frame",
    )
    frame = features.sort_values(
        ["declared_at", "declaration_id"], kind="stable", ignore_index=True
    )
    boundaries = split_boundaries(frame["declared_at"], params.split)
    parts = boundaries.masks(frame["declared_at"])
    labelled = labelled_mask(frame)
    y = _labels(frame)
    X = manifest.matrix(frame)
    fit_train, fit_valid = parts["train"] & labelled, parts["validation"] & labelled
    for part, mask in (("train", fit_train), ("validation", fit_valid)):
        n_pos = int(y[mask].sum())
        if mask.sum() < 20 or n_pos < 5 or n_pos == mask.sum():
            raise ParcelriskError(
                f"too few labels in the {part} period: {int(mask.sum())} inspected parcels, "
                f"{n_pos} illicit (need both classes; lengthen the history or move train.split)"
            )
    log.info(
        "split %s: labelled train %d, validation %d; test parcels %d",
        boundaries.to_dict(),
        fit_train.sum(),
        fit_valid.sum(),
        parts["test"].sum(),
    )

    risk_booster = _fit_booster(
        params, "binary", X[fit_train], y[fit_train], X[fit_valid], y[fit_valid], manifest
    )
    revenue_booster = None
    revenue = frame["revenue_recovered"].to_numpy(np.float64, na_value=np.nan)
    rev_train = fit_train & (y == 1) & np.isfinite(revenue)
    rev_valid = fit_valid & (y == 1) & np.isfinite(revenue)
    if rev_train.sum() >= 50 and rev_valid.sum() >= 10:
        # Gamma deviance with a log link estimates the mean revenue, which is what ranking by
        # expected revenue needs; a model of log revenue estimates the geometric mean and
        # under-ranks the heavy tail (fines, large parcels) that carries most of the money.
        revenue_booster = _fit_booster(
            params,
            "gamma",
            X[rev_train],
            np.maximum(revenue[rev_train], MIN_REVENUE_EUR),
            X[rev_valid],
            np.maximum(revenue[rev_valid], MIN_REVENUE_EUR),
            manifest,
        )
    else:
        log.warning("too few illicit parcels with revenue to fit the revenue model; skipping it")

    raw = risk_booster.predict(X, raw_score=True)
    rnd = random_mask(frame)
    cal_random = parts["validation"] & rnd
    if (
        cal_random.sum() >= params.calibration_min_random
        and y[cal_random].sum() >= params.calibration_min_random_illicit
    ):
        cal_mask, cal_sample = cal_random, "random"
    else:
        cal_mask, cal_sample = fit_valid, "labelled"
        log.warning(
            "only %d random-exploration parcels in validation: calibrating on all labelled "
            "validation parcels (probabilities then describe inspected parcels, biased upward)",
            cal_random.sum(),
        )
    calibration = fit_isotonic(raw[cal_mask], y[cal_mask])

    provisional = RiskModel(
        manifest=manifest,
        risk_booster=risk_booster,
        revenue_booster=revenue_booster,
        calibration=calibration,
        thresholds=fit_lane_thresholds(np.r_[0.0, 1.0], 0.5, 0.0, params.objective),
    )
    validation_priority = provisional.score(X[parts["validation"]])["priority"]
    thresholds = fit_lane_thresholds(
        validation_priority, params.red_rate, params.yellow_rate, params.objective
    )
    model = RiskModel(
        manifest=manifest,
        risk_booster=risk_booster,
        revenue_booster=revenue_booster,
        calibration=calibration,
        thresholds=thresholds,
        metadata={
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "split": boundaries.to_dict(),
            "objective": params.objective,
            "risk_best_iteration": risk_booster.current_iteration(),
            "revenue_best_iteration": revenue_booster.current_iteration()
            if revenue_booster is not None
            else None,
            "calibration_sample": cal_sample,
            "calibration_parcels": int(cal_mask.sum()),
            "labelled_train": int(fit_train.sum()),
            "labelled_validation": int(fit_valid.sum()),
            "manifest_fingerprint": manifest.fingerprint,
        },
    )
    fit_seconds = time.perf_counter() - started

    # baselines, fitted on the same training labels
    logistic = baselines.fit_logistic(
        X[fit_train],
        y[fit_train],
        params.seed,
        categorical=[manifest.names.index(n) for n in manifest.categorical_names],
    )
    test = parts["test"]
    holdout = frame.loc[test].reset_index(drop=True)
    X_test = X[test]
    model_scores = score_model(model, holdout)
    logistic_prob = logistic.predict_proba(X_test)[:, 1]
    scores: dict[str, dict[str, np.ndarray]] = {
        "model": model_scores,
        "logistic": {"risk": logistic_prob, "value": logistic_prob, "prob": logistic_prob},
    }
    if all(c in frame.columns for c in baselines.PROFILE_KEYS):
        profile = baselines.fit_risk_profile(
            frame.loc[fit_train], y[fit_train], params.profile_strength
        )
        rules = profile.score(holdout)
        scores["rules"] = {"risk": rules, "value": rules, "prob": rules}
    rand = baselines.random_scores(len(holdout), params.seed)
    scores["random"] = {"risk": rand, "value": rand, "prob": None}

    if ground_truth is not None:
        holdout = attach_truth(holdout, ground_truth)
    metrics = evaluate_holdout(holdout, scores)

    predictions = holdout.drop(columns=manifest.names)
    for name, s in scores.items():
        predictions[f"{name}_risk"] = s["risk"]
        predictions[f"{name}_value"] = s["value"]
    predictions["model_priority"] = model_scores["priority"]
    predictions["random_exploration"] = random_mask(holdout)

    tables = _tables(holdout, model_scores)
    info = {
        "parcels": len(frame),
        "labelled": int(labelled.sum()),
        "random_labelled": int(rnd.sum()),
        "test_parcels": int(test.sum()),
        "test_random_parcels": int(random_mask(holdout).sum()),
        "fit_seconds": round(fit_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        **{k: v for k, v in model.metadata.items() if k != "split"},
    }
    return TrainResult(model, metrics, boundaries, predictions, tables, info, X_test)


def _tables(holdout: pd.DataFrame, model_scores: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    tables: dict[str, pd.DataFrame] = {}
    rnd = random_mask(holdout)
    if rnd.any():
        tables["calibration_random"] = calibration_table(
            model_scores["prob"][rnd], _labels(holdout)[rnd]
        )
    if "origin_country" in holdout.columns:
        if "truth_illicit" in holdout.columns:
            truth_y = holdout["truth_illicit"].astype("boolean").fillna(False).to_numpy(float)
            tables["by_origin_all"] = rates_by_group(
                model_scores["risk"], truth_y, holdout["origin_country"], 0.05
            )
        if rnd.any():
            tables["by_origin_random"] = rates_by_group(
                model_scores["risk"][rnd],
                _labels(holdout)[rnd],
                holdout.loc[rnd, "origin_country"],
                0.05,
            )
    return tables
