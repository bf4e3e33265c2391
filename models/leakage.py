"""The label-leak guard: a feature that alone tells illicit from clean parcels is a result.

A mapping that keeps an inspection result as an extra (``RESULTADO`` as a categorical, a seizure
reference, duties assessed after the control) gives a model that scores ROC AUC 1.0 on every
held-out period, passes the champion gate, and lanes nothing once it serves declarations, which
arrive without the result. Real signals do not do that: on the demo the strongest single
feature (value per kg against its HS6 and origin) reaches 0.82, the leaked result 1.0.

Each feature is judged alone, out of sample, as a one-feature histogram model: its values cut
into quantile bins on the labelled parcels of the train period (categories: a bin each; missing:
a bin of its own), each bin's illicit rate measured there, and the validation period's labelled
parcels ranked by the rate of their bin. A U-shape or a category is caught as well as a
threshold, and an identifier (a bin per parcel) learns nothing it could carry to other parcels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Quantile bins of a numeric feature: fine enough for a sharp cut, coarse enough that each
# holds ~300 labelled parcels of a 10k-label history.
BINS = 32
# Pseudo-parcels at the train period's base rate added to every bin: a bin of a few parcels,
# all illicit, does not rank first on its own.
PRIOR_PARCELS = 10


@dataclass(frozen=True)
class Separation:
    """How well one feature alone ranks the validation period's labelled parcels."""

    feature: str
    auc: float  # ROC AUC, 0.5 = nothing; read either way (a rate ranks, never inverts)


def single_feature_auc(
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    valid: np.ndarray,
    categorical: np.ndarray,
) -> np.ndarray:
    """ROC AUC on the ``valid`` rows of each column of ``X`` alone, its bins' illicit rates
    learned on the ``train`` rows (boolean masks of labelled rows; ``y`` 0/1 on them).

    ``categorical``: per column, whether its values are category codes (a bin per code).
    """
    y = np.asarray(y, dtype=np.float64)
    y_train, y_valid = y[train], y[valid]
    prior = float(y_train.mean()) if train.any() else 0.0
    positives = y_valid == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    out = np.full(X.shape[1], 0.5)
    if n_pos == 0 or n_neg == 0:
        return out
    # the labelled rows once (a few percent of a history), columns contiguous: per feature
    # a strided gather over every row would cost ~10 ms at 1M rows
    X_train, X_valid = np.asfortranarray(X[train]), np.asfortranarray(X[valid])
    for j in range(X.shape[1]):
        x_train, x_valid = X_train[:, j], X_valid[:, j]
        if categorical[j]:
            # codes are small non-negative integers; missing (and unknown) -> bin 0
            b_train = np.where(np.isnan(x_train), -1, x_train).astype(np.int64) + 1
            b_valid = np.where(np.isnan(x_valid), -1, x_valid).astype(np.int64) + 1
            n_bins = int(max(b_train.max(initial=0), b_valid.max(initial=0))) + 1
        else:
            known = x_train[~np.isnan(x_train)]
            edges = (
                np.unique(np.quantile(known, np.linspace(0, 1, BINS + 1)[1:-1]))
                if len(known)
                else np.zeros(0)
            )
            b_train = np.where(
                np.isnan(x_train), 0, 1 + np.searchsorted(edges, x_train, side="right")
            )
            b_valid = np.where(
                np.isnan(x_valid), 0, 1 + np.searchsorted(edges, x_valid, side="right")
            )
            n_bins = len(edges) + 2
        seen = np.bincount(b_train, minlength=n_bins)
        illicit = np.bincount(b_train, weights=y_train, minlength=n_bins)
        rate = (illicit + PRIOR_PARCELS * prior) / (seen + PRIOR_PARCELS)
        out[j] = _auc(rate[b_valid], positives, n_pos, n_neg)
    return out


def _auc(score: np.ndarray, positives: np.ndarray, n_pos: int, n_neg: int) -> float:
    """Mann-Whitney ROC AUC with ties counted half (scores take few distinct values here)."""
    values, inverse = np.unique(score, return_inverse=True)
    pos = np.bincount(inverse, weights=positives, minlength=len(values))
    neg = np.bincount(inverse, minlength=len(values)) - pos
    below = np.concatenate(([0.0], np.cumsum(neg)[:-1]))  # negatives scored strictly lower
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def leaking_features(
    names: list[str],
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    valid: np.ndarray,
    categorical: np.ndarray,
    max_auc: float,
    trusted: frozenset[str] = frozenset(),
) -> tuple[list[Separation], list[Separation]]:
    """(features above ``max_auc`` not in ``trusted``, the three strongest of all), strongest
    first."""
    auc = single_feature_auc(X, y, train, valid, categorical)
    ranked = [Separation(names[j], float(auc[j])) for j in np.argsort(-auc, kind="stable")]
    leaks = [s for s in ranked if s.auc > max_auc and s.feature not in trusted]
    return leaks, ranked[:3]


# Labelled parcels, and others, below which where a feature is filled says nothing.
RECORD_MIN_PARCELS = 50
# Difference in the share filled between inspected parcels and the others that marks a value
# the inspection writes: real features differ by selection at most by some tens of percent.
RECORD_FILL_GAP = 0.9


@dataclass(frozen=True)
class Record:
    """A feature filled on the inspected parcels and not on the others (or the reverse), or
    one value on every parcel never inspected and others on the inspected ones."""

    feature: str
    filled_inspected: float  # share of labelled parcels with a value
    filled_others: float  # share of the parcels never inspected with a value
    # the one value every parcel never inspected holds (None: told by where it is filled)
    only_value: float | None = None


# Parcels never inspected below which one value on all of them says nothing (a rare flag
# is absent from a few hundred by chance)
RECORD_MIN_OTHERS = 1_000
# Shares: of the parcels never inspected on the one value; of the inspected ones off it
RECORD_ONE_VALUE = 0.999
RECORD_OFF_VALUE = 0.01


def inspection_records(
    names: list[str],
    X: np.ndarray,
    labelled: np.ndarray,
    trusted: frozenset[str] = frozenset(),
    extras: frozenset[str] = frozenset(),
) -> list[Record]:
    """Features whose presence says whether a parcel was inspected: an extra holding the
    control's time (epoch milliseconds, a number like any other), its reference or the
    inspector's note. The one-feature AUC does not see them (every label has one; they do not
    separate illicit from clean), yet the model learns on values declarations never carry.
    A census (no parcel left uninspected) or too few of either says nothing."""
    n_labelled, n_others = int(labelled.sum()), int((~labelled).sum())
    if n_labelled < RECORD_MIN_PARCELS or n_others < RECORD_MIN_PARCELS:
        return []
    filled = ~np.isnan(X)
    on_inspected = filled[labelled].mean(axis=0)
    on_others = filled[~labelled].mean(axis=0)
    gap = np.abs(on_inspected - on_others)
    out = [
        Record(names[j], float(on_inspected[j]), float(on_others[j]))
        for j in np.argsort(-gap, kind="stable")
        if gap[j] >= RECORD_FILL_GAP and names[j] not in trusted
    ]
    found = {r.feature for r in out}
    # An export's column the inspection fills in, written 0 (or one code) on every other
    # parcel: duties assessed after the control. Only extras: a feature built here from the
    # declarations varies on the parcels never inspected; a column an administration added
    # may not, and a rule inspecting every parcel of a rare flag is vouched for by name.
    if n_others >= RECORD_MIN_OTHERS:
        for j, name in enumerate(names):
            if name not in extras or name in trusted or name in found:
                continue
            others = X[~labelled, j]
            values, counts = np.unique(others[~np.isnan(others)], return_counts=True)
            if len(values) == 0:
                continue  # missing on all of them: the presence check's
            one = values[np.argmax(counts)]
            if (others == one).mean() < RECORD_ONE_VALUE:
                continue
            inspected = X[labelled, j]
            if (inspected != one).mean() >= RECORD_OFF_VALUE:
                out.append(Record(name, float(on_inspected[j]), float(on_others[j]), float(one)))
    return out


# A value off the clean parcels' own, held by at least this many labelled parcels and this
# share of the illicit ones, nearly all illicit: what the inspection wrote once it found
RESULT_MIN_PARCELS = 20
RESULT_MIN_RECALL = 0.05
RESULT_PRECISION = 0.99


@dataclass(frozen=True)
class OneSided:
    """An extra off its clean value only where the inspection found something."""

    feature: str
    clean_value: float  # the value (nearly) every clean labelled parcel holds
    off_parcels: int  # labelled parcels holding another
    off_illicit: float  # the share of those that are illicit


def one_sided_results(
    names: list[str],
    X: np.ndarray,
    y: np.ndarray,
    labelled: np.ndarray,
    extras: frozenset[str],
    trusted: frozenset[str] = frozenset(),
) -> list[OneSided]:
    """Extras that hold one value on the clean parcels and others only on illicit ones:
    duties assessed after a finding, 0 elsewhere, in a census (every parcel inspected, so
    ``inspection_records`` has nothing to compare). The one-feature AUC misses them when
    some findings carry no amount (0.84 for the probe's German export). Extras only: a
    feature built from declarations (a restricted-goods word) may be as certain, by design."""
    out = []
    y_l = np.asarray(y, dtype=np.float64)[labelled]
    clean = y_l == 0
    n_illicit = int((y_l == 1).sum())
    if n_illicit == 0 or clean.sum() == 0:
        return out
    for j, name in enumerate(names):
        if name not in extras or name in trusted:
            continue
        x = X[labelled, j]
        values, counts = np.unique(x[clean & ~np.isnan(x)], return_counts=True)
        if len(values) == 0:
            continue
        usual = values[np.argmax(counts)]
        if (x[clean] == usual).mean() < RESULT_PRECISION:
            continue
        off = ~np.isnan(x) & (x != usual)
        n_off = int(off.sum())
        if n_off < RESULT_MIN_PARCELS:
            continue
        illicit_share = float(y_l[off].mean())
        recall = float(y_l[off].sum()) / n_illicit
        if illicit_share >= RESULT_PRECISION and recall >= RESULT_MIN_RECALL:
            out.append(OneSided(name, float(usual), n_off, illicit_share))
    return out
