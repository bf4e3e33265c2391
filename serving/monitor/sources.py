"""Whose feed broke: a broken feature's faults attributed to the operators lodging the
declarations, and operators that appear or vanish between two periods.

Probe 32: one carrier's export stopped filling a field, and the monitor's alert said "missing
in 38% of decisions" without saying whose; a carrier renamed in its export read only as drift
of the operator-history features. Every declaration names its postal or express operator
(``operator_id``), the party whose export is the feed, so that is what the alert names: the
duty officer calls that carrier, not the whole network. Pure: arrays in, dicts and words out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.reference import ValueReference

# Operators broken out one by one, commonest first; the rest counted together. A feed fault
# is named only for an operator of these: a carrier too small to be kept here cannot be the
# cause of a shift worth paging.
OPERATORS_KEPT = 20
NO_OPERATOR = "(no operator)"
OTHER_OPERATORS = "(other operators)"
# An operator named as a fault's source: it holds at least this share of the faults...
SOURCE_SHARE = 0.2
# ...and its own fault rate is at least twice the others' plus this (a field every carrier
# leaves empty in 30% of declarations is an upstream change, not one carrier's)
SOURCE_MARGIN = 0.05
SOURCES_NAMED = 3
# An operator holding this share of one period's decisions and less than OPERATOR_ABSENT of
# the other's appeared or vanished between them: a new carrier, one that stopped, or, both at
# once, one carrier under a new id (its history starts again from nothing)
OPERATOR_CHANGE_SHARE = 0.05
OPERATOR_ABSENT = 0.001


@dataclass(frozen=True)
class OperatorFaults:
    """Per operator group (``OPERATORS_KEPT`` named ones, then ``NO_OPERATOR`` and
    ``OTHER_OPERATORS``) of the vectors compared: how many, and per feature (reference order)
    how many were missing and how many held a category the reference never held."""

    names: tuple[str, ...]
    rows: np.ndarray  # (groups,)
    missing: np.ndarray  # (groups, features)
    outside: np.ndarray  # (groups, features); zero for numeric features


def operator_groups(operators: pd.Series) -> tuple[tuple[str, ...], np.ndarray]:
    """The group names and each row's group: the ``OPERATORS_KEPT`` commonest operators (ties
    in order of first appearance), then no operator, then every other operator."""
    codes, uniques = pd.factorize(operators.astype(object), use_na_sentinel=True)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    kept = np.argsort(-counts, kind="stable")[:OPERATORS_KEPT]
    kept = kept[counts[kept] > 0]
    # one more slot, last, for the missing code -1: no operator
    group_of = np.full(len(uniques) + 1, len(kept) + 1, dtype=np.int64)
    group_of[kept] = np.arange(len(kept))
    group_of[-1] = len(kept)
    groups = group_of[codes]
    names = (*(str(uniques[k]) for k in kept), NO_OPERATOR, OTHER_OPERATORS)
    return names, groups


def operator_faults(
    operators: pd.Series, X: np.ndarray, references: tuple[ValueReference, ...]
) -> OperatorFaults:
    """``X``'s missing and out-of-category values counted per operator group (``operators``:
    one per row of ``X``)."""
    names, groups = operator_groups(operators)
    k, p = len(names), X.shape[1]
    missing = np.zeros((k, p), dtype=np.int64)
    outside = np.zeros((k, p), dtype=np.int64)
    for j, ref in enumerate(references):
        column = X[:, j]
        absent = np.isnan(column)
        if absent.any():
            missing[:, j] = np.bincount(groups[absent], minlength=k)
        if ref.kind == "discrete" and len(ref.edges):
            edges = np.asarray(ref.edges, dtype=np.float64)
            at = np.minimum(np.searchsorted(edges, column), len(edges) - 1)
            other = ~absent & (edges[at] != column)
            if other.any():
                outside[:, j] = np.bincount(groups[other], minlength=k)
    return OperatorFaults(names, np.bincount(groups, minlength=k), missing, outside)


def fault_sources(
    faults: OperatorFaults, j: int, kind: str, before: OperatorFaults | None = None
) -> list[dict[str, Any]]:
    """The operators a feature's faults (``kind``: "missing" or "outside") come from: each
    that holds ``SOURCE_SHARE`` of them at a rate clearly above the other operators', most
    faults first, at most ``SOURCES_NAMED``; with its rate in the period ``before`` where that
    period holds the operator. Empty: the faults are spread (no operator stands out)."""
    counts = (faults.missing if kind == "missing" else faults.outside)[:, j].astype(np.float64)
    total, rows = counts.sum(), faults.rows.astype(np.float64)
    if total == 0:
        return []
    named = []
    for g in np.argsort(-counts, kind="stable"):
        name = faults.names[g]
        if len(named) == SOURCES_NAMED or counts[g] < SOURCE_SHARE * total:
            break
        if name == OTHER_OPERATORS or rows[g] == 0:
            continue
        rate = counts[g] / rows[g]
        rest_rows = rows.sum() - rows[g]
        rest = (total - counts[g]) / rest_rows if rest_rows else 0.0
        if rate < 2 * rest + SOURCE_MARGIN:
            continue
        source = {
            "operator": name,
            "decisions": int(rows[g]),
            "share_of_faults": float(counts[g] / total),
            "rate": float(rate),
            "others_rate": float(rest),
            "rate_before": None,
        }
        if before is not None and name in before.names:
            b = before.names.index(name)
            was = before.missing if kind == "missing" else before.outside
            if before.rows[b]:
                source["rate_before"] = float(was[b, j] / before.rows[b])
        named.append(source)
    return named


def fault_source_words(sources: list[dict[str, Any]], kind: str) -> str:
    """``fault_sources`` as an alert says them."""
    what = "missing" if kind == "missing" else "outside the reference's categories"
    if not sources:
        return "; spread over the operators (none stands out: an upstream change?)"
    parts = []
    for s in sources:
        who = (
            "declarations without an operator"
            if s["operator"] == NO_OPERATOR
            else f"operator {s['operator']}"
        )
        before = (
            "" if s["rate_before"] is None else f"; {s['rate_before']:.0%} in the period before"
        )
        parts.append(
            f"{s['share_of_faults']:.0%} of them from {who} ({what} in {s['rate']:.0%} of its "
            f"{s['decisions']:,} decisions, {s['others_rate']:.0%} of the others'{before})"
        )
    return "; " + "; ".join(parts)


def operator_shares(operators: pd.Series) -> dict[str, float]:
    """Each operator's share of a period's decisions (no operator left out), down to
    ``OPERATOR_ABSENT``: what is needed to tell one that appeared or vanished."""
    n = len(operators)
    if not n:
        return {}
    counts = operators.astype(object).value_counts(dropna=True)
    shares = counts / n
    return {str(k): float(v) for k, v in shares[shares >= OPERATOR_ABSENT].items()}


def operator_changes(now: dict[str, float], before: dict[str, float]) -> dict[str, Any]:
    """Operators holding ``OPERATOR_CHANGE_SHARE`` of one period and (next to) none of the
    other: ``new`` this period, ``gone`` since the period before."""
    new = {k: v for k, v in now.items() if v >= OPERATOR_CHANGE_SHARE and k not in before}
    gone = {k: v for k, v in before.items() if v >= OPERATOR_CHANGE_SHARE and k not in now}
    return {"new": new, "gone": gone}


def operator_change_words(changes: dict[str, Any]) -> str:
    """The ``operator_change`` alert's message."""
    new, gone = changes["new"], changes["gone"]
    said = []
    if new:
        listed = ", ".join(f"{k} ({v:.0%} of decisions)" for k, v in new.items())
        said.append(f"operators new since the period before: {listed}")
    if gone:
        listed = ", ".join(f"{k} ({v:.0%} then)" for k, v in gone.items())
        said.append(f"operators with no decisions since the period before: {listed}")
    if new and gone:
        said.append(
            "one carrier under a new id? Its parcels are scored without their history: read "
            "the new id as the old in the mapping (operator_id: values {NEW: OLD}, "
            "unlisted: keep) and rebuild the features"
        )
    else:
        said.append("their parcels are scored without an operator history until one builds up")
    return "; ".join(said)
