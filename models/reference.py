"""The training reference: what drift checks need of the traffic a model was fitted for.

Stored with the model (``reference.json`` in the bundle, ``models.bundle``) so every registered
version carries the yardstick its live traffic is measured against, without raw rows. Per
feature of the model's manifest, and for the calibrated risk score:

- ``missing_share``: the share of rows with no value (NaN);
- ``percentiles``: the 0th..100th percentiles of the values present (101 numbers): a reference
  CDF at 1% resolution, for a KS statistic (``models.drift.ks_against_percentiles``);
- bins and the share of ALL rows in each (the missing share last), for PSI. A numeric feature
  gets decile bins (edges are the 10th..90th percentiles, repeated ones merged: a count that is
  0 for 60% of parcels gets one bin for its zeros). A categorical-coded or low-cardinality
  feature gets one bin per distinct value (the ``MAX_DISCRETE_VALUES`` most frequent) and one
  for every other value, so a level that appears only live lands in "other" and shows.

Pure numpy: arrays in, a frozen dataclass out; JSON in and out for the bundle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from features.pipeline.manifest import FeatureManifest

REFERENCE_FILE = "reference.json"
SCORE_NAME = "risk"  # the calibrated risk score's entry
# At most this many distinct values: bins on the values themselves rather than on deciles
# (flags, small counts, codes). Also the number of levels a categorical keeps before "other".
MAX_DISCRETE_VALUES = 20
PERCENTILES = np.linspace(0.0, 100.0, 101)
_DECILES = np.linspace(10.0, 90.0, 9)

BinKind = Literal["numeric", "discrete"]

# A bin empty on one side would make ln(a / e) infinite. Both shares are floored at this
# before the sum (not renormalised: the floor is far below any share worth reading), so a bin
# that goes from 10% to empty adds (0.1 - 1e-4) * ln(0.1 / 1e-4) = 0.69: a clear alarm, finite.
PSI_EPSILON = 1e-4


def population_stability_index(
    expected_shares: np.ndarray, actual_shares: np.ndarray, eps: float = PSI_EPSILON
) -> float:
    """sum((a - e) * ln(a / e)) over bins, a the actual share, e the expected one, each share
    floored at ``eps`` (see PSI_EPSILON)."""
    e = np.maximum(np.asarray(expected_shares, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual_shares, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise ValueError(f"{e.shape} expected shares against {a.shape} actual ones")
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class ValueReference:
    """The reference distribution of one column (a feature or the score).

    ``kind`` numeric: ``edges`` are increasing interior cut points, bin i holds
    ``edges[i-1] < x <= edges[i]`` (len(edges) + 1 bins). ``kind`` discrete: ``edges`` are the
    values kept, bin i holds ``x == edges[i]``, one more bin holds every other value.
    ``shares``: the share of all rows per bin, then the missing share (sums to 1).
    """

    name: str
    kind: BinKind
    rows: int
    missing_share: float
    percentiles: tuple[float, ...]  # of the values present; empty when all are missing
    edges: tuple[float, ...]
    shares: tuple[float, ...]
    # PSI of the train period's values in these bins: how far the column moved between the
    # train period and the reference period (None: not measured). Entity ages and cumulative
    # counts grow with time, so their live PSI is large by construction; the monitor judges
    # them against this (``serving.monitor``).
    baseline_psi: float | None = None

    @property
    def n_bins(self) -> int:
        """Bins of present values (the missing bin not counted)."""
        return len(self.edges) + 1


@dataclass(frozen=True)
class ModelReference:
    """Every feature's reference (manifest order) and the score's, with where they came from."""

    features: tuple[ValueReference, ...]
    score: ValueReference
    rows: int
    period: dict[str, str]  # {"name": "validation"|"test", "from": iso, "to": iso}
    mean_risk: float  # the model's expected hit rate on a random sample of this traffic
    mean_expected_revenue: float  # ... and its expected revenue per random inspection, EUR
    manifest_fingerprint: str

    def feature(self, name: str) -> ValueReference:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelReference:
        def value(d: dict[str, Any]) -> ValueReference:
            return ValueReference(
                name=d["name"],
                kind=d["kind"],
                rows=int(d["rows"]),
                missing_share=float(d["missing_share"]),
                percentiles=tuple(float(v) for v in d["percentiles"]),
                edges=tuple(float(v) for v in d["edges"]),
                shares=tuple(float(v) for v in d["shares"]),
                baseline_psi=(
                    float(d["baseline_psi"]) if d.get("baseline_psi") is not None else None
                ),
            )

        return cls(
            features=tuple(value(f) for f in data["features"]),
            score=value(data["score"]),
            rows=int(data["rows"]),
            period=dict(data.get("period") or {}),
            mean_risk=float(data["mean_risk"]),
            mean_expected_revenue=float(data["mean_expected_revenue"]),
            manifest_fingerprint=str(data["manifest_fingerprint"]),
        )


def describe_values(name: str, values: np.ndarray, categorical: bool = False) -> ValueReference:
    """The reference of one column: bins, shares, missing share and percentiles."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    rows = len(values)
    missing = float(np.isnan(values).mean()) if rows else 0.0
    if len(present) == 0:
        return ValueReference(name, "discrete", rows, missing, (), (), (0.0, missing))
    percentiles = tuple(float(v) for v in np.percentile(present, PERCENTILES))
    distinct, counts = np.unique(present, return_counts=True)
    if categorical or len(distinct) <= MAX_DISCRETE_VALUES:
        kept = np.sort(distinct[np.argsort(-counts, kind="stable")[:MAX_DISCRETE_VALUES]])
        kind: BinKind = "discrete"
        edges = kept
    else:
        kind = "numeric"
        edges = np.unique(np.percentile(present, _DECILES))
    reference = ValueReference(
        name, kind, rows, missing, percentiles, tuple(float(e) for e in edges), ()
    )
    return _with_shares(reference, bin_shares(reference, values))


def _with_shares(reference: ValueReference, shares: np.ndarray) -> ValueReference:
    return replace(reference, shares=tuple(float(s) for s in shares))


def bin_shares(reference: ValueReference, values: np.ndarray) -> np.ndarray:
    """The share of ``values`` in each of ``reference``'s bins, the missing share last.

    The same binning the reference was built with, so live and reference shares line up."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    out = np.zeros(reference.n_bins + 1)
    if n == 0:
        return out
    missing = np.isnan(values)
    present = values[~missing]
    edges = np.asarray(reference.edges, dtype=np.float64)
    if reference.kind == "numeric":
        index = np.searchsorted(edges, present, side="left")
    else:
        # a value not kept (or never seen in training) goes to the last bin, "other"
        at = np.searchsorted(edges, present)
        found = (at < len(edges)) & (edges[np.minimum(at, len(edges) - 1)] == present)
        index = np.where(found, at, len(edges))
    out[: reference.n_bins] = np.bincount(index, minlength=reference.n_bins) / n
    out[-1] = missing.sum() / n
    return out


def build_reference(
    X: np.ndarray,
    manifest: FeatureManifest,
    risk: np.ndarray,
    expected_revenue: np.ndarray,
    period: dict[str, str],
    X_baseline: np.ndarray | None = None,
) -> ModelReference:
    """The reference of a manifest-ordered matrix of traffic (every parcel, inspected or not:
    live traffic is every parcel) and the calibrated risk the model gives it. ``X_baseline``:
    an earlier period's matrix (the train period), for each feature's ``baseline_psi``."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(manifest.names):
        raise ValueError(f"X has shape {X.shape}: need one column per manifest feature")
    categorical = set(manifest.categorical_names)
    features = []
    for j, name in enumerate(manifest.names):
        ref = describe_values(name, X[:, j], categorical=name in categorical)
        if X_baseline is not None and len(X_baseline):
            earlier = bin_shares(ref, np.asarray(X_baseline, dtype=np.float64)[:, j])
            ref = replace(ref, baseline_psi=population_stability_index(ref.shares, earlier))
        features.append(ref)
    return ModelReference(
        features=tuple(features),
        score=describe_values(SCORE_NAME, risk),
        rows=len(X),
        period=period,
        mean_risk=float(np.mean(risk)) if len(risk) else 0.0,
        mean_expected_revenue=float(np.mean(expected_revenue)) if len(expected_revenue) else 0.0,
        manifest_fingerprint=manifest.fingerprint,
    )
