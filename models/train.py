"""Training: the LightGBM risk and revenue models, calibration, lane thresholds, baselines, metrics.

Pure core: ``train_models(features, manifest, params, ground_truth)`` takes the feature frame of
``features build`` and returns a ``TrainResult``; it reads and writes nothing. The CLI
(``models.cli``) and ``models.registry`` do the I/O and the MLflow logging.

Labels exist only for inspected parcels and past inspections were chosen by the legacy rules, so
the models are fitted on every labelled parcel but measured on the unbiased sample of the test
period (``unbiased_mask``: the random-exploration parcels, or every parcel when the administration
inspects everything) and, on generated data, against the ground truth of every test parcel.

Two passes: the first fits on the train period (early stopping and calibration on validation) and
is the model the held-out metrics describe; with ``train.refit`` the deployed boosters are then
refit on all labelled parcels with the first pass's number of rounds, so the model in service has
learnt from the most recent labelled period too. The bundle keeps the first pass for the gate.

Metrics are finite numbers only: one that cannot be computed (no revenue data, no legacy rules,
one class) is left out and ``info["not_applicable"]`` says why.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.intake.contract import RANDOM_SELECTION
from features.pipeline.manifest import FeatureManifest
from models import baselines
from models.bundle import LaneThresholds, Objective, RiskModel
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
# Illicit parcels with a recorded revenue needed to fit (train period) and early-stop
# (validation) the revenue model; below this a gamma model of the heavy tail is mostly noise.
MIN_REVENUE_TRAIN = 50
MIN_REVENUE_VALIDATION = 10
TRUTH_COLUMNS = ("declaration_id", "p_illicit", "illicit", "revenue_at_stake")
_OUTCOME_COLUMNS = ("inspected", "illicit", "selection_reason")  # what unbiased_mask reads
HEADLINE_METRICS = (
    "roc_auc",
    "pr_auc",
    "precision_at_5",
    "recall_at_5",
    "revenue_at_5",
    "precision_at_1",
    "revenue_at_1",
    "precision_at_10",
    "revenue_at_10",
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
    # categorical splits (LightGBM's own names): smoothing and limits of the category search
    "cat_smooth": "cat_smooth",
    "cat_l2": "cat_l2",
    "max_cat_threshold": "max_cat_threshold",
    "min_data_per_group": "min_data_per_group",
    "max_cat_to_onehot": "max_cat_to_onehot",
}
# Keys of train.lightgbm that steer the boosting loop rather than LightGBM's parameters.
_LOOP_KEYS = ("n_estimators", "early_stopping_rounds")
UnbiasedSample = Literal["random", "census", "none"]


@dataclass(frozen=True)
class TrainParams:
    """The ``train`` section of params.yaml."""

    # fractions {train, validation, test} or dates {validation_start, test_start}
    split: dict[str, Any] = field(
        default_factory=lambda: {"train": 0.6, "validation": 0.2, "test": 0.2}
    )
    objective: Objective = "risk"
    # Refit the deployed boosters on all labelled parcels with the first pass's rounds.
    refit: bool = True
    red_rate: float = 0.01
    yellow_rate: float = 0.04
    lightgbm: dict[str, Any] = field(default_factory=dict)
    seed: int = 7
    # Calibrate on the unbiased parcels (random exploration, or a census) of the validation
    # period when at least this many with this many illicit exist; else on all labelled ones.
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
            "refit",
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
        return out

    def __post_init__(self) -> None:
        if self.objective not in ("risk", "revenue"):
            raise ParcelriskError(
                f"train.objective must be risk or revenue, got {self.objective!r}"
            )
        if not isinstance(self.refit, bool):
            raise ParcelriskError(f"train.refit must be true or false, got {self.refit!r}")
        # An unknown key would otherwise be dropped silently and the run look tuned when it is not.
        unknown = set(self.lightgbm or {}) - set(_LGB_NAMES) - set(_LOOP_KEYS)
        if unknown:
            raise ParcelriskError(
                f"unknown key(s) in params train.lightgbm: {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted([*_LGB_NAMES, *_LOOP_KEYS]))})"
            )

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
    # counts, iterations, timings, which model the metrics describe (evaluated_model), the
    # unbiased sample, the metrics left out and why (not_applicable), the model's metadata
    info: dict[str, Any]
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


def unbiased_mask(frame: pd.DataFrame) -> tuple[np.ndarray, UnbiasedSample]:
    """The parcels of ``frame`` whose labels describe all its traffic, and what kind they are.

    ``random``: the random-exploration parcels, when the frame has any; ``census``: every
    parcel, when every one was inspected with a result (nothing was selected, so nothing is
    biased); ``none``: no unbiased labels (legacy selection only).
    """
    random = random_mask(frame)
    if random.any():
        return random, "random"
    labelled = labelled_mask(frame)
    if len(frame) and labelled.all():
        return labelled, "census"
    return np.zeros(len(frame), dtype=bool), "none"


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame["illicit"].astype("boolean").fillna(False).to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class FittedBooster:
    booster: lgb.Booster
    rounds: int  # trees kept: the best iteration on validation
    hit_round_cap: bool  # early stopping never triggered: more rounds might still help


def _fit_booster(
    params: TrainParams,
    objective: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    manifest: FeatureManifest,
) -> FittedBooster:
    """First pass: fit with early stopping on the validation rows."""
    import lightgbm as lgb

    train_set = _dataset(X_train, y_train, manifest)
    valid_set = lgb.Dataset(X_valid, y_valid, reference=train_set)
    booster = lgb.train(
        params.lgb_params(objective),
        train_set,
        num_boost_round=params.n_estimators,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    hit_cap = booster.current_iteration() >= params.n_estimators
    best = booster.best_iteration or booster.current_iteration()
    # Keep only the trees up to the best iteration, so the in-memory model and the saved
    # bundle score identically whatever num_iteration a caller passes.
    kept = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return FittedBooster(kept, kept.current_iteration(), hit_cap)


def _refit_booster(
    params: TrainParams,
    objective: str,
    X: np.ndarray,
    y: np.ndarray,
    rounds: int,
    manifest: FeatureManifest,
) -> lgb.Booster:
    """Second pass: the same configuration on more rows, for the rounds the first pass chose.

    No early stopping: every labelled period is in the fit, none is left to stop on.
    """
    import lightgbm as lgb

    return lgb.train(params.lgb_params(objective), _dataset(X, y, manifest), num_boost_round=rounds)


def _dataset(X: np.ndarray, y: np.ndarray, manifest: FeatureManifest) -> lgb.Dataset:
    import lightgbm as lgb

    return lgb.Dataset(
        X,
        y,
        feature_name=manifest.names,
        categorical_feature=[manifest.names.index(n) for n in manifest.categorical_names],
        free_raw_data=True,
    )


def informative_features(X: np.ndarray, manifest: FeatureManifest) -> FeatureManifest:
    """The manifest without the features that are empty or constant on the rows of ``X``.

    A feature with one value and some missing rows is kept: missingness can be informative.
    """
    missing = np.isnan(X)
    empty = missing.all(axis=0)
    low = np.where(missing, np.inf, X).min(axis=0)
    high = np.where(missing, -np.inf, X).max(axis=0)
    constant = ~missing.any(axis=0) & (low == high)
    dropped = [n for n, d in zip(manifest.names, empty | constant, strict=True) if d]
    if len(dropped) == len(manifest.names):
        raise ParcelriskError(
            f"every feature is constant or empty on the {len(X)} labelled training parcels"
        )
    if not dropped:
        return manifest
    log.info("dropped %d constant or empty feature(s): %s", len(dropped), ", ".join(dropped))
    return manifest.select([n for n in manifest.names if n not in dropped])


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
    not_applicable: dict[str, str] | None = None,
) -> dict[str, float]:
    """Flat metrics of every scorer on one holdout period, finite numbers only.

    ``holdout`` holds the labels (and ``truth_*`` columns when ground truth is known);
    ``scores[name]`` has ``risk`` and ``value`` (optionally ``prob``) aligned with its rows.
    ``test_random.*``: on the unbiased parcels (``unbiased_mask``) against their inspection
    results; ``test_all.*``: on all parcels against the truth, with the oracle and model/oracle
    ratios; ``*.legacy.*``: the legacy rules as recorded, and the model at the legacy selection
    rate. A metric that cannot be computed is left out; if ``not_applicable`` is given, it
    receives ``{metric name pattern (fnmatch): why}``.
    """
    metrics: dict[str, float] = {}
    reasons: dict[str, str] = {}
    sample, kind = unbiased_mask(holdout)
    revenue = holdout["revenue_recovered"].to_numpy(np.float64, na_value=np.nan)
    has_revenue = np.isfinite(revenue)
    y_all = _labels(holdout)
    rev_all = np.nan_to_num(revenue, nan=0.0)
    y_rnd, rev_rnd = y_all[sample], rev_all[sample]
    if sample.any():
        if not has_revenue[sample].any():
            reasons["test_random.*.revenue_at_*"] = "no revenue data"
        for name, s in scores.items():
            result = ranking_metrics(
                s["risk"][sample],
                y_rnd,
                rev_rnd,
                value=s["value"][sample],
                prob=s["prob"][sample] if s.get("prob") is not None else None,
                levels=levels,
            )
            metrics.update({f"test_random.{name}.{k}": v for k, v in result.items()})
    else:
        reasons["test_random.*"] = (
            "no unbiased sample in the test period: no random-exploration parcels and not "
            "every parcel inspected"
        )

    legacy = baselines.legacy_selection(holdout["selection_reason"])
    legacy_rate = float(legacy.mean())
    labelled = labelled_mask(holdout)
    if not legacy.any():
        reasons["test_random.legacy.*"] = (
            "every parcel inspected: no legacy selection to compare"
            if kind == "census"
            else "no parcel carries a legacy rule selection (selection_reason 'rule:...')"
        )
    else:
        metrics["test_random.legacy.selection_rate"] = legacy_rate
        if (legacy & labelled).any():
            metrics["test_random.legacy.hit_rate"] = float(y_all[legacy & labelled].mean())
        else:
            reasons["test_random.legacy.hit_rate"] = "no legacy-selected parcel has a result"
        if has_revenue[legacy].any():
            metrics["test_random.legacy.revenue_per_inspection"] = float(rev_all[legacy].mean())
        else:
            reasons["test_random.legacy.revenue_per_inspection"] = "no revenue data"
        if "model" in scores and sample.any():
            top = _top_share(scores["model"]["risk"][sample], legacy_rate)
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
                    oracle_value = metrics[key]
                    if np.isfinite(oracle_value) and oracle_value != 0:
                        ratio = metrics[f"test_all.model.{metric}"] / oracle_value
                        metrics[f"test_all.ratio.{metric}"] = float(ratio)
        if legacy.any():
            legacy_truth = selected_set_metrics(legacy, truth_y, truth_rev)
            metrics.update({f"test_all.legacy.{k}": v for k, v in legacy_truth.items()})
            if "model" in scores:
                top = _top_share(scores["model"]["risk"], legacy_rate)
                model_at = selected_set_metrics(top, truth_y, truth_rev)
                metrics["test_all.legacy.model_hit_rate_at_legacy_rate"] = model_at["hit_rate"]
                top_value = _top_share(scores["model"]["value"], legacy_rate)
                metrics["test_all.legacy.model_revenue_share_at_legacy_rate"] = (
                    selected_set_metrics(top_value, truth_y, truth_rev)["revenue_share"]
                )
        else:
            reasons["test_all.legacy.*"] = reasons["test_random.legacy.*"]
    finite = _finite_metrics(metrics, reasons, scorers={*scores, "oracle"})
    if not_applicable is not None:
        not_applicable.update(reasons)
    return finite


def _finite_metrics(
    metrics: dict[str, float], reasons: dict[str, str], scorers: set[str]
) -> dict[str, float]:
    """``metrics`` without the non-finite values; each one left out gets a reason in ``reasons``.

    Reasons are keyed by fnmatch patterns (``test_random.*.revenue_at_*``): the cause is the
    evaluation sample, the same for every scorer and level.
    """
    out = {}
    for key, value in metrics.items():
        if np.isfinite(value):
            out[key] = value
            continue
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in reasons):
            continue
        evaluation, who, metric = key.split(".", 2)
        family = re.sub(r"_\d+$", "_*", metric)
        pattern = f"{evaluation}.{'*' if who in scorers else who}.{family}"
        if who == "ratio":
            reasons[pattern] = "the model's or the oracle's metric is not computable"
        elif metric.startswith("revenue"):
            reasons[pattern] = "no revenue recovered in the evaluation sample"
        elif metric.startswith(("roc_auc", "pr_auc", "recall")):
            reasons[pattern] = "the evaluation sample holds one class only"
        else:
            reasons[pattern] = "not computable on the evaluation sample"
    return out


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

    # Judged on the rows the first pass learns from: a feature with nothing to say there cannot
    # be used by any tree, and keeping it would only cost serving time and SHAP noise.
    X = manifest.matrix(frame)
    used = informative_features(X[fit_train], manifest)
    if used is not manifest:
        X = X[:, [manifest.names.index(n) for n in used.names]]

    risk_fit = _fit_booster(
        params, "binary", X[fit_train], y[fit_train], X[fit_valid], y[fit_valid], used
    )
    revenue = frame["revenue_recovered"].to_numpy(np.float64, na_value=np.nan)
    revenue_fit, revenue_status = _fit_revenue(params, X, y, revenue, labelled, parts, used)
    for name, fitted in (("risk", risk_fit), ("revenue", revenue_fit)):
        if fitted is not None and fitted.hit_round_cap:
            log.warning(
                "the %s model used all train.lightgbm.n_estimators=%d rounds without early "
                "stopping: raise train.lightgbm.n_estimators (or the learning rate)",
                name,
                params.n_estimators,
            )
    objective: Objective = params.objective
    if objective == "revenue" and revenue_fit is None:
        log.warning("train.objective is revenue but there is no revenue model: lanes rank on risk")
        objective = "risk"

    history_sample = unbiased_mask(frame[list(_OUTCOME_COLUMNS)])[1]
    validation = frame.loc[parts["validation"], list(_OUTCOME_COLUMNS)]
    cal_unbiased = np.zeros(len(frame), dtype=bool)
    cal_unbiased[parts["validation"]], unbiased_kind = unbiased_mask(validation)
    if (
        cal_unbiased.sum() >= params.calibration_min_random
        and y[cal_unbiased].sum() >= params.calibration_min_random_illicit
    ):
        cal_mask, cal_sample = cal_unbiased, unbiased_kind
    else:
        cal_mask, cal_sample = fit_valid, "labelled"
        log.warning(
            "only %d unbiased (random-exploration) parcels in validation: calibrating on all "
            "labelled validation parcels (probabilities then describe inspected parcels, "
            "biased upward)",
            cal_unbiased.sum(),
        )
    calibration = fit_isotonic(risk_fit.booster.predict(X[cal_mask], raw_score=True), y[cal_mask])

    first_pass = _with_lane_thresholds(
        RiskModel(
            manifest=used,
            risk_booster=risk_fit.booster,
            revenue_booster=revenue_fit.booster if revenue_fit is not None else None,
            calibration=calibration,
            thresholds=_placeholder_thresholds(objective),
        ),
        X[parts["validation"]],
        params,
    )
    test = parts["test"]
    X_test = X[test]
    if params.refit:
        deployed = _refit(params, first_pass, risk_fit, revenue_fit, X, y, revenue, labelled)
        # Lanes meet tomorrow's traffic: the most recent period's is the closest sample of it.
        deployed = _with_lane_thresholds(deployed, X_test, params)
        evaluated_model = (
            f"first pass: fitted on the {int(fit_train.sum())} labelled parcels of the train "
            f"period ({risk_fit.rounds} rounds, early-stopped on validation); the deployed "
            f"model is refit on all {int(labelled.sum())} labelled parcels with the same rounds, "
            f"so no held-out period is left to measure it"
        )
    else:
        deployed = first_pass
        evaluated_model = (
            f"the deployed model: fitted on the {int(fit_train.sum())} labelled parcels of "
            f"the train period ({risk_fit.rounds} rounds, early-stopped on validation)"
        )
    # Both use the first pass's calibration: a shift here means the refit moved the log-odds.
    mean_risk = {
        "evaluated": float(first_pass.risk(X_test).mean()) if len(X_test) else 0.0,
        "deployed": float(deployed.risk(X_test).mean()) if len(X_test) else 0.0,
    }
    log.info(
        "mean calibrated risk on the %d test parcels: deployed %.4f, first pass %.4f",
        len(X_test),
        mean_risk["deployed"],
        mean_risk["evaluated"],
    )
    deployed.metadata.update(
        {
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "split": boundaries.to_dict(),
            "objective": objective,
            "refit": params.refit,
            "risk_best_iteration": risk_fit.rounds,
            "revenue_best_iteration": revenue_fit.rounds if revenue_fit is not None else None,
            "risk_hit_round_cap": risk_fit.hit_round_cap,
            "revenue_model": revenue_status,
            "calibration_sample": cal_sample,
            "calibration_parcels": int(cal_mask.sum()),
            "labelled_train": int(fit_train.sum()),
            "labelled_validation": int(fit_valid.sum()),
            "labelled_refit": int(labelled.sum()) if params.refit else None,
            "inspection_census": history_sample == "census",
            "manifest_fingerprint": used.fingerprint,
            # the features were built (and the entity state written) with the full manifest
            "feature_manifest_fingerprint": manifest.fingerprint,
            "dropped_features": [n for n in manifest.names if n not in set(used.names)],
        }
    )
    fit_seconds = time.perf_counter() - started

    # baselines, fitted on the same training labels
    logistic = baselines.fit_logistic(
        X[fit_train],
        y[fit_train],
        params.seed,
        categorical=[used.names.index(n) for n in used.categorical_names],
    )
    holdout = frame.loc[test].reset_index(drop=True)
    # The held-out metrics are the first pass's: the refit model has seen the test labels.
    model_scores = score_model(first_pass, holdout)
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
    not_applicable: dict[str, str] = {}
    metrics = evaluate_holdout(holdout, scores, not_applicable=not_applicable)

    predictions = holdout.drop(columns=manifest.names)
    for name, s in scores.items():
        predictions[f"{name}_risk"] = s["risk"]
        predictions[f"{name}_value"] = s["value"]
    predictions["model_priority"] = model_scores["priority"]
    predictions["random_exploration"] = random_mask(holdout)
    test_sample, test_kind = unbiased_mask(holdout)
    predictions["unbiased_sample"] = test_sample

    tables = _tables(holdout, model_scores)
    info = {
        "parcels": len(frame),
        "labelled": int(labelled.sum()),
        "random_labelled": int(random_mask(frame).sum()),
        "test_parcels": int(test.sum()),
        "test_random_parcels": int(test_sample.sum()),
        "unbiased_sample": test_kind,
        "evaluated_model": evaluated_model,
        "objective_requested": params.objective,
        "revenue_hit_round_cap": revenue_fit.hit_round_cap if revenue_fit is not None else False,
        "test_mean_risk_deployed": mean_risk["deployed"],
        "test_mean_risk_evaluated": mean_risk["evaluated"],
        "not_applicable": dict(sorted(not_applicable.items())),
        "fit_seconds": round(fit_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        **{k: v for k, v in deployed.metadata.items() if k != "split"},
    }
    return TrainResult(deployed, metrics, boundaries, predictions, tables, info, X_test)


def _fit_revenue(
    params: TrainParams,
    X: np.ndarray,
    y: np.ndarray,
    revenue: np.ndarray,
    labelled: np.ndarray,
    parts: dict[str, np.ndarray],
    manifest: FeatureManifest,
) -> tuple[FittedBooster | None, str]:
    """The first-pass revenue model, or None and the one message that says why not."""
    illicit = labelled & (y == 1)
    with_revenue = illicit & np.isfinite(revenue)
    rev_train = parts["train"] & with_revenue
    rev_valid = parts["validation"] & with_revenue
    if not with_revenue.any():
        status = (
            f"no revenue data: revenue_recovered is empty for all {int(illicit.sum())} illicit "
            f"labelled parcels; revenue model and revenue metrics skipped, lanes rank on risk"
        )
    elif rev_train.sum() < MIN_REVENUE_TRAIN or rev_valid.sum() < MIN_REVENUE_VALIDATION:
        status = (
            f"too little revenue data: {int(rev_train.sum())} of "
            f"{int((illicit & parts['train']).sum())} illicit labelled parcels of the train "
            f"period have revenue_recovered (need {MIN_REVENUE_TRAIN}), "
            f"{int(rev_valid.sum())} of {int((illicit & parts['validation']).sum())} of "
            f"validation (need {MIN_REVENUE_VALIDATION}); revenue model skipped, lanes rank "
            f"on risk"
        )
    else:
        # Gamma deviance with a log link estimates the mean revenue, which is what ranking by
        # expected revenue needs; a model of log revenue estimates the geometric mean and
        # under-ranks the heavy tail (fines, large parcels) that carries most of the money.
        fitted = _fit_booster(
            params,
            "gamma",
            X[rev_train],
            np.maximum(revenue[rev_train], MIN_REVENUE_EUR),
            X[rev_valid],
            np.maximum(revenue[rev_valid], MIN_REVENUE_EUR),
            manifest,
        )
        return fitted, "fitted"
    log.warning("%s", status)
    return None, status


def _refit(
    params: TrainParams,
    first_pass: RiskModel,
    risk_fit: FittedBooster,
    revenue_fit: FittedBooster | None,
    X: np.ndarray,
    y: np.ndarray,
    revenue: np.ndarray,
    labelled: np.ndarray,
) -> RiskModel:
    """The deployed model: the first pass's boosters refit on all labelled parcels.

    Same rounds and learning rate, so the refit's log-odds are on the first pass's scale and
    its calibration map applies; the first-pass boosters stay in the bundle for evaluation.
    Re-matching the refit's scores to the first pass's distribution on recent traffic (shift,
    affine or quantile map) calibrated a little better on stationary toy data but undid what
    the refit learnt from a drifting hit rate, the case refitting is for; so the map is kept.
    """
    manifest = first_pass.manifest
    risk = _refit_booster(params, "binary", X[labelled], y[labelled], risk_fit.rounds, manifest)
    revenue_booster = None
    if revenue_fit is not None:
        rows = labelled & (y == 1) & np.isfinite(revenue)
        revenue_booster = _refit_booster(
            params,
            "gamma",
            X[rows],
            np.maximum(revenue[rows], MIN_REVENUE_EUR),
            revenue_fit.rounds,
            manifest,
        )
    return replace(
        first_pass,
        risk_booster=risk,
        revenue_booster=revenue_booster,
        risk_booster_eval=first_pass.risk_booster,
        revenue_booster_eval=first_pass.revenue_booster,
        metadata={},
    )


def _placeholder_thresholds(objective: Objective) -> LaneThresholds:
    """Cut-offs that only carry the objective, for scoring before the real ones are fitted."""
    return fit_lane_thresholds(np.r_[0.0, 1.0], 0.5, 0.0, objective)


def _with_lane_thresholds(
    model: RiskModel, X_traffic: np.ndarray, params: TrainParams
) -> RiskModel:
    """``model`` with cut-offs that fill the lanes at the configured rates of this traffic."""
    priority = model.score(X_traffic)["priority"]
    thresholds = fit_lane_thresholds(
        priority, params.red_rate, params.yellow_rate, model.thresholds.objective
    )
    return replace(model, thresholds=thresholds)


def _tables(holdout: pd.DataFrame, model_scores: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    tables: dict[str, pd.DataFrame] = {}
    rnd = unbiased_mask(holdout)[0]
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
