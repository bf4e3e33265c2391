"""The monitor's core, pure: a period of decisions in, drift, lane shares, exploration hit rates,
disparity and alerts out (plain dicts, ready for JSON).

The frame is ``serving.monitor.data.read_period``'s: one row per declaration, with its stored
scores, lane, exploration flag, packed feature vector and inspection result if known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.notes import LANE_IMPLAUSIBLE, LANE_UNVALUED_CURRENCY
from models.capacity import wilson_interval
from models.drift import measure_drift, population_stability_index
from models.reference import bin_shares
from models.thresholds import fit_lane_thresholds
from serving.auditor.disparity import DIMENSIONS, LaneCount, group_rates
from serving.decision import unpack_features
from serving.monitor.acks import Ack, apply_acks
from serving.monitor.sources import (
    OPERATOR_CHANGE_SHARE,
    OperatorFaults,
    fault_source_words,
    fault_sources,
    operator_change_words,
    operator_changes,
    operator_faults,
    operator_shares,
)

if TYPE_CHECKING:
    from features.params import MonitorParams
    from models.bundle import RiskModel

LaneTargets = Mapping[str, tuple[float, float]]  # thresholds version -> (red_rate, yellow_rate)


@dataclass(frozen=True)
class Alert:
    # feature_drift, score_drift, lane_share, exploration_hit_rate, exploration_revenue,
    # disparity, operator_change
    kind: str
    subject: str
    value: float
    threshold: float
    message: str
    # the value's interval (exploration hit rate and revenue): an acknowledged level still
    # inside it is no news
    low: float | None = None
    high: float | None = None
    flag: str = ""  # a disparity's direction ("more red than hits justify" or "less ...")


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Normal interval of a mean (revenue per inspection: many zeros, a long tail; fine for the
    tens of results a judged bucket has, and it says so by its width), kept within the values'
    range: a mean of amounts recovered is never negative, whatever the normal tail says."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return (float("nan"), float("nan"))
    half = _z(confidence) * float(values.std(ddof=1)) / math.sqrt(n)
    mean = float(values.mean())
    return (max(mean - half, float(values.min())), min(mean + half, float(values.max())))


def feature_matrix(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored (packed) feature vectors as one float64 matrix, a row each (every vector as long
    as the first: ValueError otherwise)."""
    if not len(blobs):
        return np.empty((0, 0))
    # filled row by row: the unpacked rows joined first held the matrix twice (~400 MB more at
    # DRIFT_VECTORS of 99 features)
    first = np.frombuffer(unpack_features(bytes(blobs[0])), dtype="<f8")
    X = np.empty((len(blobs), len(first)), dtype="<f8")
    X[0] = first
    for i in range(1, len(blobs)):
        X[i] = np.frombuffer(unpack_features(bytes(blobs[i])), dtype="<f8")
    return X


# --- drift ------------------------------------------------------------------------------------


def feature_alert_level(baseline_psi: float | None, params: MonitorParams) -> dict[str, Any]:
    """The PSI above which a feature alerts: ``psi_feature_alert``, or ``trend_margin`` times
    the PSI it showed between the train and the reference period when that is higher (a
    feature trending with time, whose live PSI is large by construction: it is "trending")."""
    trending = baseline_psi is not None and baseline_psi > params.psi_feature_alert
    level = params.trend_margin * baseline_psi if trending else params.psi_feature_alert
    return {"trending": trending, "alert_above": max(level, params.psi_feature_alert)}


def deciding_models(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """(model name, version) of every model that decided some of the period's decisions (one
    with either missing names none). The pairs grouped, not a text pair per decision: two
    columns made text and a tuple each (1M decisions: 1.7 s, 69 MB) for two pairs; grouped on
    the categories' codes, 0.03 s and 33 MB (drop_duplicates: 58 MB)."""
    pairs = frame.groupby(["model_name", "model_version"], observed=True).size().index
    return {(str(name), str(version)) for name, version in pairs}


# what ``compare_period`` reads of a period: all of the period before that ``monitor_period`` uses
COMPARED_COLUMNS = (
    "manifest_fingerprint", "model_name", "model_version", "risk", "features", "operator_id",
)  # fmt: skip


@dataclass(frozen=True)
class Compared:
    """The decisions of a period comparable with the champion's reference: each feature's and
    the score's bin shares (the reference's bins, missing last) and their PSI against it."""

    rows: int
    score_rows: int
    features: list[dict[str, Any]]  # measure_drift's fields + the alert level
    shares: list[np.ndarray]  # per feature, in reference order
    score: dict[str, Any] | None
    score_shares: np.ndarray | None
    # feature vectors compared: ``rows`` unless the period was read with a sample of them
    vectors: int = 0
    # the compared vectors' faults per operator, and every decision's operator shares (None
    # and empty: a period read without operators)
    faults: OperatorFaults | None = None
    operators: dict[str, float] = field(default_factory=dict)
    decisions: int = 0


def _counts(values: pd.Series) -> dict[str, int]:
    """Each value's count, commonest first, ties in order of first appearance; only values
    present: a ``category`` column's ``value_counts`` also lists its unused categories (at 0)
    and breaks ties in category order, so its codes are counted instead, as text would be."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return {str(k): int(v) for k, v in values.value_counts().items()}
    names = values.cat.categories
    counts = pd.Series(values.cat.codes.to_numpy()).value_counts()
    return {str(names[k]): int(v) for k, v in counts.items() if k >= 0}  # -1: missing


def _masks(
    frame: pd.DataFrame, champion: RiskModel, info: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Which decisions were made with the champion's feature manifest (their vectors compare
    with its reference), and which by the champion itself (their scores do)."""
    comparable = (frame["manifest_fingerprint"] == champion.manifest.fingerprint).to_numpy()
    by_champion = (
        (frame["model_name"] == info["name"]) & (frame["model_version"] == info["version"])
    ).to_numpy()
    return comparable, by_champion


def compare_period(
    frame: pd.DataFrame, champion: RiskModel, info: Mapping[str, str], params: MonitorParams
) -> Compared:
    """``frame``'s comparison with the champion's reference (which it must have): what a
    period leaves once measured, its vectors no longer needed (the period before is reduced
    to this before the period itself is read: ``serving.monitor.cli.monitor_store``)."""
    if frame.empty:
        return Compared(0, 0, [], [], None, None)
    reference = champion.reference
    comparable, by_champion = _masks(frame, champion, info)
    # a long period holds the vectors of a sample (``read_period``'s vectors_at_most)
    sampled = comparable & frame["features"].notna().to_numpy()
    X = feature_matrix(frame.loc[sampled, "features"].tolist())
    features, shares = [], []
    if len(X):
        for j, ref in enumerate(reference.features):
            features.append(asdict(measure_drift(ref, X[:, j], params.psi_epsilon)))
            features[-1].update(feature_alert_level(ref.baseline_psi, params))
            shares.append(bin_shares(ref, X[:, j]))
    score = score_shares = None
    if by_champion.any():
        live = frame.loc[by_champion, "risk"].to_numpy(np.float64)
        score = asdict(measure_drift(reference.score, live, params.psi_epsilon))
        score_shares = bin_shares(reference.score, live)
    faults, operators = None, {}
    if "operator_id" in frame:
        operators = operator_shares(frame["operator_id"])
        if len(X):
            faults = operator_faults(frame.loc[sampled, "operator_id"], X, reference.features)
    return Compared(
        int(comparable.sum()),
        int(by_champion.sum()),
        features,
        shares,
        score,
        score_shares,
        len(X),
        faults,
        operators,
        len(frame),
    )


def _shift_detail(f: Mapping[str, Any], ref: Any, live: np.ndarray) -> str:
    """What moved, in the words a duty officer checks a feed with: a missing share that
    changed, or (a categorical feature) values the reference never held."""
    details = []
    missing, was = f["missing_share"], f["reference_missing_share"]
    if abs(missing - was) >= 0.05:
        details.append(f"missing in {missing:.0%} of decisions (reference {was:.0%})")
    if ref.kind == "discrete":
        other, other_was = float(live[-2]), float(ref.shares[-2])
        if other - other_was >= 0.05:
            details.append(
                f"{other:.0%} of decisions hold a value outside the reference's {len(ref.edges)} "
                f"commonest (reference {other_was:.0%})"
            )
    return "; " + "; ".join(details) if details else ""


def feed_break(f: Mapping[str, Any], ref: Any, live: np.ndarray, params: MonitorParams) -> str:
    """Why a feature's feed looks broken (empty: it does not): its missing share, or for a
    categorical feature its share of values the reference never held, rose more than
    ``missing_rise_alert`` over the reference's. A feature gone missing is a feed's fault, not
    a population that changed; half the traffic on an unseen category overnight is a code list
    changed upstream far more often than a new trade route. One test for the drift alert's
    words and for ``lanes refit``, which fits no cut-off on such a feed."""
    rise = params.missing_rise_alert
    kind = feed_fault(f, ref, live, params)
    if kind == "missing":
        return f"its missing share rose more than monitor.missing_rise_alert={rise:g}"
    if kind == "outside":
        return (
            "its share of values outside the reference's categories rose more than "
            f"monitor.missing_rise_alert={rise:g}"
        )
    return ""


def feed_fault(f: Mapping[str, Any], ref: Any, live: np.ndarray, params: MonitorParams) -> str:
    """Which of ``feed_break``'s tests a feature fails: "missing", "outside" or ""."""
    rise = params.missing_rise_alert
    if f["missing_share"] - f["reference_missing_share"] > rise:
        return "missing"
    if ref.kind == "discrete" and float(live[-2]) - float(ref.shares[-2]) > rise:
        return "outside"
    return ""


def _source_words(
    now: Compared, j: int, kind: str, before: Compared | None
) -> tuple[list[dict[str, Any]], str]:
    """Whose declarations a broken feed's faults are (``serving.monitor.sources``); nothing
    for a period read without operators."""
    if now.faults is None:
        return [], ""
    sources = fault_sources(now.faults, j, kind, before.faults if before is not None else None)
    return sources, fault_source_words(sources, kind)


def check_feed(
    frame: pd.DataFrame, champion: RiskModel, info: Mapping[str, str], params: MonitorParams
) -> dict[str, Any]:
    """The feed test of ``feed_break`` on every feature of a period's decisions comparable
    with the champion's reference: rows (how many), checked (False with ``not_checked``, the
    reason, when there is no reference or fewer than ``min_drift_rows``) and broken (each
    feature that fails it: {feature, moved, whose}, what moved in a duty officer's words and
    whose declarations it moved in, ``serving.monitor.sources``)."""
    if champion.reference is None:
        return {"rows": 0, "checked": False, "broken": [],
                "not_checked": "the champion has no training reference"}  # fmt: skip
    now = compare_period(frame, champion, info, params)
    if now.rows < params.min_drift_rows:
        return {
            "rows": now.rows,
            "checked": False,
            "broken": [],
            "not_checked": f"{now.rows} decisions made with the champion's feature manifest, "
            f"fewer than monitor.min_drift_rows={params.min_drift_rows}",
        }
    broken = []
    for j, (f, ref, live) in enumerate(
        zip(now.features, champion.reference.features, now.shares, strict=True)
    ):
        if kind := feed_fault(f, ref, live, params):
            _, whose = _source_words(now, j, kind, None)
            broken.append(
                {
                    "feature": f["name"],
                    "moved": _shift_detail(f, ref, live).removeprefix("; "),
                    "whose": whose.removeprefix("; "),
                }
            )
    return {"rows": now.rows, "checked": True, "broken": broken}


def measure_period_drift(
    frame: pd.DataFrame,
    champion: RiskModel,
    info: Mapping[str, str],
    params: MonitorParams,
    previous: pd.DataFrame | Compared | None = None,
    previous_since: pd.Timestamp | None = None,
) -> tuple[dict[str, Any], list[Alert]]:
    """PSI (and KS for numeric features) of every feature and of the risk score against the
    champion's training reference.

    ``previous``: the decisions of the period of the same length just before (None: not
    read): each alert says whether its shift is new or stood out there too, and how far it
    moved since. A reference is one test period of history: a dominant seller's count on a
    decile edge, or the hit-rate features under the live inspection policy, differ from it for
    good (probe 17); a person acknowledges such a shift at its level until a date
    (``serving.monitor.acks``), and it pages again once it moves beyond.
    """
    reference = champion.reference
    fingerprint = champion.manifest.fingerprint
    comparable, by_champion = _masks(frame, champion, info)
    others = _counts(frame.loc[~comparable, "manifest_fingerprint"])
    section: dict[str, Any] = {
        "manifest_fingerprint": fingerprint,
        "comparable_decisions": int(comparable.sum()),
        # made with another feature manifest (an older or newer model): their vectors hold
        # other features, so they are counted, not compared
        "other_manifest_decisions": int((~comparable).sum()),
        "other_manifests": others,
        "champion_decisions": int(by_champion.sum()),
    }
    if reference is None:
        section.update(
            available=False,
            reason=(
                f"the champion ({info['name']} v{info['version']}) has no training reference "
                "(trained before references were stored with the model): drift not measured; "
                "retrain to get one"
            ),
        )
        return section, []
    section.update(available=True, reference_period=reference.period, reference_rows=reference.rows)
    now = compare_period(frame, champion, info, params)
    # a long period's drift is measured on a sample of its vectors (``DRIFT_VECTORS``)
    section["feature_vectors_compared"] = now.vectors
    before = (
        compare_period(previous, champion, info, params)
        if isinstance(previous, pd.DataFrame)
        else previous
    )
    features = now.features
    prior = before is not None and before.rows >= params.min_drift_rows
    section["previous"] = {
        "since": previous_since.isoformat() if previous_since is not None else None,
        "comparable_decisions": before.rows if before is not None else 0,
        "judged": prior,
    }
    if not prior:
        section["previous"]["not_judged"] = (
            "not read"
            if before is None
            else f"{before.rows} comparable decisions, fewer than "
            f"monitor.min_drift_rows={params.min_drift_rows}: alerts say nothing of it"
        )
    if prior and features:  # none when this period holds no comparable decision
        for f, live, was, shares_before in zip(
            features, now.shares, before.features, before.shares, strict=True
        ):
            f["previous_psi"] = was["psi"]
            f["psi_since_previous"] = population_stability_index(
                shares_before, live, params.psi_epsilon
            )
    order = sorted(range(len(features)), key=lambda j: -features[j]["psi"])
    unseen = unseen_hs6(frame.loc[comparable], champion)
    section["hs6_unseen"] = unseen
    section.update(
        features=[features[j] for j in order],
        score=now.score,
        # an array: a list held a Python float (32 bytes) per decision until the report
        score_live=frame.loc[by_champion, "risk"].to_numpy(np.float64),
    )
    alerts: list[Alert] = []
    # operators that appeared or vanished: judged on every decision of both periods, whatever
    # manifest made them
    if before is not None and min(now.decisions, before.decisions) >= params.min_drift_rows:
        changes = operator_changes(now.operators, before.operators)
        section["operators"] = {"shares": dict(list(now.operators.items())[:10]), **changes}
        if changes["new"] or changes["gone"]:
            subject = ", ".join(sorted({*changes["new"], *changes["gone"]}))
            value = max([*changes["new"].values(), *changes["gone"].values()])
            message = operator_change_words(changes)
            alerts.append(Alert("operator_change", subject, value, OPERATOR_CHANGE_SHARE, message))
    judged = now.rows >= params.min_drift_rows
    section["judged"] = judged
    if not judged:
        section["not_judged"] = (
            f"{now.rows} comparable decisions, fewer than "
            f"monitor.min_drift_rows={params.min_drift_rows}"
        )
        return section, alerts
    for j in order:
        f = features[j]
        if f["psi"] <= f["alert_above"]:
            continue
        trend = (
            f", {params.trend_margin:g} x its move within training ({f['baseline_psi']:.3f})"
            if f["trending"]
            else ""
        )
        message = (
            f"feature {f['name']}: PSI {f['psi']:.3f} against the training reference "
            f"(alert above {f['alert_above']:.3f}{trend})"
            + _shift_detail(f, reference.features[j], now.shares[j])
        )
        if why := feed_break(f, reference.features[j], now.shares[j], params):
            kind = feed_fault(f, reference.features[j], now.shares[j], params)
            f["feed_sources"], whose = _source_words(now, j, kind, before if prior else None)
            message += f"; a broken feed ({why}){whose}"
        names_hs = any(part.startswith("hs") for part in f["name"].split("_"))
        if names_hs and unseen["share"] >= UNSEEN_HS6_SAID:
            message += _unseen_hs6_words(unseen)
        message += _since_previous(
            f["previous_psi"] if prior else None,
            f.get("psi_since_previous"),
            f["alert_above"],
        )
        alerts.append(Alert("feature_drift", f["name"], f["psi"], f["alert_above"], message))
    score = now.score
    score_judged = score is not None and now.score_rows >= params.min_drift_rows
    if score_judged and score["psi"] > params.psi_score_alert:
        prior_score = (
            prior and before.score is not None and before.score_rows >= params.min_drift_rows
        )
        score["previous_psi"] = before.score["psi"] if prior_score else None
        score["psi_since_previous"] = (
            population_stability_index(before.score_shares, now.score_shares, params.psi_epsilon)
            if prior_score
            else None
        )
        message = (
            f"risk score: PSI {score['psi']:.3f} against the training reference "
            f"(alert above {params.psi_score_alert})"
            + _since_previous(
                score["previous_psi"], score["psi_since_previous"], params.psi_score_alert
            )
        )
        alerts.append(Alert("score_drift", "risk", score["psi"], params.psi_score_alert, message))
    return section, alerts


# Decisions on HS6 codes the model never learned, from which an HS feature's drift alert
# names them: a new HS edition's codes showed only as "cat_hs6 PSI 0.307" (probe 32)
UNSEEN_HS6_SAID = 0.01


def unseen_hs6(frame: pd.DataFrame, champion: RiskModel) -> dict[str, Any]:
    """The share of decisions declared under an HS6 code the champion's ``cat_hs6`` categories
    do not hold (a table's ``hs_reads_as`` codes read as known), and the commonest such codes.
    Unmeasured (share 0, ``measured`` False) without the column or the categorical."""
    manifest = champion.manifest
    known = manifest.categories.get("cat_hs6")
    if "hs6" not in frame or not known:
        return {"measured": False, "share": 0.0, "decisions": 0, "top": {}}
    read_as = manifest.params.get("hs_reads_as") or {}
    codes = frame["hs6"].astype("category")
    categories = [str(c) for c in codes.cat.categories]
    held = set(known) | set(read_as)
    new = np.array([*(c not in held for c in categories), False])[codes.cat.codes.to_numpy()]
    counts = codes[new].value_counts()
    counts = counts[counts > 0].head(5)
    return {
        "measured": True,
        "share": float(new.mean()) if len(new) else 0.0,
        "decisions": int(new.sum()),
        "top": {str(code): int(n) for code, n in counts.items()},
    }


def _unseen_hs6_words(unseen: Mapping[str, Any]) -> str:
    listed = ", ".join(f"{code} ({n})" for code, n in unseen["top"].items())
    return (
        f"; {unseen['share']:.1%} of decisions were declared under HS6 codes the model never "
        f"learned: {listed}; a new HS edition? features.hs_correlation reads them as the codes "
        "they continue"
    )


def _since_previous(previous: float | None, moved: float | None, level: float) -> str:
    """Where a shift stood in the period before: new, or there already and how far it moved
    since. Said, never acted on: a shift is silenced only by a person's acknowledgement
    (``serving.monitor.acks``), never because two periods showed it (probe 19: a feed broken
    in both windows read as standing, once the cron had missed its first days)."""
    if previous is None:
        return ""
    if previous <= level:
        return f"; new since the previous period (PSI {previous:.3f} there)"
    return (
        f"; it stood out in the previous period too (PSI {previous:.3f}) and moved "
        f"{moved:.3f} since"
    )


# --- lanes ------------------------------------------------------------------------------------


def _relative(share: float, target: float) -> float:
    return (share - target) / target if target > 0 else float("nan")


def measure_lane_shares(
    frame: pd.DataFrame,
    champion: RiskModel,
    info: Mapping[str, str],
    targets: LaneTargets,
    params: MonitorParams,
) -> tuple[dict[str, Any], list[Alert]]:
    """Red and yellow shares per day and over the period against each decision's thresholds
    version's targets; the cut-offs that would have filled them on this traffic; exploration's
    own share."""
    # a period's few versions looked up once each, not once a decision (nor its text made)
    versions = frame["thresholds_version"].astype("category")
    known = versions.isin(list(targets)).to_numpy()
    # Exploration parcels are a random draw lifted to at least the exploration lane: leaving
    # them out keeps the model's own shares unbiased, and exploration is reported on its own.
    # So are the lanes policy raised (a currency without an exchange rate, an implausible
    # number): not the cut-offs' doing, and a cut-off refit cannot mend them (probe 32: a
    # rate-less currency filled yellow to 10% against 4%, and the alert advised a lower
    # yellow cut-off, which would fill it more).
    policy = policy_raised(frame)
    judged = known & ~frame["exploration"].to_numpy(bool) & ~policy.any(axis=1).to_numpy()
    of_version = [targets.get(str(v), (np.nan, np.nan)) for v in versions.cat.categories]
    # the last row for a missing version (code -1)
    by_code = np.array([*of_version, (np.nan, np.nan)], dtype=float)[versions.cat.codes.to_numpy()]
    red_target, yellow_target = by_code[:, 0], by_code[:, 1]
    red = (frame["lane"] == "red").to_numpy(bool)
    yellow = (frame["lane"] == "yellow").to_numpy(bool)
    # the UTC day as a time, named once per day below: a name per decision was ~0.13 KB each
    day = frame["declared_at"].dt.floor("D").array
    part = pd.DataFrame(
        {
            "day": day[judged],
            "red": red[judged],
            "yellow": yellow[judged],
            "red_target": red_target[judged],
            "yellow_target": yellow_target[judged],
        }
    )
    daily = (
        part.groupby("day")
        .agg(
            decisions=("red", "size"),
            red=("red", "mean"),
            yellow=("yellow", "mean"),
            red_target=("red_target", "mean"),
            yellow_target=("yellow_target", "mean"),
        )
        .reset_index()
    )
    daily["day"] = daily["day"].dt.strftime("%Y-%m-%d")
    n = len(part)
    overall = {
        "decisions": n,
        "red": float(part["red"].mean()) if n else None,
        "yellow": float(part["yellow"].mean()) if n else None,
        "red_target": float(part["red_target"].mean()) if n else None,
        "yellow_target": float(part["yellow_target"].mean()) if n else None,
    }
    exploration_rates = frame["exploration_rate"].to_numpy(np.float64)
    section: dict[str, Any] = {
        "targets": {k: {"red_rate": v[0], "yellow_rate": v[1]} for k, v in targets.items()},
        "unknown_thresholds_decisions": int((~known).sum()),
        "unknown_thresholds_versions": sorted({str(v) for v in versions[~known].unique()}),
        "exploration_left_out": int((known & frame["exploration"].to_numpy(bool)).sum()),
        "policy_left_out": {code: int(policy[code].sum()) for code in policy if policy[code].any()},
        "overall": overall,
        "daily": daily.to_dict("records"),
        "exploration": {
            "share": float(frame["exploration"].mean()) if len(frame) else None,
            "target": (
                float(np.nanmean(exploration_rates))
                if np.isfinite(exploration_rates).any()
                else None
            ),
        },
        "refit": refit_cutoffs(frame, champion, info),
    }
    alerts: list[Alert] = []
    section["judged"] = n >= params.min_lane_decisions
    if not section["judged"]:
        section["not_judged"] = (
            f"{n} decisions with known targets outside exploration, fewer than "
            f"monitor.min_lane_decisions={params.min_lane_decisions}"
        )
        return section, alerts
    if (raised := _policy_alert(frame, policy, overall, params)) is not None:
        alerts.append(raised)
    for lane in ("red", "yellow"):
        deviation = _relative(overall[lane], overall[f"{lane}_target"])
        overall[f"{lane}_deviation"] = deviation
        if abs(deviation) > params.max_lane_share_deviation:
            alerts.append(
                Alert(
                    "lane_share",
                    lane,
                    deviation,
                    params.max_lane_share_deviation,
                    f"{lane} lane: {overall[lane]:.2%} of decisions against a target of "
                    f"{overall[f'{lane}_target']:.2%} ({deviation:+.0%}, alert beyond "
                    f"+/-{params.max_lane_share_deviation:.0%})",
                )
            )
    return section, alerts


# the lane codes that say policy, not the model's risk, set a decision's lane
POLICY_CODES = (LANE_UNVALUED_CURRENCY, LANE_IMPLAUSIBLE)


def policy_raised(frame: pd.DataFrame) -> pd.DataFrame:
    """Per decision and ``POLICY_CODES`` code: whether its warning codes hold it (all False
    for a period read without codes)."""
    if "warning_codes" not in frame:
        return pd.DataFrame({code: np.zeros(len(frame), bool) for code in POLICY_CODES})
    codes = frame["warning_codes"].astype("category")
    categories = [str(c) for c in codes.cat.categories]
    index = codes.cat.codes.to_numpy()
    out = {}
    for code in POLICY_CODES:
        # per distinct JSON text of codes, not per decision (a period repeats a few)
        has = np.array([*(f'"{code}"' in text for text in categories), False])
        out[code] = has[index]  # -1 (no codes) reads the last: False
    return pd.DataFrame(out)


def _policy_alert(
    frame: pd.DataFrame,
    policy: pd.DataFrame,
    overall: Mapping[str, Any],
    params: MonitorParams,
) -> Alert | None:
    """Decisions whose lane policy raised, when they alone are more of the traffic than the
    yellow lane's allowed deviation: a feed's fault, said with its currencies."""
    raised = policy.any(axis=1).to_numpy()
    share = float(raised.mean()) if len(raised) else 0.0
    target = overall.get("yellow_target")
    if not raised.any() or target is None or not np.isfinite(target):
        return None
    bound = params.max_lane_share_deviation * target
    if share <= bound:
        return None
    parts = []
    unvalued = policy[LANE_UNVALUED_CURRENCY].to_numpy()
    if unvalued.any():
        currencies = frame.loc[unvalued, "currency"].astype(str).value_counts().head(5)
        named = ", ".join(f"{c} {n}" for c, n in currencies.items())
        parts.append(f"{int(unvalued.sum())} for a currency without an exchange rate ({named})")
    implausible = policy[LANE_IMPLAUSIBLE].to_numpy()
    if implausible.any():
        parts.append(f"{int(implausible.sum())} for a number above its plausible bound")
    return Alert(
        "lane_policy",
        "policy",
        share,
        bound,
        f"{share:.2%} of decisions had their lane raised by policy, not by the model: "
        f"{'; '.join(parts)}. Mend the feed (features.fx for a currency) rather than the "
        "cut-offs: these decisions are left out of the lane shares",
    )


def refit_cutoffs(
    frame: pd.DataFrame, champion: RiskModel, info: Mapping[str, str]
) -> dict[str, Any] | None:
    """The cut-offs that would have filled the champion's target shares on this period's
    traffic: its decisions' priority after the AEO discount the service applied (from each
    decision's recorded lane policy), refitted as training fits them (``fit_lane_thresholds``).
    None when the champion made no decision in the period."""
    _, mine = _masks(frame, champion, info)
    if not mine.any():
        return None
    thresholds = champion.thresholds
    column = "expected_revenue" if thresholds.objective == "revenue" else "risk"
    priority = frame.loc[mine, column].to_numpy(np.float64)
    discount = frame.loc[mine, "aeo_risk_discount"].to_numpy(np.float64)
    aeo = frame.loc[mine, "aeo_operator"].to_numpy(bool)
    effective = np.where(aeo, priority * discount, priority)
    refit = fit_lane_thresholds(
        effective, thresholds.red_rate, thresholds.yellow_rate, thresholds.objective
    )
    return {
        "decisions": int(mine.sum()),
        "objective": thresholds.objective,
        "red_cutoff": refit.red_cutoff,
        "yellow_cutoff": refit.yellow_cutoff,
        "current_red_cutoff": thresholds.red_cutoff,
        "current_yellow_cutoff": thresholds.yellow_cutoff,
        "current_version": thresholds.version,
    }


# --- exploration ------------------------------------------------------------------------------


def _hit_stats(part: pd.DataFrame, confidence: float) -> dict[str, Any]:
    results = part[part["has_result"]]
    n = len(results)
    hits = int((results["illicit"] == 1).sum())
    revenue = results["revenue_recovered"].fillna(0.0).to_numpy(np.float64)
    lows, highs = wilson_interval(np.array([hits]), np.array([n]), z=_z(confidence))
    low, high = float(lows[0]), float(highs[0])
    rev_low, rev_high = mean_interval(revenue, confidence)
    return {
        "parcels": len(part),
        "results": n,
        "results_missing": len(part) - n,
        "hits": hits,
        "hit_rate": hits / n if n else None,
        "hit_rate_low": low if n else None,
        "hit_rate_high": high if n else None,
        # what the deciding model expected of the same parcels: their mean calibrated risk
        "expected_hit_rate": float(results["risk"].mean()) if n else None,
        "revenue_per_inspection": float(revenue.mean()) if n else None,
        "revenue_low": rev_low if n >= 2 else None,
        "revenue_high": rev_high if n >= 2 else None,
        "expected_revenue_per_inspection": float(results["expected_revenue"].mean()) if n else None,
    }


def collapse_needs(expected: float, params: MonitorParams) -> int | None:
    """Results needed before no hit at all is told from ``expected``: the smallest n whose
    Wilson upper bound of 0 hits, z^2 / (n + z^2), lies below expected x (1 - tolerance).
    None when nothing is expected (no collapse to see)."""
    below = expected * (1 - params.hit_rate_tolerance)
    if not below > 0:
        return None
    z2 = _z(params.confidence) ** 2
    return math.floor(z2 * (1 - below) / below) + 1


def _judge_exploration(
    stats: Mapping[str, Any], params: MonitorParams, subject: str, label: str
) -> list[Alert]:
    """The hit rate's and the revenue per inspection's intervals against what the model
    expected of the same parcels, each beyond expected x (1 -/+ tolerance) alerting."""
    alerts = []
    n = stats["results"]
    tests = [
        ("exploration_hit_rate", "hit rate", stats["hit_rate"], stats["hit_rate_low"],
         stats["hit_rate_high"], stats["expected_hit_rate"], params.hit_rate_tolerance, "{:.2%}"),
        ("exploration_revenue", "revenue per inspection", stats["revenue_per_inspection"],
         stats["revenue_low"], stats["revenue_high"], stats["expected_revenue_per_inspection"],
         params.revenue_tolerance, "{:,.2f}"),
    ]  # fmt: skip
    for kind, what, value, low, high, expected, tolerance, fmt in tests:
        if value is None or low is None or expected is None or not math.isfinite(expected):
            continue
        below, above = expected * (1 - tolerance), expected * (1 + tolerance)
        if high < below:
            where, bound = "below", below
        elif low > above:
            where, bound = "above", above
        else:
            continue
        alerts.append(
            Alert(
                kind,
                subject,
                value,
                bound,
                f"{label} {what} {fmt.format(value)} ({params.confidence:.0%} interval "
                f"{fmt.format(low)}-{fmt.format(high)}, {n} results) is {where} the model's "
                f"expected {fmt.format(expected)} by more than {tolerance:.0%}",
                low,
                high,
            )
        )
    return alerts


def measure_exploration(
    frame: pd.DataFrame,
    since: pd.Timestamp,
    champion: RiskModel,
    params: MonitorParams,
) -> tuple[dict[str, Any], list[Alert]]:
    """Hit rate and revenue per inspection of the random-exploration parcels, per bucket of
    ``bucket_days`` from ``since`` and over the period, against the model's expectation.

    Both are judged over the period and in each bucket holding ``min_results`` results (a
    collapse in the last week of a month is not diluted by the three before it). The section
    says how many results a collapse to no hit at all needs before it can be told from what
    the model expected (``collapse_needs``): a period with fewer cannot see it, and says so.
    """
    explored = frame[frame["exploration"]].copy()
    bucket = ((explored["declared_at"] - since) // pd.Timedelta(days=params.bucket_days)).astype(
        int
    )
    explored["bucket"] = bucket
    buckets = []
    for k, part in explored.groupby("bucket", sort=True):
        start = since + pd.Timedelta(days=params.bucket_days * int(k))
        buckets.append({"from": start.strftime("%Y-%m-%d"), **_hit_stats(part, params.confidence)})
    overall = _hit_stats(explored, params.confidence)
    reference = champion.reference
    section: dict[str, Any] = {
        "overall": overall,
        "buckets": buckets,
        "bucket_days": params.bucket_days,
        "reference_mean_risk": reference.mean_risk if reference is not None else None,
        "reference_mean_expected_revenue": (
            reference.mean_expected_revenue if reference is not None else None
        ),
    }
    alerts: list[Alert] = []
    n = overall["results"]
    section["judged"] = n >= params.min_results
    if not section["judged"]:
        section["not_judged"] = (
            f"{n} exploration results ({overall['results_missing']} still missing), fewer than "
            f"monitor.min_results={params.min_results}"
        )
        return section, alerts
    expected = overall["expected_hit_rate"]
    needs = collapse_needs(expected, params)
    section["collapse_needs_results"] = needs
    if needs is not None and n < needs:
        section["collapse_not_judged"] = (
            f"with {n} results even no hit at all could not be told from the expected "
            f"{expected:.2%} (it needs {needs})"
        )
    alerts += _judge_exploration(overall, params, "exploration", "exploration")
    if len(buckets) > 1:
        for b in buckets:
            if b["results"] >= params.min_results:
                alerts += _judge_exploration(
                    b, params, f"exploration {b['from']}", f"exploration from {b['from']}:"
                )
    return section, alerts


# --- disparity --------------------------------------------------------------------------------


def measure_disparity(
    counts: Sequence[LaneCount], params: MonitorParams
) -> tuple[dict[str, Any], list[Alert]]:
    """Red rate and hit rate per origin, channel and platform (``serving.auditor.disparity``)."""
    section: dict[str, Any] = {}
    alerts: list[Alert] = []
    for dimension in DIMENSIONS:
        rates = group_rates(
            counts,
            dimension,
            params.disparity_tolerance,
            params.disparity_min_results,
            params.confidence,
        )
        section[dimension] = [asdict(r) for r in rates]
        for r in rates:
            if r.flag and r.flag != "too few results":
                alerts.append(
                    Alert(
                        "disparity",
                        f"{dimension}={r.group}",
                        r.red_rate,
                        params.disparity_tolerance,
                        f"{dimension} {r.group}: red rate {r.red_rate:.2%} "
                        f"({r.red_rate_low:.2%}-{r.red_rate_high:.2%}) of {r.decisions} "
                        f"decisions, hit rate {r.hit_rate:.2%} ({r.hit_rate_low:.2%}-"
                        f"{r.hit_rate_high:.2%}) over {r.inspected} results: {r.flag}, beyond "
                        f"{params.disparity_tolerance:g}x even at the ends of both intervals",
                        flag=r.flag,
                    )
                )
    return section, alerts


# --- the whole period -------------------------------------------------------------------------


def distinct_cutoffs(proposed: float, in_force: float, digits: int = 4) -> tuple[str, str]:
    """Two cut-offs written with as few significant digits as tell them apart (at least
    ``digits``; equal ones alike): a calibrated champion's top risks sit at 0.99999901 to
    0.99999902, where ``.4g`` printed a refit's cut-off and the one in force both as "1", as
    if the refit changed nothing (probe 37)."""
    if proposed == in_force:
        return f"{proposed:.{digits}g}", f"{in_force:.{digits}g}"
    for shown in range(digits, 18):
        text = f"{proposed:.{shown}g}", f"{in_force:.{shown}g}"
        if text[0] != text[1]:
            return text
    return text  # 17 significant digits tell any two floats apart


def _with_lane_advice(
    alert: Alert, lanes: Mapping[str, Any], drift_alerts: Sequence[Alert]
) -> Alert:
    """A lane alert says what would fill the target, and when features moved in the same
    period, that a feed's fault is fixed at the feed: a refit would follow it (probe 17: value
    x100 emptied the red lane, and the refit said to lower its cut-off from 0.65 to 0.23)."""
    refit = lanes.get("refit")
    advice = ""
    if refit is not None:
        key = "red_cutoff" if alert.subject == "red" else "yellow_cutoff"
        proposed, in_force = distinct_cutoffs(refit[key], refit["current_" + key])
        advice = (
            f"; the {alert.subject} cut-off that would have filled its target on this traffic: "
            f"{proposed} (in force: {in_force}; `parcelrisk lanes refit` puts it in force)"
        )
    if drift_alerts:
        top = ", ".join(f"{a.subject} PSI {a.value:.2f}" for a in drift_alerts[:3])
        advice += (
            f"; {len(drift_alerts)} feature(s) moved in the same period ({top}): check the "
            "declarations' feed first, a refit would follow a broken one"
        )
    return replace(alert, message=alert.message + advice)


def monitor_period(
    frame: pd.DataFrame,
    counts: Sequence[LaneCount],
    champion: RiskModel,
    info: Mapping[str, str],
    targets: LaneTargets,
    since: pd.Timestamp,
    until: pd.Timestamp,
    params: MonitorParams,
    previous: pd.DataFrame | Compared | None = None,
    acks: Sequence[Ack] = (),
    today: str | None = None,
) -> dict[str, Any]:
    """Every section and the alerts of one period; ``score_live`` (the raw live scores, an
    array for the report's plot) is left in the drift section: drop it before printing.

    ``previous``: the decisions of the period of the same length before ``since`` (each drift
    alert says whether it is new; only its ``COMPARED_COLUMNS`` are used), or their
    ``compare_period`` already made. ``acks``: people's
    acknowledgements (``serving.monitor.acks``), in force before their date (``today``:
    YYYY-MM-DD, default the day ``until`` falls on); an alert still at its acknowledged level
    is listed under ``acknowledged``, not paged. ``not_judged`` lists what the period holds
    too little of to judge.
    """
    drift, drift_alerts = measure_period_drift(
        frame, champion, info, params, previous, since - (until - since)
    )
    lanes, lane_alerts = measure_lane_shares(frame, champion, info, targets, params)
    exploration, exploration_alerts = measure_exploration(frame, since, champion, params)
    disparity, disparity_alerts = measure_disparity(counts, params)
    day = today or (until - pd.Timedelta(microseconds=1)).strftime("%Y-%m-%d")
    alerts, acknowledged, expired = apply_acks(
        drift_alerts + lane_alerts + exploration_alerts + disparity_alerts, acks, day, params
    )
    # a lane alert's feed warning names the features that page, not the acknowledged ones
    moved = [a for a in alerts if a.kind == "feature_drift"]
    alerts = [_with_lane_advice(a, lanes, moved) if a.kind == "lane_share" else a for a in alerts]
    sections = {"drift": drift, "lanes": lanes, "exploration": exploration, "disparity": disparity}
    not_judged = [
        f"{name} ({section.get('not_judged', 'too few decisions')})"
        for name, section in sections.items()
        if section.get("judged") is False
    ]
    if not any(r["flag"] != "too few results" for rates in disparity.values() for r in rates):
        not_judged.append(
            "disparity (no origin, channel or platform with monitor.disparity_min_results="
            f"{params.disparity_min_results} inspection results)"
        )
    if "collapse_not_judged" in exploration:
        not_judged.append(f"an exploration collapse ({exploration['collapse_not_judged']})")
    return {
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "decisions": len(frame),
        "champion": dict(info),
        "alerts": [asdict(a) for a in alerts],
        "acknowledged": acknowledged,
        "acknowledgements_expired": expired,
        "not_judged": not_judged,
        **sections,
    }


def lane_targets_of(champion: RiskModel, extra: LaneTargets | None = None) -> dict[str, Any]:
    """The champion's own thresholds' targets, plus any other versions' (``extra``)."""
    t = champion.thresholds
    return {**(extra or {}), t.version: (t.red_rate, t.yellow_rate)}
