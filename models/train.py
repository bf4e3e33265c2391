"""Training: the LightGBM risk and revenue models, their calibration and lane cut-offs.

Pure core: ``train_models(features, manifest, params, ground_truth)`` takes the feature frame of
``features build`` and returns a ``TrainResult``; it reads and writes nothing. The CLI
(``models.cli``) and ``models.registry`` do the I/O and the MLflow logging.

Labels exist only for inspected parcels and past inspections were chosen by the legacy rules, so
the models are fitted on every labelled parcel (``models.labels``) but measured by
``models.evaluation`` on the unbiased sample of the test period and, on generated data, against
the ground truth of every test parcel.

Two passes: the first fits on the train period (early stopping and calibration on validation) and
is the model the held-out metrics describe; with ``train.refit`` the deployed boosters are then
refit on all labelled parcels with the first pass's number of rounds, so the model in service has
learnt from the most recent labelled period too. The bundle keeps the first pass for the gate.

Every booster is fitted through one ``BoosterFitter``, chosen by ``train_models``' ``engine``:
``"pandas"`` fits in this process (``LocalFitter``), ``"dask"`` on a Dask cluster
(``models.dask_train.DaskFitter``). Both return plain local ``lgb.Booster`` objects, so
calibration, thresholds, evaluation, SHAP, the bundle and the registry never know which it was.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.params import ServeParams, TrainParams
from features.pipeline.manifest import FeatureManifest
from models.bundle import LaneThresholds, Objective, RiskModel, revenue_if_illicit, score_rows
from models.calibration import fit_isotonic
from models.evaluation import (
    attach_truth,
    check_truth_covers,
    describe_rankings,
    evaluate_holdout,
    headline_metrics,
    holdout_predictions,
    holdout_tables,
    score_baselines,
    score_lanes,
    score_model,
)
from models.fitting import BoosterData, BoosterFitter, FittedBooster, LocalFitter
from models.labels import (
    CENSUS_DAY_MIN_PARCELS,
    illicit_labels,
    labelled_mask,
    recorded_before,
    unbiased_mask,
)
from models.leakage import inspection_records, leaking_features, one_sided_results
from models.reference import ModelReference, build_reference
from models.split import SplitBoundaries
from models.thresholds import effective_priority, fit_lane_thresholds, traffic_quantiles
from models.training_rows import TrainingRows, baseline_sample, distil_sample

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger(__name__)

# Told the name of each step of ``train_models`` as it starts (``training_steps`` lists them).
Progress = Callable[[str], None]

# Gamma needs positive targets: the pooled model reads an offence with no duty as this much.
# By offence type, an amount below it is "nothing recovered": the kind's hurdle, not a target.
MIN_REVENUE_EUR = 0.01
# Illicit parcels with a recorded revenue needed to fit (train period) and early-stop
# (validation) the revenue model; below this a gamma model of the heavy tail is mostly noise.
MIN_REVENUE_TRAIN = 50
MIN_REVENUE_VALIDATION = 10
# The guard on a revenue booster before it is served (``check_revenue_booster``). E[revenue |
# illicit] is a mean of recovered amounts: above a few times the largest one ever recovered, a
# booster extrapolates where no label supports it (probe F1: 1.1e9 EUR against labels of at most
# 1,818 EUR, the lanes then filled with cheap parcels at risk 0.03). A distilled booster must also
# reproduce the mixture it stands for: the demo's reach 0.96 log R2, the collapsed one 0.53.
REVENUE_BOUND_FACTOR = 2.0
MIN_DISTIL_R2 = 0.8


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


def offence_label_counts(frame: pd.DataFrame, labelled: np.ndarray) -> dict[str, int]:
    """Illicit labelled parcels per offence type ({} when the history records no types)."""
    if "offence_type" not in frame.columns:
        return {}
    illicit = labelled & illicit_labels(frame).astype(bool)
    kinds = frame.loc[illicit, "offence_type"].astype("str").dropna()
    return {str(k): int(n) for k, n in kinds.value_counts().sort_index().items()}


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevenueFit:
    """The first-pass model of revenue given illicit: the gamma booster and, by offence kind,
    the kind classifier (the gamma booster then reads the kind's code in one more column)."""

    revenue: FittedBooster
    offence: FittedBooster | None = None
    kinds: tuple[str, ...] = ()
    # by kind code: the share of its offences that recovered anything (``kind_recovery_shares``);
    # the gamma booster is fitted on those only and the mixture weighs each kind by its share
    kind_share: tuple[float, ...] = ()

    def kind_matrix(self, X: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """What the revenue booster reads: ``X``, plus the kind codes when fitted by kind."""
        return with_kind(X, codes) if self.offence is not None else X


OFFENCE_KIND_COLUMN = "offence_kind"  # the revenue booster's extra input when fitted by kind
# The mixture asks the kind-aware revenue booster once per kind and the kind model's K trees per
# round: about 12x the cost of one booster. Serving gets one gamma booster fitted to reproduce it
# on this many parcels of all traffic (demo: log R2 0.96 on parcels it never saw, revenue@5%
# within noise of the mixture's). Revenue per 100 parcels in process: mixture 6.1 ms, this
# booster 2.1 ms, a pooled model 0.5 ms (150 rounds at 0.2: 1 ms, revenue@5% ratio -0.003).
# (on DISTIL_ROWS parcels: ``models.training_rows``, which every sample training draws comes from)
DISTIL_ROUNDS = 300
DISTIL_PARAMS = {"num_leaves": 31, "learning_rate": 0.1, "bagging_fraction": 1.0}
# The service's default: train_models' callers without settings fit lanes as it serves them.
DEFAULT_AEO_DISCOUNT = float(ServeParams.model_fields["aeo_risk_discount"].default)
RISK_WEIGHT_FLOOR = 0.01  # a parcel at risk 0 still counts a little
MIXTURE_CHUNK_ROWS = 8_192


def contiguous(mask: np.ndarray) -> slice | np.ndarray:
    """The rows of ``mask`` as one slice when they are one run (indexing with it gives views),
    else their indices."""
    rows = np.flatnonzero(mask)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def with_kind(X: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return np.column_stack([X, codes])


def kind_recovery_shares(
    kind_codes: np.ndarray, revenue: np.ndarray, rows: np.ndarray, n_kinds: int
) -> np.ndarray:
    """By kind code, the share of the illicit parcels ``rows`` (revenue recorded) that
    recovered at least MIN_REVENUE_EUR: the hurdle of each kind's term in the mixture.

    Seized counterfeits recover no duty: fitted as 0.01 EUR in a log-link gamma model, such a
    kind put targets 11 log units below the others, and the distilled booster's Newton steps on
    them diverged (probe F1). A kind with no revenue recorded at all takes the share of all
    kinds: nothing says it differs."""
    recovered = revenue >= MIN_REVENUE_EUR
    overall = float(recovered[rows].mean()) if rows.any() else 1.0
    share = np.full(n_kinds, overall)
    for code in range(n_kinds):
        of_kind = rows & (kind_codes == code)
        if of_kind.any():
            share[code] = float(recovered[of_kind].mean())
    return share


def mixture_revenue(
    revenue_booster: lgb.Booster,
    offence_booster: lgb.Booster,
    X: np.ndarray,
    kind_share: np.ndarray | None = None,
) -> np.ndarray:
    """E[revenue | illicit] = sum over kinds k of P(k | x) x s_k x E[revenue | x, k, recovered]:
    the kind-aware booster asked once per kind, its code in the last column (rows stacked kind
    after kind, in chunks: K copies of 60,000 rows would be half a gigabyte). ``kind_share``:
    s_k, the share of kind k's offences that recovered anything (``kind_recovery_shares``;
    None: all of them); a kind that never recovers anything adds 0, whatever the booster says."""
    kinds = offence_booster.num_model_per_iteration()
    share = np.ones(kinds) if kind_share is None else np.asarray(kind_share, dtype=np.float64)
    out = np.zeros(len(X))
    for lo in range(0, len(X), MIXTURE_CHUNK_ROWS):
        part = X[lo : lo + MIXTURE_CHUNK_ROWS]
        n = len(part)
        p_kind = offence_booster.predict(part).reshape(n, kinds)
        stacked = np.empty((kinds * n, X.shape[1] + 1))
        stacked[:, :-1] = np.tile(part, (kinds, 1))
        stacked[:, -1] = np.repeat(np.arange(kinds, dtype=np.float64), n)
        by_kind = revenue_booster.predict(stacked).reshape(kinds, n).T
        out[lo : lo + n] = np.maximum((p_kind * share * by_kind).sum(axis=1), 0.0)
    return out


# The bounds of the refit revenue booster's level correction: a ratio further out says
# something else is wrong (logged), not that the level is off by that much.
LEVEL_BOUNDS = (0.5, 2.0)


def revenue_level(
    deployed: lgb.Booster | None,
    first_pass: lgb.Booster | None,
    X: np.ndarray,
    weight: np.ndarray,
) -> float:
    """The scale that puts the deployed (refit) revenue booster's level on the first pass's,
    risk-weighted over a sample of the traffic ``X``: the first pass's level is the one
    measured on held-out parcels, as the refit risk booster keeps the first pass's calibration.
    Refit on more rows with the first pass's rounds, the gamma booster (log link: it matches
    the labels' ratios, not their sum) came out lower: the served E[revenue | illicit] was 13%
    under the first pass's on the same parcels and the served revenue at stake 19% under the
    truth on the next 20 days, where the first pass's was level (probe 29). Balancing on the
    inspected parcels' recorded revenue instead overshot by 13-25%: targeting inspects the
    heavy tail the model underestimates."""
    if deployed is None or first_pass is None or deployed is first_pass or not len(X):
        return 1.0
    ours = float(np.dot(weight, revenue_if_illicit(deployed, X)))
    theirs = float(np.dot(weight, revenue_if_illicit(first_pass, X)))
    if ours <= 0 or theirs <= 0:
        return 1.0
    scale = theirs / ours
    low, high = LEVEL_BOUNDS
    if not low <= scale <= high:
        log.warning(
            "revenue model: the refit booster's level is %.2fx off the first pass's; corrected "
            "by at most %.1fx",
            1 / scale,
            high if scale > high else 1 / low,
        )
    return float(np.clip(scale, low, high))


@dataclass(frozen=True)
class Distilled:
    booster: lgb.Booster
    rows: int  # parcels it was fitted on
    fidelity_r2: float  # R2 of log revenue against the mixture on parcels it did not see


def distil_mixture(
    params: TrainParams,
    revenue_booster: lgb.Booster,
    offence_booster: lgb.Booster,
    risk: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    fit: np.ndarray,
    held: np.ndarray,
    manifest: FeatureManifest,
    fitter: BoosterFitter | None = None,
    kind_share: np.ndarray | None = None,
) -> Distilled:
    """One gamma booster that reproduces the mixture on the rows ``fit`` of ``X``, checked on
    the rows ``held`` (``models.training_rows.distil_sample``: a seeded sample of every parcel
    of the period, labelled or not, since it must hold on the traffic it will score).

    Each parcel weighs its calibrated ``risk``: expected revenue is risk x revenue, so an error
    on a parcel that will never be inspected costs nothing (demo, seed 43: revenue@5% ratio
    0.893 weighted, 0.884 unweighted, 0.892 for the mixture itself)."""

    def mixture(part: np.ndarray) -> np.ndarray:
        return mixture_revenue(revenue_booster, offence_booster, part, kind_share)

    target = np.maximum(mixture(X[fit]), MIN_REVENUE_EUR)
    booster = (fitter or LocalFitter()).fit_rounds(
        {**params.lgb_params("gamma"), **DISTIL_PARAMS},
        booster_data(X[fit], target, manifest, weight=risk(X[fit]) + RISK_WEIGHT_FLOOR),
        DISTIL_ROUNDS,
    )
    check = held if len(held) >= 100 else fit  # a small history: in-sample is all there is
    exact = np.log(np.maximum(mixture(X[check]), MIN_REVENUE_EUR))
    approx = np.log(np.maximum(booster.predict(X[check]), MIN_REVENUE_EUR))
    spread = float(np.var(exact))
    r2 = 1.0 - float(np.var(approx - exact)) / spread if spread > 0 else 1.0
    return Distilled(booster, len(fit), r2)


@dataclass(frozen=True)
class RevenueCheck:
    """What the guard found on a revenue booster before it is served (``check_revenue_booster``)."""

    max_eur: float  # its largest E[revenue | illicit] on the parcels checked
    fidelity_r2_log: float | None  # a distilled booster's, against the mixture it stands for
    problems: tuple[str, ...]  # none: it may be served

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_eur": round(self.max_eur, 2) if np.isfinite(self.max_eur) else None,
            "fidelity_r2_log": self.fidelity_r2_log,
            "passed": self.passed,
            "problems": list(self.problems),
        }


def check_revenue_booster(
    booster: lgb.Booster, X: np.ndarray, bound_eur: float, fidelity_r2: float | None = None
) -> RevenueCheck:
    """The guard on a revenue booster about to be served: its E[revenue | illicit] on ``X`` (a
    sample of the traffic it will score) within ``bound_eur`` (REVENUE_BOUND_FACTOR x the largest
    amount recovered) and, for a distilled booster, its ``fidelity_r2`` (log R2 against the
    mixture) at least MIN_DISTIL_R2."""
    predicted = revenue_if_illicit(booster, X)
    max_eur = float(predicted.max()) if len(predicted) else 0.0
    problems = []
    if not max_eur <= bound_eur:  # NaN fails too
        problems.append(
            f"predicts up to {max_eur:,.4g} EUR (bound {bound_eur:,.0f} EUR: "
            f"{REVENUE_BOUND_FACTOR:g} x the largest amount recovered)"
        )
    if fidelity_r2 is not None and not fidelity_r2 >= MIN_DISTIL_R2:
        problems.append(
            f"reproduces the mixture by offence type with log R2 {fidelity_r2:.3f} "
            f"(need {MIN_DISTIL_R2:g})"
        )
    return RevenueCheck(max_eur, fidelity_r2, tuple(problems))


def offence_kind_codes(frame: pd.DataFrame, rows: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """The offence kinds recorded on ``rows`` (sorted) and every row's kind code (NaN: none or
    a kind not among them); ``((), all NaN)`` when the history records no types."""
    codes = np.full(len(frame), np.nan)
    if "offence_type" not in frame.columns:
        return (), codes
    kind = frame["offence_type"].astype("string")
    kinds = tuple(sorted(kind[rows].dropna().unique().tolist()))
    lookup = {k: float(i) for i, k in enumerate(kinds)}
    codes[:] = kind.map(lookup).astype("Float64").to_numpy(np.float64, na_value=np.nan)
    return kinds, codes


def booster_data(
    X: np.ndarray, y: np.ndarray, manifest: FeatureManifest, weight: np.ndarray | None = None
) -> BoosterData:
    """The manifest's columns (categoricals marked), and the offence kind code when ``X`` has
    one more column (the revenue booster fitted by kind)."""
    names = list(manifest.names)
    categorical = [names.index(n) for n in manifest.categorical_names]
    if X.shape[1] == len(names) + 1:
        categorical.append(len(names))
        names.append(OFFENCE_KIND_COLUMN)
    return BoosterData(X, y, names, categorical, weight)


ENGINES = ("pandas", "dask")


def check_engine(engine: str, scheduler: str | None = None) -> None:
    """Refuse an engine ``train_models`` does not know, and a scheduler without the dask engine."""
    if engine not in ENGINES:
        raise ParcelriskError(f"unknown engine {engine!r} (choose {' or '.join(ENGINES)})")
    if scheduler is not None and engine != "dask":
        raise ParcelriskError(f"a Dask scheduler ({scheduler}) needs the dask engine")


@contextlib.contextmanager
def booster_fitter(engine: str, scheduler: str | None = None) -> Iterator[BoosterFitter]:
    """The fitter of ``engine``; for "dask", on ``scheduler`` (an address) or a LocalCluster
    started here and closed on exit (``models.dask_train.dask_fitter``)."""
    check_engine(engine, scheduler)
    if engine == "pandas":
        yield LocalFitter()
        return
    from models.dask_train import dask_fitter

    with dask_fitter(scheduler) as fitter:
        yield fitter


# A risk model early-stopped at this many rounds or fewer learnt next to nothing from its
# labels (a first tree and no gain on validation): trained, but said loudly (train, promote).
WEAK_ROUNDS = 2
# The deployed (refit) model's mean test risk this many times above or below the first
# pass's: it no longer scores traffic as the metrics and lane cut-offs describe (train warns,
# promote cautions a first champion)
RISK_SHIFT_LIMIT = 3.0


def _fit_booster(
    params: TrainParams,
    objective: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    manifest: FeatureManifest,
    extra: dict[str, Any] | None = None,
    fitter: BoosterFitter | None = None,
) -> FittedBooster:
    """First pass: fit with early stopping on the validation rows (``extra``: more booster
    parameters, e.g. ``num_class``)."""
    return (fitter or LocalFitter()).fit_early_stopped(
        {**params.lgb_params(objective), **(extra or {})},
        booster_data(X_train, y_train, manifest),
        booster_data(X_valid, y_valid, manifest),
        params.n_estimators,
        params.early_stopping_rounds,
    )


def _refit_booster(
    params: TrainParams,
    objective: str,
    X: np.ndarray,
    y: np.ndarray,
    rounds: int,
    manifest: FeatureManifest,
    extra: dict[str, Any] | None = None,
    fitter: BoosterFitter | None = None,
) -> lgb.Booster:
    """Second pass: the same configuration on more rows, for the rounds the first pass chose.

    No early stopping: every labelled period is in the fit, none is left to stop on.
    """
    return (fitter or LocalFitter()).fit_rounds(
        {**params.lgb_params(objective), **(extra or {})}, booster_data(X, y, manifest), rounds
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


# Illicit labels in the validation period below which a perfect single feature is warned
# about, not refused: with a handful of positives a strong real signal ranks them all by chance.
LEAK_MIN_POSITIVES = 20


def refuse_leaking_features(
    manifest: FeatureManifest,
    X: np.ndarray,
    y: np.ndarray,
    fit_train: np.ndarray,
    fit_valid: np.ndarray,
    params: TrainParams,
) -> None:
    """Stop before any fit when a feature alone separates the labels (``models.leakage``).

    Refused, not warned: such a model wins every held-out metric and the champion gate, then
    lanes nothing on declarations that arrive without the result it learned from.
    """
    if params.max_single_feature_auc >= 1.0:
        return
    trusted = frozenset(params.trusted_features)
    unknown = sorted(trusted - set(manifest.names))
    if unknown:
        log.warning(
            "train.trusted_features names features this model does not have: %s",
            ", ".join(unknown),
        )
    categorical = np.isin(manifest.names, manifest.categorical_names)
    leaks, strongest = leaking_features(
        manifest.names,
        X,
        y,
        fit_train,
        fit_valid,
        categorical,
        params.max_single_feature_auc,
        trusted,
    )
    log.info(
        "strongest single features (ROC AUC alone, validation labels): %s",
        ", ".join(f"{s.feature} {s.auc:.3f}" for s in strongest),
    )
    positives = int(y[fit_valid].sum())
    if leaks and positives < LEAK_MIN_POSITIVES:
        # a strong real feature can rank a handful of positives perfectly by chance: said,
        # not refused
        log.warning(
            "feature(s) that alone tell illicit from clean parcels on the validation labels: %s; "
            "with %d illicit labels there this may be chance, but if such a feature is an "
            "inspection result mapped as a feature, the model will lane nothing: check it",
            ", ".join(f"{s.feature} (ROC AUC {s.auc:.3f})" for s in leaks[:10]),
            positives,
        )
        return
    if leaks:
        named = ", ".join(f"{s.feature} (ROC AUC {s.auc:.3f})" for s in leaks[:10])
        raise ParcelriskError(
            f"feature(s) that alone tell illicit from clean parcels on labels they were not "
            f"fitted on: {named}. A feature that strong is an inspection result, not a signal "
            "known at declaration (an extra holding the result, a seizure reference, duties "
            "assessed after the control): map the column as illicit or revenue_recovered, or "
            "drop it from the mapping's extras. If it is known before arrival, list it in "
            f"train.trusted_features (the bound is train.max_single_feature_auc="
            f"{params.max_single_feature_auc})."
        )


def extra_features(manifest: FeatureManifest) -> frozenset[str]:
    """The features of the columns an administration mapped in beyond the contract: numeric
    extras as given (``features.families.extras``), categorical ones as codes
    (``cat_<extra>``, beside the contract's own categoricals)."""
    from features.families.categories import PREFIX as CATEGORY
    from features.families.extras import PREFIX as EXTRA
    from features.intake.contract import FIELDS_BY_NAME

    return frozenset(
        f.name
        for f in manifest.features
        if f.name.startswith(EXTRA)
        or (f.name.startswith(CATEGORY) and f.name.removeprefix(CATEGORY) not in FIELDS_BY_NAME)
    )


def refuse_inspection_records(
    manifest: FeatureManifest,
    X: np.ndarray,
    labelled: np.ndarray,
    params: TrainParams,
    y: np.ndarray | None = None,
) -> None:
    """Stop before any fit when a feature says what the inspection did or found
    (``models.leakage``): filled on the inspected parcels and not on the others (or the
    reverse); an extra on one value on every parcel never inspected; an extra off its clean
    parcels' value only on illicit ones (``y``: the labels). The control's time, reference or
    duties kept as an extra. The same switch as the one-feature AUC guard turns it off."""
    if params.max_single_feature_auc >= 1.0:
        return
    extras = extra_features(manifest)
    trusted = frozenset(params.trusted_features)
    records = inspection_records(manifest.names, X, labelled, trusted, extras)
    named = [
        f"{r.feature} (filled on {r.filled_inspected:.0%} of inspected parcels, "
        f"{r.filled_others:.0%} of the others)"
        if r.only_value is None
        else f"{r.feature} ({r.only_value:g} on every parcel never inspected, other values on "
        "inspected ones)"
        for r in records
    ]
    if y is not None:
        said = {r.feature for r in records}
        named += [
            f"{r.feature} ({r.clean_value:g} on the clean parcels; other values on "
            f"{r.off_parcels} parcels, {r.off_illicit:.0%} of them illicit)"
            for r in one_sided_results(manifest.names, X, y, labelled, extras, trusted)
            if r.feature not in said
        ]
    if named:
        raise ParcelriskError(
            "feature(s) whose presence or value says whether a parcel was inspected, or what "
            f"was found: {', '.join(named[:10])}. Such a value is written by the inspection "
            "(its time, its reference, duties assessed, a note), and declarations arrive "
            "without it: map the column as a result (inspected_at, revenue_recovered...) or "
            "drop it from the mapping's extras. If it is known before arrival, list it in "
            "train.trusted_features."
        )


# --------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------


def aeo_rows(frame: pd.DataFrame) -> np.ndarray:
    """Which parcels AEO operators declared (the declaration's ``aeo_operator``; none if absent)."""
    if "aeo_operator" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame["aeo_operator"].to_numpy(np.float64, na_value=np.nan) == 1.0


# Red fill on the lane traffic, as a multiple of the rate asked, above which train warns
TIED_RED_FILL = 1.5


def _warn_tied_red(effective: np.ndarray, thresholds: LaneThresholds) -> None:
    """Warn when parcels tied on the red cut-off (``thresholds``, fitted on ``effective``)
    fill red well past its rate: a risk the calibration saturates (every labelled parcel of
    its top block was illicit), or leaves the trees share. They all go red; yellow takes its
    share below them."""
    from models.thresholds import lane_shares

    finite = effective[np.isfinite(effective)]
    red = lane_shares(finite, thresholds)["red"] if len(finite) else 0.0
    if red > TIED_RED_FILL * thresholds.red_rate:
        log.warning(
            "the red cut-off sends %.2f%% of the lane traffic to red, not the %.2f%% asked: "
            "%d parcels share its priority %.10g (a saturated calibrated risk, or leaves the "
            "trees share), and parcels tied all go one way; yellow takes its share below "
            "them. More labelled parcels separate them; `parcelrisk lanes set` shows the "
            "shares any rate gives",
            100 * red,
            100 * thresholds.red_rate,
            int((finite == thresholds.red_cutoff).sum()),
            thresholds.red_cutoff,
        )


def training_steps(params: TrainParams) -> tuple[str, ...]:
    """The steps ``train_models`` announces to its ``progress`` callback, in order."""
    refit = ("refit",) if params.refit else ()
    return ("risk model", "revenue model", *refit, "baselines", "evaluation")


def train_models(
    features: pd.DataFrame | TrainingRows,
    manifest: FeatureManifest,
    params: TrainParams,
    ground_truth: pd.DataFrame | None = None,
    progress: Progress | None = None,
    aeo_discount: float = DEFAULT_AEO_DISCOUNT,
    engine: str = "pandas",
    scheduler: str | None = None,
) -> TrainResult:
    """Fit the risk and revenue models, calibration, thresholds and baselines; evaluate all.

    ``features``: the whole feature frame, or the rows of it training needs
    (``models.training_rows.read_training_rows``, for a history bigger than memory): the same
    models either way.
    ``aeo_discount``: the service's ``serve.aeo_risk_discount``; the lane cut-offs are fitted
    on the priority it lanes on. ``engine``: where the boosters are fitted, "pandas" (this
    process) or "dask" (on the cluster at ``scheduler``, or a LocalCluster of two worker
    processes started for the call); everything else runs here either way."""
    with booster_fitter(engine, scheduler) as fitter:
        return _train_models(
            features, manifest, params, ground_truth, progress, aeo_discount, fitter
        )


def _train_models(
    features: pd.DataFrame | TrainingRows,
    manifest: FeatureManifest,
    params: TrainParams,
    ground_truth: pd.DataFrame | None,
    progress: Progress | None,
    aeo_discount: float,
    fitter: BoosterFitter,
) -> TrainResult:
    started = time.perf_counter()
    step = progress or (lambda _name: None)
    rows = (
        features
        if isinstance(features, TrainingRows)
        else TrainingRows.whole(features, params.split)
    )
    frame, boundaries, periods = rows.frame, rows.boundaries, rows.period_parcels
    parts = boundaries.masks(frame["declared_at"])
    labelled = labelled_mask(frame)
    # The first pass, which the test metrics and the gate judge, stands for a model trained
    # at the test period's start: it learns only the results recorded before then. A result
    # recorded inside the test period (a lab report, a post-clearance audit) of a parcel
    # declared before it fitted, early-stopped and calibrated it (probe 5g: a new origin
    # whose results all came in during the test period filled the top 5%). The deployed
    # refit learns every result.
    known = labelled & recorded_before(frame, boundaries.test_start)
    y = illicit_labels(frame)
    fit_train, fit_valid = parts["train"] & known, parts["validation"] & known
    for part, mask in (("train", fit_train), ("validation", fit_valid)):
        n_pos = int(y[mask].sum())
        if mask.sum() < 20 or n_pos < 5 or n_pos == mask.sum():
            raise ParcelriskError(
                f"too few labels in the {part} period: {int(mask.sum())} inspected parcels "
                f"with results recorded before the test period, {n_pos} illicit (need at "
                "least 20, of which 5 illicit and 1 clean; lengthen the history or move "
                f"train.split). The periods: {_periods_said(boundaries)}"
            )
    if late := int((labelled & ~known & ~parts["test"]).sum()):
        log.info(
            "%d result(s) of train/validation parcels were recorded in the test period: the "
            "first pass (metrics, gate) does not learn them, the deployed refit does",
            late,
        )
    log.info(
        "split %s: labelled train %d, validation %d; test parcels %d",
        boundaries.to_dict(),
        fit_train.sum(),
        fit_valid.sum(),
        parts["test"].sum(),
    )
    if ground_truth is not None:  # a truth of other parcels: refused before the fits, not after
        check_truth_covers(frame.loc[parts["test"], "declaration_id"], ground_truth)

    # Judged on the rows the first pass learns from: a feature with nothing to say there cannot
    # be used by any tree, and keeping it would only cost serving time and SHAP noise.
    # The matrix is built once, of the features kept (never all, then a copy of some columns).
    used = informative_features(manifest.matrix(frame.loc[fit_train]), manifest)
    X = used.matrix(frame)
    refuse_leaking_features(used, X, y, fit_train, fit_valid, params)
    refuse_inspection_records(used, X, labelled, params, y)

    step("risk model")
    risk_fit = _fit_booster(
        params,
        "binary",
        X[fit_train],
        y[fit_train],
        X[fit_valid],
        y[fit_valid],
        used,
        fitter=fitter,
    )
    step("revenue model")
    revenue = frame["revenue_recovered"].to_numpy(np.float64, na_value=np.nan)
    kinds, kind_codes = offence_kind_codes(frame, known & (y == 1) & parts["train"])
    revenue_fit, revenue_status = _fit_revenue(
        params, X, y, revenue, known, parts, used, kinds, kind_codes, fitter
    )
    fits: list[tuple[str, FittedBooster | None]] = [("risk", risk_fit)]
    if revenue_fit is not None:
        fits += [("revenue", revenue_fit.revenue), ("offence kind", revenue_fit.offence)]
    for name, fitted in fits:
        if fitted is not None and fitted.hit_round_cap:
            log.warning(
                "the %s model used all train.lightgbm.n_estimators=%d rounds without early "
                "stopping: raise train.lightgbm.n_estimators (or the learning rate)",
                name,
                params.n_estimators,
            )
    if risk_fit.rounds <= WEAK_ROUNDS:
        log.warning(
            "the risk model stopped after %d round(s): its validation labels gained nothing "
            "beyond the first tree, so it ranks parcels on almost nothing (many share one "
            "priority). More labelled parcels, random-exploration results or a longer history "
            "are needed; promote says so before it makes such a model the first champion",
            risk_fit.rounds,
        )
    history_exploration = rows.exploration_rate
    offence_labels = offence_label_counts(frame, labelled)
    thin = {k: n for k, n in offence_labels.items() if n < params.min_offence_labels}
    if thin:
        # a census labels every parcel already: no quota can bring more, only more history
        remedy = (
            "every parcel of this history was inspected, so only a longer history brings more"
            if rows.inspection_census
            else "raise serve.exploration_rate so the random quota brings more (this "
            f"history's: {100 * history_exploration:.2f}% of parcels)"
        )
        log.warning(
            "few labels for %s (fewer than train.min_offence_labels=%d illicit parcels each): the "
            "model cannot learn to rank them; %s",
            ", ".join(f"{k} {n}" for k, n in sorted(thin.items(), key=lambda kv: kv[1])),
            params.min_offence_labels,
            remedy,
        )
    # the validation period's census is a fact of the whole period, whose unlabelled parcels
    # may not have been read (``TrainingRows.census``)
    unbiased_kind = rows.unbiased_sample["validation"]
    cal_unbiased = parts["validation"] & rows.unbiased & known
    cal_census = int((cal_unbiased & rows.census).sum())
    if (
        cal_unbiased.sum() >= params.calibration.min_random
        and y[cal_unbiased].sum() >= params.calibration.min_random_illicit
    ):
        cal_mask, cal_sample = cal_unbiased, unbiased_kind
        log.info(
            "calibrating on %d unbiased validation parcels (%d random exploration, %d census)",
            cal_unbiased.sum(),
            cal_unbiased.sum() - cal_census,
            cal_census,
        )
    else:
        cal_mask, cal_sample = fit_valid, "labelled"
        log.warning(
            "only %d unbiased parcels in validation (%d random exploration, %d census: "
            "selection_reason 'census', or a day of %d parcels or more all inspected with "
            "results): calibrating on all labelled validation parcels (probabilities then "
            "describe inspected parcels, biased upward)",
            cal_unbiased.sum(),
            cal_unbiased.sum() - cal_census,
            cal_census,
            CENSUS_DAY_MIN_PARCELS,
        )
    calibration = fit_isotonic(risk_fit.booster.predict(X[cal_mask], raw_score=True), y[cal_mask])

    first_risk = risk_fit.booster
    # The distillation's samples of each stage's traffic (fit, held), which the guard also
    # checks that stage's served booster on, whatever the revenue model; the guard's bound.
    stages = {"first_pass": periods["train"] + periods["validation"]}
    if params.refit:
        stages["deployed"] = rows.parcels
    samples = {
        stage: tuple(rows.rows_at(sample) for sample in distil_sample(params.seed, candidates))
        for stage, candidates in stages.items()
    }
    bound_eur = REVENUE_BOUND_FACTOR * float(np.nanmax(revenue[labelled & (y == 1)], initial=0.0))
    distilled: dict[str, dict[str, float]] = {}  # by offence kind: the serving boosters' fit
    guard: dict[str, Any] = {"bound_eur": round(bound_eur, 2), "checks": {}, "fallback": None}
    first_revenue = None
    if revenue_fit is not None:

        def distil_first(
            revenue_booster: lgb.Booster, offence_booster: lgb.Booster, share: np.ndarray
        ) -> Distilled:
            return distil_mixture(
                params,
                revenue_booster,
                offence_booster,
                lambda part: calibration(first_risk.predict(part, raw_score=True)),
                X,
                *samples["first_pass"],
                used,
                fitter,
                share,
            )

        def fit_pooled() -> tuple[RevenueFit | None, str]:
            return _fit_revenue(
                params.replace(revenue_by_offence=False),
                X,
                y,
                revenue,
                known,
                parts,
                used,
                kinds,
                kind_codes,
                fitter,
            )

        first_revenue, revenue_fit, revenue_status = _first_pass_revenue(
            revenue_fit,
            revenue_status,
            distil_first,
            fit_pooled,
            X[np.concatenate(samples["first_pass"])],
            bound_eur,
            distilled,
            guard,
        )
    objective: Objective = params.objective
    if objective == "revenue" and revenue_fit is None:
        log.warning("train.objective is revenue but there is no revenue model: lanes rank on risk")
        objective = "risk"
    test = parts["test"]
    # The test period is the history's last rows: one slice, so its matrix and frame are views,
    # not copies (at 10M parcels each copy was about 3 GB, and training stopped on them).
    test_rows = contiguous(test)
    X_test = X[test_rows]
    if params.refit:
        step("refit")
        risk_booster, revenue_booster, offence_booster, kind_share = _refit_boosters(
            params, risk_fit, revenue_fit, X, y, revenue, labelled, used, kind_codes, fitter
        )
        fidelity = None
        if revenue_booster is not None and offence_booster is not None:
            student = distil_mixture(
                params,
                revenue_booster,
                offence_booster,
                lambda part: calibration(risk_booster.predict(part, raw_score=True)),
                X,
                *samples["deployed"],
                used,
                fitter,
                kind_share,
            )
            revenue_booster, fidelity = student.booster, student.fidelity_r2
            distilled["deployed"] = {"rows": student.rows, "fidelity_r2_log": student.fidelity_r2}
        if revenue_booster is not None:
            # The deployed booster has no held-out period to be measured on: the refit (and its
            # distillation) is checked here, and a failing one is never served.
            check = check_revenue_booster(
                revenue_booster, X[np.concatenate(samples["deployed"])], bound_eur, fidelity
            )
            guard["checks"]["deployed"] = check.to_dict()
            if not check.passed:
                revenue_booster = first_revenue
                guard["fallback"] = (
                    f"the refit revenue booster {'; '.join(check.problems)}: the first pass's "
                    f"revenue booster is deployed instead"
                )
                log.warning("revenue guard: %s", guard["fallback"])
        # Lanes meet tomorrow's traffic: the most recent period's is the closest sample of it.
        lane_traffic = test
        evaluated_model = (
            f"first pass: fitted on the {int(fit_train.sum())} labelled parcels of the train "
            f"period ({risk_fit.rounds} rounds, early-stopped on validation); the deployed "
            f"model is refit on all {int(labelled.sum())} labelled parcels with the same rounds, "
            f"so no held-out period is left to measure it"
        )
    else:
        risk_booster, revenue_booster = first_risk, first_revenue
        lane_traffic = parts["validation"]
        evaluated_model = (
            f"deployed model: fitted on the {int(fit_train.sum())} labelled parcels of "
            f"the train period ({risk_fit.rounds} rounds, early-stopped on validation)"
        )
    for stage, fit in distilled.items():
        log.info(
            "revenue by offence type, %s: distilled into one booster on %d parcels "
            "(log R2 %.3f against the mixture on parcels it did not see)",
            stage,
            fit["rows"],
            fit["fidelity_r2_log"],
        )
    # The refit revenue booster on the first pass's level (``revenue_level``), as the refit
    # risk booster keeps the first pass's calibration.
    scale = 1.0
    if params.refit and revenue_booster is not None:
        level_rows = np.concatenate(samples["deployed"])
        X_level = X[level_rows]
        scale = revenue_level(
            revenue_booster,
            first_revenue,
            X_level,
            calibration(risk_booster.predict(X_level, raw_score=True)) + RISK_WEIGHT_FLOOR,
        )
        log.info("refit revenue booster put on the first pass's level: x%.3f", scale)
    # The cut-offs fill the lanes at the configured rates of the deployed model's priorities,
    # as the service will see them: AEO declarations' discounted (``effective_priority``).
    # one copy of the period's rows (at 10M parcels the test period's matrix is 2.9 GB)
    X_lane = X_test if lane_traffic is test else X[lane_traffic]
    lane_scores = score_rows(X_lane, risk_booster, revenue_booster, calibration, objective, scale)
    if params.refit:
        # The refit learnt the labels of the lane period's inspected parcels: scored in-sample
        # they sit higher than any new parcel will, and they crowd the top 1%, so cut-offs fitted
        # on them fill the red lane with about half its share of live traffic. Those rows take
        # the first pass's scores (it never saw them; same calibration, same scale); the others
        # were never labelled, so the deployed model's scores on them are out of sample already.
        seen = labelled[lane_traffic]
        if seen.any():
            unseen = score_rows(X_lane[seen], first_risk, first_revenue, calibration, objective)
            for key, values in lane_scores.items():
                values[seen] = unseen[key]
    effective = effective_priority(
        lane_scores["priority"], aeo_rows(frame)[lane_traffic], aeo_discount
    )
    lane_period = "test" if params.refit else "validation"
    thresholds = fit_lane_thresholds(
        effective,
        params.lanes.red_rate,
        params.lanes.yellow_rate,
        objective,
        aeo_discount=aeo_discount,
        fitted_on=f"training: the {lane_period} period's traffic",
    )
    _warn_tied_red(effective, thresholds)
    deployed = RiskModel(
        manifest=used,
        risk_booster=risk_booster,
        revenue_booster=revenue_booster,
        calibration=calibration,
        thresholds=thresholds,
        # Both passes share the first pass's calibration: the refit keeps its rounds and
        # learning rate, so its log-odds stay on the first pass's scale.
        risk_booster_eval=first_risk if params.refit else None,
        revenue_booster_eval=first_revenue if params.refit else None,
        revenue_scale=scale,
        revenue_scale_eval=1.0 if params.refit else None,  # the level its metrics measured
    )
    deployed.reference = _traffic_reference(
        lane_scores,
        X_lane,
        frame.loc[lane_traffic, "declared_at"],
        used,
        params.refit,
        X[rows.rows_at(baseline_sample(params.seed, periods["train"]))],
    )
    first_pass = deployed.evaluation_model()
    holdout = frame.iloc[test_rows].reset_index(drop=True)
    # The held-out metrics are the first pass's: the refit model has seen the test labels.
    model_scores = score_model(first_pass, holdout, X_test)
    # A shift here means the refit moved the log-odds away from the shared calibration.
    mean_risk = {
        "evaluated": float(model_scores["risk"].mean()) if len(X_test) else 0.0,
        "deployed": float(deployed.risk(X_test).mean()) if len(X_test) else 0.0,
    }
    log.info(
        "mean calibrated risk on the %d test parcels: deployed %.4f, first pass %.4f",
        len(X_test),
        mean_risk["deployed"],
        mean_risk["evaluated"],
    )
    # The refit learnt the latest results: when they are all clean (results still pending
    # exported as 0, as ASYCUDA writes them) it scores new traffic far lower than the model
    # the metrics describe, and the served red lane stayed empty with only an INFO line (probe
    # 5g: deployed 0.0096 against 0.1024, red 0% of 1%). Said, and recorded for promote.
    risk_shift = (
        mean_risk["deployed"] / mean_risk["evaluated"]
        if params.refit and mean_risk["evaluated"] > 0
        else None
    )
    if risk_shift is not None and not 1 / RISK_SHIFT_LIMIT <= risk_shift <= RISK_SHIFT_LIMIT:
        log.warning(
            "the deployed (refit) model scores the test parcels %.1fx %s than the first pass "
            "the metrics and cut-offs describe (mean risk %.4f against %.4f): its latest "
            "results may be pending ones written as clean (or as found); check them, or "
            "train with train.refit: false",
            risk_shift if risk_shift > 1 else 1 / risk_shift,
            "higher" if risk_shift > 1 else "lower",
            mean_risk["deployed"],
            mean_risk["evaluated"],
        )
    deployed.metadata.update(
        {
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "engine": fitter.engine,  # where the boosters were fitted
            "split": boundaries.to_dict(),
            "objective": objective,
            "refit": params.refit,
            "risk_best_iteration": risk_fit.rounds,
            # the fitted revenue model's (by offence type: the kind-aware booster behind the
            # distilled one, which has DISTIL_ROUNDS)
            "revenue_best_iteration": (
                revenue_fit.revenue.rounds if revenue_fit is not None else None
            ),
            # by offence type: the kind model's rounds, the kinds in code order, and how well
            # the one serving booster reproduces the mixture (``distil_mixture``)
            "revenue_by_offence": (
                {
                    "kinds": list(revenue_fit.kinds),
                    "kind_model_rounds": revenue_fit.offence.rounds,
                    "distilled": distilled,
                }
                if revenue_fit is not None and revenue_fit.offence is not None
                else None
            ),
            "risk_hit_round_cap": risk_fit.hit_round_cap,
            # the deployed model's mean test risk over the first pass's (refit only)
            "deployed_risk_shift": round(risk_shift, 4) if risk_shift is not None else None,
            "revenue_model": revenue_status,
            # the served revenue boosters' checks (bound, distillation fidelity) and, when one
            # failed, what was served instead and why (``check_revenue_booster``)
            "revenue_guard": guard,
            # the deployed revenue booster's scale to the first pass's level (``revenue_level``)
            "revenue_level": round(scale, 6),
            "calibration_sample": cal_sample,
            "calibration_parcels": int(cal_mask.sum()),
            # of them, census labels (selection_reason 'census', or a census day)
            "calibration_census_parcels": cal_census if cal_sample != "labelled" else 0,
            "labelled_train": int(fit_train.sum()),
            "labelled_validation": int(fit_valid.sum()),
            "labelled_refit": int(labelled.sum()) if params.refit else None,
            # every parcel inspected: serving then turns exploration off
            "inspection_census": rows.inspection_census,
            # the random quota the history was built with (census parcels apart): serving
            # warns below it
            "history_exploration_rate": round(history_exploration, 6),
            "offence_labels": offence_labels,
            "manifest_fingerprint": used.fingerprint,
            # the features were built (and the entity state written) with the full manifest
            "feature_manifest_fingerprint": manifest.fingerprint,
            "dropped_features": [n for n in manifest.names if n not in set(used.names)],
            # what `parcelrisk lanes set` fits new rates on before any live traffic exists
            "lane_traffic": traffic_quantiles(effective, aeo_discount),
            # the share of parcels whose identifiers the training traffic held: `score` says
            # when a file lacks one the model relied on (a feed without the seller)
            "input_fill": input_fill(frame, manifest),
        }
    )
    fit_seconds = time.perf_counter() - started

    step("baselines")
    scores = {
        "model": model_scores,
        # what the lanes rank on, beside the model row's risk / expected revenue (probe 36)
        "lanes": score_lanes(model_scores, aeo_rows(holdout), first_pass.thresholds.aeo_discount),
        **score_baselines(
            frame.loc[fit_train],
            X[fit_train],
            y[fit_train],
            holdout,
            X_test,
            categorical=[used.names.index(n) for n in used.categorical_names],
            seed=params.seed,
            profile_strength=params.profile_strength,
        ),
    }
    step("evaluation")
    if ground_truth is not None:
        holdout = attach_truth(holdout, ground_truth)
    metrics, not_applicable = evaluate_holdout(holdout, scores)
    test_sample, test_kind = unbiased_mask(holdout)
    info = {
        "parcels": rows.parcels,
        "labelled": int(labelled.sum()),
        "random_labelled": rows.random_labelled,
        # unbiased labels a census gave (selection_reason 'census', or a census day), by period
        "census_labelled": rows.census_labelled,
        "test_parcels": int(test.sum()),
        "test_random_parcels": int(test_sample.sum()),
        "unbiased_sample": test_kind,
        "evaluated_model": evaluated_model,
        "objective_requested": params.objective,
        "rankings": describe_rankings(first_pass),  # what the model and lanes rows rank by
        "revenue_guard_fallback": guard["fallback"] is not None,
        "revenue_hit_round_cap": (
            revenue_fit.revenue.hit_round_cap if revenue_fit is not None else False
        ),
        "test_mean_risk_deployed": mean_risk["deployed"],
        "test_mean_risk_evaluated": mean_risk["evaluated"],
        "not_applicable": not_applicable,
        "thin_offences": thin,
        "fit_seconds": round(fit_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        **{k: v for k, v in deployed.metadata.items() if k != "split"},
    }
    return TrainResult(
        deployed,
        metrics,
        boundaries,
        holdout_predictions(holdout, scores, manifest.names),
        holdout_tables(holdout, scores["model"]),
        info,
        X_test,
    )


def input_fill(frame: pd.DataFrame, manifest: FeatureManifest) -> dict[str, float]:
    """Share of the parcels of a feature frame holding each optional identifier it carries
    (the reason context's ids; text and numbers show in the features' own references)."""
    from features.intake.contract import FIELDS_BY_NAME
    from features.pipeline.manifest import REASON_CONTEXT

    held = set(manifest.inputs) if manifest.inputs is not None else set(FIELDS_BY_NAME)
    return {
        name: round(float(frame[name].notna().mean()), 4)
        for name in REASON_CONTEXT
        if name in held
        and name in frame.columns
        and FIELDS_BY_NAME.get(name) is not None
        and FIELDS_BY_NAME[name].nullable
        and len(frame)
    }


def _traffic_reference(
    scores: dict[str, np.ndarray],
    X: np.ndarray,
    declared_at: pd.Series,
    manifest: FeatureManifest,
    refit: bool,
    X_train: np.ndarray,
) -> ModelReference:
    """What ``parcelrisk monitor`` measures live traffic against: the period the lane cut-offs
    were fitted on, every parcel of it. The latest period, not the train one: entity-history
    features (counts, ages) grow with the history, so the period just before deployment is
    the one live traffic should resemble, and its score distribution is the one the lane
    shares were set on (a shift in it is a shift in the lanes). The train period's traffic
    measures how far each feature moves with time alone (``baseline_psi``). ``scores``: the
    lane cut-offs' own (``score_rows`` of these rows, each from a model that never saw its label).
    """
    period = {
        "name": "test" if refit else "validation",
        "from": str(declared_at.min()) if len(declared_at) else "",
        "to": str(declared_at.max()) if len(declared_at) else "",
    }
    return build_reference(
        X, manifest, scores["risk"], scores["expected_revenue"], period, X_baseline=X_train
    )


def _fit_revenue(
    params: TrainParams,
    X: np.ndarray,
    y: np.ndarray,
    revenue: np.ndarray,
    labelled: np.ndarray,
    parts: dict[str, np.ndarray],
    manifest: FeatureManifest,
    kinds: tuple[str, ...],
    kind_codes: np.ndarray,
    fitter: BoosterFitter | None = None,
) -> tuple[RevenueFit | None, str]:
    """The first-pass revenue model, or None and the one message that says why not."""
    illicit = labelled & (y == 1)
    with_revenue = illicit & np.isfinite(revenue)
    rev_train = parts["train"] & with_revenue
    rev_valid = parts["validation"] & with_revenue
    if not with_revenue.any():
        status = (
            f"no revenue data: revenue_recovered is empty for all {int(illicit.sum())} illicit "
            f"parcels with results recorded before the test period; revenue model and revenue "
            f"metrics skipped, lanes rank on risk"
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
        offence, why_pooled = _fit_offence_kinds(
            params, X, illicit, parts, manifest, kinds, kind_codes, fitter
        )
        share: tuple[float, ...] = ()
        if offence is not None:
            # By kind, a hurdle: each kind's share of offences that recovered anything, and the
            # gamma booster on the amounts of those (``kind_recovery_shares``).
            share = tuple(kind_recovery_shares(kind_codes, revenue, rev_train, len(kinds)))
            recovered = revenue >= MIN_REVENUE_EUR
            if (rev_train & recovered).sum() < MIN_REVENUE_TRAIN or (
                rev_valid & recovered
            ).sum() < MIN_REVENUE_VALIDATION:
                offence, share = None, ()
                why_pooled = (
                    f"{int((rev_train & recovered).sum())} train / "
                    f"{int((rev_valid & recovered).sum())} validation offences recovered any "
                    f"revenue (need {MIN_REVENUE_TRAIN} / {MIN_REVENUE_VALIDATION})"
                )
            else:
                rev_train, rev_valid = rev_train & recovered, rev_valid & recovered
        # Gamma deviance with a log link estimates the mean revenue, which is what ranking by
        # expected revenue needs; a model of log revenue estimates the geometric mean and
        # under-ranks the heavy tail (fines, large parcels) that carries most of the money.
        Xr = with_kind(X, kind_codes) if offence is not None else X
        fitted = _fit_booster(
            params,
            "gamma",
            Xr[rev_train],
            np.maximum(revenue[rev_train], MIN_REVENUE_EUR),
            Xr[rev_valid],
            np.maximum(revenue[rev_valid], MIN_REVENUE_EUR),
            manifest,
            fitter=fitter,
        )
        if offence is None:
            if why_pooled:
                log.info("revenue model pooled over offence types: %s", why_pooled)
            return RevenueFit(fitted), "fitted" + (f" (pooled: {why_pooled})" if why_pooled else "")
        nothing = [k for k, v in zip(kinds, share, strict=True) if v == 0.0]
        return RevenueFit(fitted, offence, kinds, share), (
            f"fitted by offence type ({len(kinds)} types: {', '.join(kinds)}"
            + (f"; never recovered revenue, carried as 0: {', '.join(nothing)}" if nothing else "")
            + ")"
        )
    log.warning("%s", status)
    return None, status


def _first_pass_revenue(
    revenue_fit: RevenueFit,
    status: str,
    distil: Callable[[lgb.Booster, lgb.Booster, np.ndarray], Distilled],
    fit_pooled: Callable[[], tuple[RevenueFit | None, str]],
    X_check: np.ndarray,
    bound_eur: float,
    distilled: dict[str, dict[str, float]],
    guard: dict[str, Any],
) -> tuple[lgb.Booster | None, RevenueFit | None, str]:
    """The first pass's revenue booster as served (by offence kind: the mixture distilled into
    one, by ``distil``), its fit and status, once the guard passed it on the parcels ``X_check``. A
    mixture that fails falls back to one pooled model (``fit_pooled``); a pooled model that
    fails, to none (lanes rank on risk). Records the distillation in ``distilled`` and the
    checks and fallbacks in ``guard``."""
    fallbacks = []
    if revenue_fit.offence is not None:
        student = distil(
            revenue_fit.revenue.booster,
            revenue_fit.offence.booster,
            np.asarray(revenue_fit.kind_share),
        )
        distilled["first_pass"] = {"rows": student.rows, "fidelity_r2_log": student.fidelity_r2}
        check = check_revenue_booster(student.booster, X_check, bound_eur, student.fidelity_r2)
        guard["checks"]["first_pass"] = check.to_dict()
        if check.passed:
            return student.booster, revenue_fit, status
        why = f"the distilled mixture by offence type {'; '.join(check.problems)}"
        fallbacks.append(f"{why}: one pooled revenue model instead")
        log.warning("revenue guard: %s", fallbacks[-1])
        distilled.clear()
        pooled, pooled_status = fit_pooled()
        if pooled is None:  # not on the rows the mixture was fitted on; said, all the same
            guard["fallback"] = "; ".join([*fallbacks, pooled_status])
            return None, None, pooled_status
        revenue_fit, status = pooled, f"fitted (pooled: {why})"
    check = check_revenue_booster(revenue_fit.revenue.booster, X_check, bound_eur)
    guard["checks"]["first_pass_pooled" if fallbacks else "first_pass"] = check.to_dict()
    if check.passed:
        guard["fallback"] = "; ".join(fallbacks) or None
        return revenue_fit.revenue.booster, revenue_fit, status
    why = f"the revenue model {'; '.join(check.problems)}"
    fallbacks.append(f"{why}: no revenue model, lanes rank on risk")
    log.warning("revenue guard: %s", fallbacks[-1])
    guard["fallback"] = "; ".join(fallbacks)
    return None, None, f"skipped: {why}; lanes rank on risk"


def _fit_offence_kinds(
    params: TrainParams,
    X: np.ndarray,
    illicit: np.ndarray,
    parts: dict[str, np.ndarray],
    manifest: FeatureManifest,
    kinds: tuple[str, ...],
    kind_codes: np.ndarray,
    fitter: BoosterFitter | None = None,
) -> tuple[FittedBooster | None, str]:
    """P(offence kind | parcel, illicit), or None and why the revenue model stays pooled."""
    if not params.revenue_by_offence:
        return None, ""
    if len(kinds) < 2:
        return None, (
            "the history records no offence types"
            if not kinds
            else f"one offence type only ({kinds[0]})"
        )
    typed = illicit & np.isfinite(kind_codes)
    train, valid = parts["train"] & typed, parts["validation"] & typed
    if train.sum() < MIN_REVENUE_TRAIN or valid.sum() < MIN_REVENUE_VALIDATION:
        return None, (
            f"{int(train.sum())} train / {int(valid.sum())} validation illicit parcels with an "
            f"offence type (need {MIN_REVENUE_TRAIN} / {MIN_REVENUE_VALIDATION})"
        )
    fitted = _fit_booster(
        params,
        "multiclass",
        X[train],
        kind_codes[train],
        X[valid],
        kind_codes[valid],
        manifest,
        {"num_class": len(kinds)},
        fitter,
    )
    return fitted, ""


def _refit_boosters(
    params: TrainParams,
    risk_fit: FittedBooster,
    revenue_fit: RevenueFit | None,
    X: np.ndarray,
    y: np.ndarray,
    revenue: np.ndarray,
    labelled: np.ndarray,
    manifest: FeatureManifest,
    kind_codes: np.ndarray,
    fitter: BoosterFitter | None = None,
) -> tuple[lgb.Booster, lgb.Booster | None, lgb.Booster | None, np.ndarray | None]:
    """The deployed boosters: the first pass's refit on all labelled parcels (and, by offence
    kind, each kind's share of offences that recovered anything, on all of them too).

    Same rounds and learning rate, so the refit's log-odds are on the first pass's scale and
    its calibration map applies. Re-matching the refit's scores to the first pass's
    distribution on recent traffic (shift, affine or quantile map) calibrated a little better on
    stationary toy data but undid what the refit learnt from a drifting hit rate, the case
    refitting is for; so the map is kept.
    """
    risk = _refit_booster(
        params, "binary", X[labelled], y[labelled], risk_fit.rounds, manifest, fitter=fitter
    )
    if revenue_fit is None:
        return risk, None, None, None
    illicit = labelled & (y == 1)
    rows = illicit & np.isfinite(revenue)
    offence, share = None, None
    if revenue_fit.offence is not None:
        typed = illicit & np.isfinite(kind_codes)
        offence = _refit_booster(
            params,
            "multiclass",
            X[typed],
            kind_codes[typed],
            revenue_fit.offence.rounds,
            manifest,
            {"num_class": len(revenue_fit.kinds)},
            fitter,
        )
        share = kind_recovery_shares(kind_codes, revenue, rows, len(revenue_fit.kinds))
        rows &= revenue >= MIN_REVENUE_EUR
    revenue_booster = _refit_booster(
        params,
        "gamma",
        revenue_fit.kind_matrix(X[rows], kind_codes[rows]),
        np.maximum(revenue[rows], MIN_REVENUE_EUR),
        revenue_fit.revenue.rounds,
        manifest,
        fitter=fitter,
    )
    return risk, revenue_booster, offence, share


def _periods_said(boundaries: SplitBoundaries) -> str:
    """The split's periods in words, for an error an analyst acts on."""
    day = "%Y-%m-%d"
    return (
        f"train {boundaries.start:{day}} to {boundaries.validation_start:{day}}, validation to "
        f"{boundaries.test_start:{day}}, test to {boundaries.end:{day}}"
    )
