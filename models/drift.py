"""Drift statistics of live values against a stored reference (``models.reference``). Pure.

PSI (population stability index) compares bin shares: sum over bins of (a - e) * ln(a / e),
a the live share, e the reference share. Rule of thumb: below 0.1 stable, 0.1-0.25 a moderate
shift, above 0.25 a major one. KS compares the live sample's empirical CDF with the reference
CDF rebuilt from its 101 stored percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.reference import (  # PSI lives beside the reference: training computes it too
    PSI_EPSILON,
    ValueReference,
    bin_shares,
    population_stability_index,
)

__all__ = [
    "PSI_EPSILON",
    "DriftResult",
    "KSResult",
    "ks_against_percentiles",
    "measure_drift",
    "population_stability_index",
    "reference_cdf",
]


def reference_cdf(percentiles: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The reference CDF at ``x``: linear between the stored percentiles (0 below the 0th,
    1 above the 100th). Repeated percentiles (a tie in the reference) jump at once."""
    p = np.asarray(percentiles, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, len(p))
    x = np.asarray(x, dtype=np.float64)
    # right side of a tie: F(x) = share of reference values <= x
    upper = np.searchsorted(p, x, side="right")
    lo = np.clip(upper - 1, 0, len(p) - 1)
    hi = np.clip(upper, 0, len(p) - 1)
    span = p[hi] - p[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(span > 0, (x - p[lo]) / span, 0.0)
    cdf = levels[lo] + frac * (levels[hi] - levels[lo])
    return np.where(x < p[0], 0.0, np.where(x >= p[-1], 1.0, cdf))


@dataclass(frozen=True)
class KSResult:
    statistic: float
    p_value: float | None  # None without scipy or without values
    n: int


def ks_against_percentiles(percentiles: np.ndarray, values: np.ndarray) -> KSResult:
    """One-sample KS of ``values`` (NaN dropped) against the reference CDF of ``percentiles``.

    D = max over the sorted sample x_(1..n) of max(i/n - F(x_(i)), F(x_(i)) - (i-1)/n). The
    reference CDF is known to 1% (linear between percentiles), so D carries up to ~0.01 of
    resolution error and the p-value (scipy's exact one-sample distribution, ``kstwo``) is
    only a guide on large samples; PSI is what alerts.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0 or len(percentiles) == 0:
        return KSResult(float("nan"), None, n)
    cdf = reference_cdf(np.asarray(percentiles), x)
    i = np.arange(1, n + 1)
    statistic = float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))
    try:
        from scipy.stats import kstwo

        p_value: float | None = float(kstwo.sf(statistic, n))
    except ImportError:  # scipy comes with scikit-learn; the statistic stands without it
        p_value = None
    return KSResult(statistic, p_value, n)


@dataclass(frozen=True)
class DriftResult:
    name: str
    kind: str
    psi: float
    # the PSI the feature already showed between the train period and the reference period
    # (a feature that trends with time, such as an entity's age or a cumulative count)
    baseline_psi: float | None
    ks: float | None  # numeric columns only
    ks_p_value: float | None
    n: int
    missing_share: float  # live
    reference_missing_share: float


def measure_drift(
    reference: ValueReference, values: np.ndarray, eps: float = PSI_EPSILON
) -> DriftResult:
    """PSI (every column) and KS (numeric columns) of live ``values`` against ``reference``."""
    values = np.asarray(values, dtype=np.float64)
    live = bin_shares(reference, values)
    psi = population_stability_index(np.asarray(reference.shares), live, eps)
    ks: KSResult | None = None
    if reference.kind == "numeric":
        ks = ks_against_percentiles(np.asarray(reference.percentiles), values)
    return DriftResult(
        name=reference.name,
        kind=reference.kind,
        psi=psi,
        baseline_psi=reference.baseline_psi,
        ks=ks.statistic if ks is not None else None,
        ks_p_value=ks.p_value if ks is not None else None,
        n=len(values),
        missing_share=float(live[-1]),
        reference_missing_share=reference.missing_share,
    )
