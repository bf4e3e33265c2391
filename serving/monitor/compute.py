"""The monitor's core, pure: a period of decisions in, drift, lane shares, exploration hit rates,
disparity and alerts out (plain dicts, ready for JSON).

The frame is ``serving.monitor.data.read_period``'s: one row per declaration, with its stored
scores, lane, exploration flag, packed feature vector and inspection result if known.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.capacity import wilson_interval
from models.drift import measure_drift
from models.thresholds import fit_lane_thresholds
from serving.auditor.disparity import DIMENSIONS, LaneCount, group_rates
from serving.decision import unpack_features

if TYPE_CHECKING:
    from features.params import MonitorParams
    from models.bundle import RiskModel

LaneTargets = Mapping[str, tuple[float, float]]  # thresholds version -> (red_rate, yellow_rate)


@dataclass(frozen=True)
class Alert:
    kind: str  # feature_drift, score_drift, lane_share, exploration_hit_rate, disparity
    subject: str
    value: float
    threshold: float
    message: str


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
    """Stored (packed) feature vectors as one float64 matrix, a row each."""
    if not len(blobs):
        return np.empty((0, 0))
    rows = b"".join(unpack_features(bytes(b)) for b in blobs)
    return np.frombuffer(rows, dtype="<f8").reshape(len(blobs), -1)


# --- drift ------------------------------------------------------------------------------------


def feature_alert_level(baseline_psi: float | None, params: MonitorParams) -> dict[str, Any]:
    """The PSI above which a feature alerts: ``psi_feature_alert``, or ``trend_margin`` times
    the PSI it showed between the train and the reference period when that is higher (a
    feature trending with time, whose live PSI is large by construction: it is "trending")."""
    trending = baseline_psi is not None and baseline_psi > params.psi_feature_alert
    level = params.trend_margin * baseline_psi if trending else params.psi_feature_alert
    return {"trending": trending, "alert_above": max(level, params.psi_feature_alert)}


def measure_period_drift(
    frame: pd.DataFrame, champion: RiskModel, info: Mapping[str, str], params: MonitorParams
) -> tuple[dict[str, Any], list[Alert]]:
    """PSI (and KS for numeric features) of every feature and of the risk score against the
    champion's training reference."""
    reference = champion.reference
    fingerprint = champion.manifest.fingerprint
    comparable = (frame["manifest_fingerprint"] == fingerprint).to_numpy()
    by_champion = (
        (frame["model_name"] == info["name"]) & (frame["model_version"] == info["version"])
    ).to_numpy()
    others = frame.loc[~comparable, "manifest_fingerprint"].value_counts()
    section: dict[str, Any] = {
        "manifest_fingerprint": fingerprint,
        "comparable_decisions": int(comparable.sum()),
        # made with another feature manifest (an older or newer model): their vectors hold
        # other features, so they are counted, not compared
        "other_manifest_decisions": int((~comparable).sum()),
        "other_manifests": {str(k): int(v) for k, v in others.items()},
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
    X = feature_matrix(frame.loc[comparable, "features"].tolist())
    features = []
    if len(X):
        for j, ref in enumerate(reference.features):
            features.append(asdict(measure_drift(ref, X[:, j], params.psi_epsilon)))
    for f in features:
        f.update(feature_alert_level(f["baseline_psi"], params))
    features.sort(key=lambda d: -d["psi"])
    score = (
        asdict(
            measure_drift(
                reference.score, frame.loc[by_champion, "risk"].to_numpy(), params.psi_epsilon
            )
        )
        if by_champion.any()
        else None
    )
    section.update(
        features=features,
        score=score,
        score_live=frame.loc[by_champion, "risk"].to_numpy(np.float64).tolist()
        if by_champion.any()
        else [],
    )
    alerts: list[Alert] = []
    judged = int(comparable.sum()) >= params.min_drift_rows
    section["judged"] = judged
    if not judged:
        section["not_judged"] = (
            f"{int(comparable.sum())} comparable decisions, fewer than "
            f"monitor.min_drift_rows={params.min_drift_rows}"
        )
        return section, alerts
    for f in features:
        if f["psi"] > f["alert_above"]:
            trend = (
                f", {params.trend_margin:g} x its move within training ({f['baseline_psi']:.3f})"
                if f["trending"]
                else ""
            )
            alerts.append(
                Alert(
                    "feature_drift",
                    f["name"],
                    f["psi"],
                    f["alert_above"],
                    f"feature {f['name']}: PSI {f['psi']:.3f} against the training reference "
                    f"(alert above {f['alert_above']:.3f}{trend})",
                )
            )
    score_judged = score is not None and int(by_champion.sum()) >= params.min_drift_rows
    if score_judged and score["psi"] > params.psi_score_alert:
        alerts.append(
            Alert(
                "score_drift",
                "risk",
                score["psi"],
                params.psi_score_alert,
                f"risk score: PSI {score['psi']:.3f} against the training reference "
                f"(alert above {params.psi_score_alert})",
            )
        )
    return section, alerts


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
    versions = frame["thresholds_version"].astype(str)
    known = versions.isin(list(targets)).to_numpy()
    # Exploration parcels are a random draw lifted to at least the exploration lane: leaving
    # them out keeps the model's own shares unbiased, and exploration is reported on its own.
    judged = known & ~frame["exploration"].to_numpy(bool)
    red_target = versions.map(lambda v: targets.get(v, (np.nan, np.nan))[0]).to_numpy(float)
    yellow_target = versions.map(lambda v: targets.get(v, (np.nan, np.nan))[1]).to_numpy(float)
    lanes = frame["lane"].to_numpy(str)
    day = frame["declared_at"].dt.strftime("%Y-%m-%d").to_numpy(str)
    part = pd.DataFrame(
        {
            "day": day[judged],
            "red": lanes[judged] == "red",
            "yellow": lanes[judged] == "yellow",
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
    n = len(part)
    overall = {
        "decisions": n,
        "red": float(part["red"].mean()) if n else None,
        "yellow": float(part["yellow"].mean()) if n else None,
        "red_target": float(part["red_target"].mean()) if n else None,
        "yellow_target": float(part["yellow_target"].mean()) if n else None,
    }
    exploration_rates = [
        float(json.loads(p).get("exploration_rate", np.nan)) for p in frame["lane_policy"].tolist()
    ]
    section: dict[str, Any] = {
        "targets": {k: {"red_rate": v[0], "yellow_rate": v[1]} for k, v in targets.items()},
        "unknown_thresholds_decisions": int((~known).sum()),
        "unknown_thresholds_versions": sorted(set(versions[~known])),
        "exploration_left_out": int((known & frame["exploration"].to_numpy(bool)).sum()),
        "overall": overall,
        "daily": daily.to_dict("records"),
        "exploration": {
            "share": float(frame["exploration"].mean()) if len(frame) else None,
            "target": float(np.nanmean(exploration_rates)) if exploration_rates else None,
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


def refit_cutoffs(
    frame: pd.DataFrame, champion: RiskModel, info: Mapping[str, str]
) -> dict[str, Any] | None:
    """The cut-offs that would have filled the champion's target shares on this period's
    traffic: its decisions' priority after the AEO discount the service applied (from each
    decision's recorded lane policy), refitted as training fits them (``fit_lane_thresholds``).
    None when the champion made no decision in the period."""
    mine = (
        (frame["model_name"] == info["name"]) & (frame["model_version"] == info["version"])
    ).to_numpy()
    if not mine.any():
        return None
    thresholds = champion.thresholds
    column = "expected_revenue" if thresholds.objective == "revenue" else "risk"
    priority = frame.loc[mine, column].to_numpy(np.float64)
    discount = np.array(
        [float(json.loads(p).get("aeo_risk_discount", 1.0)) for p in frame.loc[mine, "lane_policy"]]
    )
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


def measure_exploration(
    frame: pd.DataFrame,
    since: pd.Timestamp,
    champion: RiskModel,
    params: MonitorParams,
) -> tuple[dict[str, Any], list[Alert]]:
    """Hit rate and revenue per inspection of the random-exploration parcels, per bucket of
    ``bucket_days`` from ``since`` and over the period, against the model's expectation."""
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
    below = expected * (1 - params.hit_rate_tolerance)
    above = expected * (1 + params.hit_rate_tolerance)
    where = None
    if overall["hit_rate_high"] < below:
        where, bound = "below", below
    elif overall["hit_rate_low"] > above:
        where, bound = "above", above
    if where is not None:
        alerts.append(
            Alert(
                "exploration_hit_rate",
                "exploration",
                overall["hit_rate"],
                bound,
                f"exploration hit rate {overall['hit_rate']:.2%} "
                f"({params.confidence:.0%} interval {overall['hit_rate_low']:.2%}-"
                f"{overall['hit_rate_high']:.2%}, {n} results) is {where} the model's expected "
                f"{expected:.2%} by more than {params.hit_rate_tolerance:.0%}",
            )
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
            counts, dimension, params.disparity_tolerance, params.disparity_min_results
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
                        f"{dimension} {r.group}: red rate {r.red_rate:.2%}, hit rate "
                        f"{r.hit_rate:.2%} over {r.inspected} results: {r.flag}",
                    )
                )
    return section, alerts


# --- the whole period -------------------------------------------------------------------------


def monitor_period(
    frame: pd.DataFrame,
    counts: Sequence[LaneCount],
    champion: RiskModel,
    info: Mapping[str, str],
    targets: LaneTargets,
    since: pd.Timestamp,
    until: pd.Timestamp,
    params: MonitorParams,
) -> dict[str, Any]:
    """Every section and the alerts of one period; ``score_live`` (the raw live scores, for the
    report's plot) is left in the drift section: drop it before printing."""
    drift, drift_alerts = measure_period_drift(frame, champion, info, params)
    lanes, lane_alerts = measure_lane_shares(frame, champion, info, targets, params)
    exploration, exploration_alerts = measure_exploration(frame, since, champion, params)
    disparity, disparity_alerts = measure_disparity(counts, params)
    alerts = drift_alerts + lane_alerts + exploration_alerts + disparity_alerts
    return {
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "decisions": len(frame),
        "champion": dict(info),
        "alerts": [asdict(a) for a in alerts],
        "drift": drift,
        "lanes": lanes,
        "exploration": exploration,
        "disparity": disparity,
    }


def lane_targets_of(champion: RiskModel, extra: LaneTargets | None = None) -> dict[str, Any]:
    """The champion's own thresholds' targets, plus any other versions' (``extra``)."""
    t = champion.thresholds
    return {**(extra or {}), t.version: (t.red_rate, t.yellow_rate)}
