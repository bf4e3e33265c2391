"""Capacity thresholds: priority cut-offs that fill the red and yellow lanes at set traffic shares.

The cut-offs are compared with the *effective* priority, the one the service lanes on
(``effective_priority``: AEO declarations x ``serve.aeo_risk_discount``), so they are fitted on
it too: fitted on the raw priority, the discounted AEO parcels fall short of cut-offs set for
them at full weight and the red lane fills below its configured share (0.5-0.75% of live traffic
against 1% on the demo's traffic).

Exploration is not counted against the yellow share: the cut-offs fill the configured red and
yellow rates with the parcels the *model* selects, and the random quota (``serve.exploration_rate``,
raised to at least ``serve.exploration_lane``) comes on top, so the yellow lane holds about
``yellow_rate + exploration_rate x green share``. The quota is its own budget, drawn
independently of the score; folding it into the cut-offs would make the model's lanes move
whenever the exploration rate moves, and the quota would no longer be a clean random sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from typing import Any

import numpy as np

from features.errors import ParcelriskError
from models.bundle import LaneThresholds, Objective

# Top shares of traffic at which a model stores its training traffic's effective-priority
# cut-off (``traffic_quantiles``): fine in the tail where lane rates live (0.01% to 20%), coarse
# above. About 400 numbers: enough to set new rates before any live traffic, no raw rows kept.
QUANTILE_SHARES: tuple[float, ...] = tuple(
    float(s)
    for s in np.unique(
        np.round(np.concatenate([np.geomspace(1e-4, 0.25, 300), np.linspace(0.25, 1.0, 101)]), 8)
    )
)
_FIELDS = {f.name for f in fields(LaneThresholds)}


def effective_priority(priority: np.ndarray, aeo: np.ndarray, aeo_discount: float) -> np.ndarray:
    """The priority lanes compare with the cut-offs: AEO declarations' x ``aeo_discount``.

    The one definition: the service (``serving.lanes.assign_lanes``) and every fit call it."""
    priority = np.asarray(priority, dtype=np.float64)
    return np.where(np.asarray(aeo, dtype=bool), priority * aeo_discount, priority)


def check_lane_rates(red_rate: float, yellow_rate: float) -> None:
    """Refuse rates that cannot fill lanes: 0 < red, 0 <= yellow, red + yellow < 1."""
    if not (0 < red_rate < 1 and 0 <= yellow_rate < 1 and red_rate + yellow_rate < 1):
        raise ParcelriskError(
            f"lane rates must be in (0, 1) with red + yellow < 1, got red={red_rate} yellow={yellow_rate}"
        )


def cutoffs_at_shares(priority: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """The cut-off that sends the top ``share`` of ``priority`` to a lane (``>=`` cut-off), for
    each share: the ``max(1, round(n x share))``-th highest finite value. NaN if none."""
    priority = np.asarray(priority, dtype=np.float64)
    ranked = np.sort(priority[np.isfinite(priority)])[::-1]
    shares = np.asarray(shares, dtype=np.float64)
    if len(ranked) == 0:
        return np.full(len(shares), np.nan)
    k = np.clip(np.round(len(ranked) * shares).astype(np.int64), 1, len(ranked))
    return ranked[k - 1]


def make_thresholds(
    objective: Objective,
    red_cutoff: float,
    yellow_cutoff: float,
    red_rate: float,
    yellow_rate: float,
    *,
    aeo_discount: float = 1.0,
    fitted_on: str = "",
    parcels: int = 0,
) -> LaneThresholds:
    """LaneThresholds with ``version`` the hash of everything else it holds."""
    content: dict[str, Any] = {
        "objective": objective,
        "red_cutoff": float(red_cutoff),
        "yellow_cutoff": float(yellow_cutoff),
        "red_rate": float(red_rate),
        "yellow_rate": float(yellow_rate),
        "aeo_discount": float(aeo_discount),
        "fitted_on": str(fitted_on),
        "parcels": int(parcels),
    }
    return LaneThresholds(**content, version=content_version(content))


# What a thresholds version hashes, each read as it is written (``make_thresholds``).
_CONTENT_TYPES: dict[str, type] = {
    "objective": str,
    "red_cutoff": float,
    "yellow_cutoff": float,
    "red_rate": float,
    "yellow_rate": float,
    "aeo_discount": float,
    "fitted_on": str,
    "parcels": int,
}


def content_version(record: dict[str, Any]) -> str:
    """The version id of a thresholds record's content: the hash of the fields it holds (a
    record written before ``aeo_discount``, ``fitted_on`` and ``parcels`` existed hashed the
    ones it has). A record whose stored ``version`` differs was edited after it was written."""
    content = {k: kind(record[k]) for k, kind in _CONTENT_TYPES.items() if k in record}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def fit_lane_thresholds(
    priority: np.ndarray,
    red_rate: float,
    yellow_rate: float,
    objective: Objective,
    *,
    aeo: np.ndarray | None = None,
    aeo_discount: float = 1.0,
    fitted_on: str = "",
) -> LaneThresholds:
    """Cut-offs from the priorities of ALL parcels of a period (the traffic, not only inspected).

    Red takes the top ``red_rate`` of the effective priority, yellow the next ``yellow_rate``.
    ``aeo``: which parcels are AEO declarations (their priority x ``aeo_discount`` first, as the
    service does); None: the priorities are effective already.
    """
    check_lane_rates(red_rate, yellow_rate)
    effective = np.asarray(priority, dtype=np.float64)
    if aeo is not None:
        effective = effective_priority(effective, aeo, aeo_discount)
    n = int(np.isfinite(effective).sum())
    if n == 0:
        raise ParcelriskError("no parcels to fit lane thresholds on")
    (red_cutoff,) = cutoffs_at_shares(effective, [red_rate])
    # Parcels tied on the red cut-off all go red (a saturated calibrated risk, leaves the
    # trees share): red then holds more than red_rate, and yellow takes the next yellow_rate
    # of the traffic below them, not what is left of red + yellow. Else a tie block of more
    # than red + yellow puts both cut-offs on it, and a parcel a hair below it is green.
    red_share = float((effective >= red_cutoff).sum()) / n
    (yellow_cutoff,) = cutoffs_at_shares(effective, [min(red_share + yellow_rate, 1.0)])
    if yellow_rate == 0:
        yellow_cutoff = red_cutoff
    return make_thresholds(
        objective,
        red_cutoff,
        min(yellow_cutoff, red_cutoff),
        red_rate,
        yellow_rate,
        aeo_discount=aeo_discount,
        fitted_on=fitted_on,
        parcels=n,
    )


def traffic_quantiles(effective: np.ndarray, aeo_discount: float) -> dict[str, Any]:
    """What a model keeps of its lane traffic: the effective-priority cut-off at each of
    ``QUANTILE_SHARES`` (so new rates can be set before any live traffic), no rows."""
    effective = np.asarray(effective, dtype=np.float64)
    cutoffs = cutoffs_at_shares(effective, np.asarray(QUANTILE_SHARES))
    return {
        "shares": list(QUANTILE_SHARES),
        "cutoffs": [float(c) for c in cutoffs],
        "parcels": int(np.isfinite(effective).sum()),
        "aeo_discount": float(aeo_discount),
    }


def fit_from_quantiles(
    quantiles: dict[str, Any],
    red_rate: float,
    yellow_rate: float,
    objective: Objective,
    fitted_on: str = "",
) -> LaneThresholds:
    """Cut-offs at these rates from stored ``traffic_quantiles`` (interpolated between shares:
    exact at a stored share)."""
    check_lane_rates(red_rate, yellow_rate)
    try:
        shares = np.asarray(quantiles["shares"], dtype=np.float64)
        cutoffs = np.asarray(quantiles["cutoffs"], dtype=np.float64)
        parcels = int(quantiles["parcels"])
        aeo_discount = float(quantiles["aeo_discount"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ParcelriskError(f"stored lane-traffic quantiles unreadable: {exc}") from None
    if len(shares) == 0 or len(shares) != len(cutoffs) or not np.isfinite(cutoffs).all():
        raise ParcelriskError("stored lane-traffic quantiles are empty or incomplete")
    red_cutoff = float(np.interp(red_rate, shares, cutoffs))
    # yellow below the parcels tied on the red cut-off (``fit_lane_thresholds``): the share
    # of the stored traffic at or above it, as far as the table tells
    n = max(parcels, 1)
    ranks = np.clip(np.round(n * shares), 1, n)
    red_share = max(red_rate, float(ranks[cutoffs >= red_cutoff].max(initial=0)) / n)
    yellow_cutoff = float(np.interp(min(red_share + yellow_rate, 1.0), shares, cutoffs))
    if yellow_rate == 0:
        yellow_cutoff = red_cutoff
    return make_thresholds(
        objective,
        red_cutoff,
        min(yellow_cutoff, red_cutoff),
        red_rate,
        yellow_rate,
        aeo_discount=aeo_discount,
        fitted_on=fitted_on,
        parcels=parcels,
    )


def lane_shares_from_quantiles(
    quantiles: dict[str, Any], thresholds: LaneThresholds
) -> dict[str, float]:
    """``lane_shares`` on the traffic stored as ``traffic_quantiles``, to the table's resolution.

    A stored cut-off is the k-th highest priority (``cutoffs_at_shares``), so at least k parcels
    are at or above a cut-off the stored one is not below, and fewer than k where it is: the
    share lies between, and is the rate asked when that lies between too. Where the stored
    cut-offs are flat (many parcels on one saturated score) a cut-off interpolated inside the
    flat run sends all of it to the lane: more than the rate asked."""
    cutoffs = np.asarray(quantiles["cutoffs"], dtype=np.float64)
    n = int(quantiles["parcels"])
    ranks = np.clip(np.round(n * np.asarray(quantiles["shares"], dtype=np.float64)), 1, n)

    def share_above(cutoff: float, asked: float) -> float:
        least = ranks[cutoffs >= cutoff].max(initial=0) / n
        most = (ranks[cutoffs < cutoff].min(initial=n + 1) - 1) / n
        return float(np.clip(asked, least, most))

    red = share_above(thresholds.red_cutoff, thresholds.red_rate)
    both = share_above(thresholds.yellow_cutoff, thresholds.red_rate + thresholds.yellow_rate)
    yellow = max(both - red, 0.0)
    return {"red": red, "yellow": yellow, "green": 1.0 - red - yellow}


def thresholds_from_dict(data: Any) -> LaneThresholds:
    """LaneThresholds from its JSON object (a bundle's, a registry tag's, an artifact's);
    ``ParcelriskError`` naming what is wrong. Extra keys (a history record's) are ignored."""
    if not isinstance(data, dict):
        raise ParcelriskError(f"lane thresholds must be a JSON object, got {type(data).__name__}")
    required = {"objective", "red_cutoff", "yellow_cutoff", "red_rate", "yellow_rate", "version"}
    missing = sorted(required - set(data))
    if missing:
        raise ParcelriskError(f"lane thresholds lack {', '.join(missing)}")
    try:
        values = {k: data[k] for k in _FIELDS if k in data}
        thresholds = LaneThresholds(
            **{
                **values,
                **{
                    k: float(values[k])
                    for k in ("red_cutoff", "yellow_cutoff", "red_rate", "yellow_rate")
                },
                "aeo_discount": float(values.get("aeo_discount", 1.0)),
                "parcels": int(values.get("parcels", 0)),
                "version": str(values["version"]),
                "fitted_on": str(values.get("fitted_on", "")),
            }
        )
    except (TypeError, ValueError) as exc:
        raise ParcelriskError(f"lane thresholds unreadable: {exc}") from None
    if thresholds.objective not in ("risk", "revenue"):
        raise ParcelriskError(f"lane thresholds: unknown objective {thresholds.objective!r}")
    if not (np.isfinite(thresholds.red_cutoff) and np.isfinite(thresholds.yellow_cutoff)):
        raise ParcelriskError("lane thresholds: cut-offs must be finite numbers")
    check_lane_rates(thresholds.red_rate, thresholds.yellow_rate)
    return thresholds


def parse_thresholds(text: str) -> LaneThresholds:
    """LaneThresholds from JSON text (``lane_thresholds`` registry tag); ParcelriskError if bad."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ParcelriskError(f"lane thresholds are not JSON: {exc}") from None
    return thresholds_from_dict(data)


def thresholds_json(thresholds: LaneThresholds) -> str:
    return json.dumps(asdict(thresholds), sort_keys=True)


def lane_shares(priority: np.ndarray, thresholds: LaneThresholds) -> dict[str, float]:
    """Share of parcels each lane receives under ``thresholds`` (``priority``: effective)."""
    priority = np.asarray(priority, dtype=np.float64)
    red = priority >= thresholds.red_cutoff
    yellow = ~red & (priority >= thresholds.yellow_cutoff)
    return {
        "red": float(red.mean()),
        "yellow": float(yellow.mean()),
        "green": float(1.0 - red.mean() - yellow.mean()),
    }


def same_rates(a: LaneThresholds, b: LaneThresholds) -> bool:
    """The two fill the lanes at the same shares of traffic (whatever their cut-offs)."""
    return bool(
        np.isclose(a.red_rate, b.red_rate, rtol=0, atol=1e-9)
        and np.isclose(a.yellow_rate, b.yellow_rate, rtol=0, atol=1e-9)
    )


def share_text(value: float) -> str:
    """A share of traffic as people write it: 0.02 -> "2%", 0.0125 -> "1.25%"."""
    return f"{100 * value:.3g}%"


def rates_text(thresholds: LaneThresholds) -> str:
    """ "red 2% / yellow 5%": the lane rates a thresholds version fills."""
    return f"red {share_text(thresholds.red_rate)} / yellow {share_text(thresholds.yellow_rate)}"


# Off the rate asked by more than this fraction of it, a lane's share is worth a warning: on
# traffic without ties a fitted cut-off misses the rate by less than one parcel.
SHARE_TOLERANCE = 0.2


def share_warnings(thresholds: LaneThresholds, shares: dict[str, float]) -> list[str]:
    """A warning per lane whose cut-off sends a share of its traffic far from the rate asked
    (``shares``: ``lane_shares`` or ``lane_shares_from_quantiles`` of the traffic fitted on)."""
    out = []
    parcel = 1 / max(thresholds.parcels, 1)  # the share one parcel of that traffic is
    for lane, asked in (("red", thresholds.red_rate), ("yellow", thresholds.yellow_rate)):
        missed = abs(shares[lane] - asked)
        if missed <= SHARE_TOLERANCE * asked:
            continue
        why = (
            f"one parcel is {share_text(parcel)} of the {thresholds.parcels:,}"
            if missed <= parcel * (1 + 1e-9)
            else "parcels tied on one priority (a saturated score) all fall on one side of a "
            "cut-off"
        )
        out.append(
            f"the {lane} cut-off sends {share_text(shares[lane])} of the traffic it was fitted "
            f"on to {lane}, not the {share_text(asked)} asked: {why}"
        )
    return out
