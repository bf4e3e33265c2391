"""Evaluation: the model against its baselines on the held-out test period.

Pure functions: scores in, flat metrics and tables out. ``train_models`` evaluates the first
pass this way; ``parcelrisk promote`` scores champion and challenger on one holdout with the same
``evaluate_holdout``, so the gate compares exactly the figures a training run reports.

The baselines (``models.baselines``) are fitted on the model's own training labels: a
standardised logistic regression, the ASYCUDA-style (HS chapter, origin) risk profile and random
selection, whose metrics are its expectation, computed (``scorer_metrics``). Beside them, ``lanes`` is the model ranked as the lanes fill (``score_lanes``).
Metrics are finite numbers only: one that cannot be computed (no revenue data, no legacy rules,
one class) is left out and the second value of ``evaluate_holdout`` says why.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from models import baselines
from models.bundle import RiskModel
from models.labels import (
    CENSUS_DAY_MIN_PARCELS,
    census_mask,
    illicit_labels,
    labelled_mask,
    random_mask,
    require_columns,
    unbiased_mask,
)
from models.metrics import (
    LEVELS,
    calibration_table,
    pr_auc,
    random_selection_metrics,
    ranking_metrics,
    rates_by_group,
    roc_auc,
    selected_set_metrics,
    top_mask,
)
from models.thresholds import effective_priority

TRUTH_COLUMNS = ("declaration_id", "p_illicit", "illicit", "revenue_at_stake")
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

# One scorer's scores on the holdout rows: ``risk`` ranks for AUC, precision and recall,
# ``value`` for revenue@n%, ``prob`` (None if not a probability) adds Brier and ECE.
Scores = dict[str, np.ndarray | None]


def headline_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The few test metrics tracked by DVC: per evaluation and scorer, the HEADLINE_METRICS."""
    out = {}
    for key, value in metrics.items():
        parts = key.split(".")
        if len(parts) == 3 and (parts[2] in HEADLINE_METRICS or parts[1] in ("legacy", "ratio")):
            out[key] = value
    return dict(sorted(out.items()))


def score_model(model: RiskModel, frame: pd.DataFrame, X: np.ndarray | None = None) -> Scores:
    """Scores of a bundle on a feature frame: risk ranks risk, expected revenue ranks revenue.
    ``X``: the frame's matrix in the model's manifest order, when the caller has it."""
    scores = model.score(model.manifest.matrix(frame) if X is None else X)
    value = scores["expected_revenue"] if model.revenue_booster is not None else scores["risk"]
    return {"risk": scores["risk"], "value": value, "prob": scores["risk"], **scores}


def score_lanes(model_scores: Scores, aeo: np.ndarray, aeo_discount: float) -> Scores:
    """The ranking the red and yellow lanes fill on, as a scorer: the model's ``priority``
    (risk, or expected revenue under ``objective: revenue``) with AEO declarations' x
    ``aeo_discount`` (``effective_priority``, as served and as the cut-offs were fitted).

    The ``model`` row ranks precision by risk and revenue by expected revenue whatever the
    lanes rank on: under the default objective (risk) it reported revenue@1% 0.76 while the
    red lane (top 1% by risk) held 2% of the revenue (probe 36). ``lanes`` ranks every @k
    metric by the one priority, so revenue@k% is what red + yellow filled at k% would catch.
    A priority is not a probability (expected revenue is in EUR): no Brier or ECE.
    """
    priority = effective_priority(model_scores["priority"], aeo, aeo_discount)
    return {"risk": priority, "value": priority, "prob": None}


def describe_rankings(model: RiskModel) -> str:
    """One line saying what the ``model`` and ``lanes`` rows rank by (``score_model``,
    ``score_lanes`` with the model's own AEO discount)."""
    model_value = "expected revenue" if model.revenue_booster is not None else "risk"
    objective = model.thresholds.objective
    priority = "expected revenue" if objective == "revenue" else "risk"
    discount = model.thresholds.aeo_discount
    aeo = f"; AEO declarations' x {discount:g}, as served" if discount != 1.0 else ""
    return (
        f"model: precision by risk, revenue by {model_value}; lanes: both by priority "
        f"= {priority} (objective: {objective}{aeo})"
    )


SCORE_CHUNK_ROWS = 200_000  # rows a baseline scores at once (rows are scored alone)


def score_baselines(
    train_rows: pd.DataFrame,
    X_train: np.ndarray,
    y_train: np.ndarray,
    holdout: pd.DataFrame,
    X_holdout: np.ndarray,
    *,
    categorical: Sequence[int],
    seed: int,
    profile_strength: float,
) -> dict[str, Scores]:
    """The baselines fitted on the model's training rows and scored on the holdout rows.

    ``rules`` (the risk profile) only when the frames carry its keys; ``random`` ranks but
    claims no probability.
    """
    logistic = baselines.fit_logistic(X_train, y_train, seed, categorical=categorical)
    # a chunk at a time: the pipeline makes several float64 copies of what it scores (log,
    # imputation, scaling, one-hot), ~10 GB for a 10M-parcel history's 2.2M test parcels
    logistic_prob = np.concatenate(
        [
            logistic.predict_proba(X_holdout[i : i + SCORE_CHUNK_ROWS])[:, 1]
            for i in range(0, max(len(X_holdout), 1), SCORE_CHUNK_ROWS)
        ]
    )
    scores: dict[str, Scores] = {
        "logistic": {"risk": logistic_prob, "value": logistic_prob, "prob": logistic_prob},
    }
    if all(c in holdout.columns for c in baselines.PROFILE_KEYS):
        profile = baselines.fit_risk_profile(train_rows, y_train, profile_strength)
        rules = profile.score(holdout)
        scores["rules"] = {"risk": rules, "value": rules, "prob": rules}
    rand = baselines.random_scores(len(holdout), seed)  # ranks the predictions table only
    scores[baselines.RANDOM_BASELINE] = {"risk": rand, "value": rand, "prob": None}
    return scores


def scorer_metrics(
    name: str, s: Scores, illicit: np.ndarray, revenue: np.ndarray, levels: tuple[int, ...]
) -> dict[str, float]:
    """``ranking_metrics`` of one scorer on an evaluation sample (``s`` cut to it); of random
    selection (``baselines.RANDOM_BASELINE``), what it gives in expectation, not one draw."""
    if name == baselines.RANDOM_BASELINE:
        return random_selection_metrics(illicit, revenue, levels)
    prob = s.get("prob")
    return ranking_metrics(s["risk"], illicit, revenue, value=s["value"], prob=prob, levels=levels)


def check_truth_covers(declaration_ids: pd.Series, ground_truth: pd.DataFrame) -> None:
    """Refuse a ground truth without a truth for every one of ``declaration_ids`` (the test
    parcels); ``train`` asks before it fits, not after."""
    require_columns(ground_truth, TRUTH_COLUMNS, "ground truth")
    truth = ground_truth[list(TRUTH_COLUMNS)].drop_duplicates("declaration_id")
    known = truth.loc[truth["p_illicit"].notna(), "declaration_id"]
    lacking = ~declaration_ids.isin(known).to_numpy()
    if lacking.any():
        missing = declaration_ids[lacking].head(3).tolist()
        raise ParcelriskError(
            f"ground truth lacks {int(lacking.sum())} test parcel(s), e.g. {missing}"
        )


def attach_truth(frame: pd.DataFrame, ground_truth: pd.DataFrame) -> pd.DataFrame:
    """Frame rows with the generator's truth (``truth_*`` columns), in frame order."""
    check_truth_covers(frame["declaration_id"], ground_truth)
    truth = ground_truth[list(TRUTH_COLUMNS)].drop_duplicates("declaration_id")
    merged = frame[["declaration_id"]].merge(
        truth.rename(columns={c: f"truth_{c}" for c in TRUTH_COLUMNS[1:]}),
        on="declaration_id",
        how="left",
        validate="many_to_one",
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


def seen_selection_reasons(reasons: pd.Series, shown: int = 5) -> str:
    """The selection reasons a history holds, most frequent first: an export whose own words
    (``Zufallsauswahl``) were not mapped to ``random`` or ``rule:...`` shows here."""
    counts = reasons.dropna().astype(str).value_counts()
    if counts.empty:
        return "none recorded in the test period"
    listed = ", ".join(f"{value!r} {n:,}" for value, n in counts.head(shown).items())
    more = f" and {len(counts) - shown:,} more" if len(counts) > shown else ""
    return f"the test period's: {listed}{more}"


def evaluate_holdout(
    holdout: pd.DataFrame, scores: dict[str, Scores], levels: tuple[int, ...] = LEVELS
) -> tuple[dict[str, float], dict[str, str]]:
    """Flat metrics of every scorer on one holdout period (finite numbers only), and why the
    others are left out: ``{metric name pattern (fnmatch): why}``.

    ``holdout`` holds the labels (and ``truth_*`` columns when ground truth is known);
    ``scores[name]`` has ``risk`` and ``value`` (optionally ``prob``) aligned with its rows.
    ``test_random.*``: on the unbiased parcels (``unbiased_mask``: random exploration and
    census) against their inspection results; ``test_all.*``: on all parcels against the truth, with the oracle and model/oracle
    ratios; ``*.legacy.*``: the legacy rules as recorded, and the model at the legacy selection
    rate.
    """
    metrics: dict[str, float] = {}
    reasons: dict[str, str] = {}
    sample, _ = unbiased_mask(holdout)
    revenue = holdout["revenue_recovered"].to_numpy(np.float64, na_value=np.nan)
    has_revenue = np.isfinite(revenue)
    y_all = illicit_labels(holdout)
    rev_all = np.nan_to_num(revenue, nan=0.0)  # as ``evaluation_sample``
    y_rnd, rev_rnd = y_all[sample], rev_all[sample]
    if sample.any():
        if not has_revenue[sample].any():
            reasons["test_random.*.revenue_at_*"] = "no revenue data"
        for name, s in scores.items():
            cut = {k: v[sample] if v is not None else None for k, v in s.items()}
            result = scorer_metrics(name, cut, y_rnd, rev_rnd, levels)
            metrics.update({f"test_random.{name}.{k}": v for k, v in result.items()})
        # how many the unbiased sample holds, and of them a census's: the gate's verdict on
        # it is said with its size
        metrics["test_random.parcels"] = float(sample.sum())
        metrics["test_random.illicit"] = float(y_rnd.sum())
        metrics["test_random.census_parcels"] = float((sample & census_mask(holdout)).sum())
    else:
        reasons["test_random.*"] = (
            "no unbiased sample in the test period: no random-exploration parcels "
            f"(selection_reason 'random'; {seen_selection_reasons(holdout['selection_reason'])})"
            " and no census (selection_reason 'census', or a day of "
            f"{CENSUS_DAY_MIN_PARCELS} parcels or more every one inspected with a result)"
        )
        # Without one, the inspected parcels still say how the scorers rank among themselves:
        # biased (targeting chose them), so only for comparing scorers on the same parcels,
        # but an analyst sees a number rather than none at all.
        inspected = labelled_mask(holdout)
        y_ins = y_all[inspected]
        if 0 < y_ins.sum() < len(y_ins):
            for name, s in scores.items():
                if name == baselines.RANDOM_BASELINE:
                    expected = random_selection_metrics(y_ins, np.zeros(len(y_ins)), ())
                    auc, ap = expected["roc_auc"], expected["pr_auc"]
                else:
                    auc, ap = (
                        roc_auc(s["risk"][inspected], y_ins),
                        pr_auc(s["risk"][inspected], y_ins),
                    )
                metrics[f"test_inspected.{name}.roc_auc"] = auc
                metrics[f"test_inspected.{name}.pr_auc"] = ap
            metrics["test_inspected.parcels"] = float(inspected.sum())
            metrics["test_inspected.illicit"] = float(y_ins.sum())

    legacy = baselines.legacy_selection(holdout["selection_reason"])
    legacy_rate = float(legacy.mean())
    labelled = labelled_mask(holdout)
    if not legacy.any():
        reasons["test_random.legacy.*"] = (
            "every parcel inspected: no legacy selection to compare"
            if len(holdout) and labelled.all()
            else "no parcel carries a legacy rule selection (selection_reason 'rule:...'; "
            f"{seen_selection_reasons(holdout['selection_reason'])})"
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
            top = top_mask(scores["model"]["risk"][sample], legacy_rate)
            metrics["test_random.legacy.model_precision_at_legacy_rate"] = float(y_rnd[top].mean())

    if "truth_p_illicit" in holdout.columns:
        truth_y, truth_rev = _truth_targets(holdout)
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
            result = scorer_metrics(name, s, truth_y, truth_rev, levels)
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
                top = top_mask(scores["model"]["risk"], legacy_rate)
                model_at = selected_set_metrics(top, truth_y, truth_rev)
                metrics["test_all.legacy.model_hit_rate_at_legacy_rate"] = model_at["hit_rate"]
                top_value = top_mask(scores["model"]["value"], legacy_rate)
                metrics["test_all.legacy.model_revenue_share_at_legacy_rate"] = (
                    selected_set_metrics(top_value, truth_y, truth_rev)["revenue_share"]
                )
        else:
            reasons["test_all.legacy.*"] = reasons["test_random.legacy.*"]
    finite = _finite_metrics(metrics, reasons, scorers={*scores, "oracle"})
    return finite, dict(sorted(reasons.items()))


def _truth_targets(holdout: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(illicit, revenue caught if inspected) of every parcel by the ground truth."""
    truth_y = holdout["truth_illicit"].astype("boolean").fillna(False).to_numpy(np.float64)
    truth_rev = holdout["truth_revenue_at_stake"].to_numpy(np.float64, na_value=0.0) * truth_y
    return truth_y, truth_rev


def evaluation_sample(
    holdout: pd.DataFrame, evaluation: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, illicit, revenue) that ``evaluate_holdout`` judges ``evaluation`` on:
    ``test_all`` every parcel against the ground truth, ``test_random`` the unbiased sample
    against its recorded results."""
    if evaluation == "test_all":
        truth_y, truth_rev = _truth_targets(holdout)
        return np.ones(len(holdout), dtype=bool), truth_y, truth_rev
    if evaluation != "test_random":
        raise ValueError(f"unknown evaluation {evaluation!r}: test_all or test_random")
    sample, _ = unbiased_mask(holdout)
    revenue = holdout["revenue_recovered"].to_numpy(np.float64, na_value=np.nan)
    return sample, illicit_labels(holdout)[sample], np.nan_to_num(revenue, nan=0.0)[sample]


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


def holdout_predictions(
    holdout: pd.DataFrame, scores: dict[str, Scores], feature_names: Sequence[str]
) -> pd.DataFrame:
    """The holdout's ids, labels and truth with every scorer's risk and value, without features."""
    predictions = holdout.drop(columns=list(feature_names))
    for name, s in scores.items():
        predictions[f"{name}_risk"] = s["risk"]
        predictions[f"{name}_value"] = s["value"]
    predictions["model_priority"] = scores["model"]["priority"]
    predictions["random_exploration"] = random_mask(holdout)
    predictions["unbiased_sample"] = unbiased_mask(holdout)[0]
    return predictions


def holdout_tables(holdout: pd.DataFrame, model_scores: Scores) -> dict[str, pd.DataFrame]:
    """Calibration bins on the unbiased sample; selection and hit rates by origin at 5%."""
    tables: dict[str, pd.DataFrame] = {}
    rnd = unbiased_mask(holdout)[0]
    if rnd.any():
        tables["calibration_random"] = calibration_table(
            model_scores["prob"][rnd], illicit_labels(holdout)[rnd]
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
                illicit_labels(holdout)[rnd],
                holdout.loc[rnd, "origin_country"],
                0.05,
            )
    return tables
