"""Reasons people can read, from LightGBM TreeSHAP contributions and the manifest's templates.

Pure: contribution rows + the model input rows + declaration context in, sentences out.
A reason is the feature's ``FeatureSpec.reason`` template filled with the value the model saw
(category codes shown as their label) and the declaration context (``REASON_CONTEXT``). A value
or context the template cannot use (NaN, unknown category, missing context, bad format spec)
falls back to the feature's plain description: a reason is never dropped and never crashes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from features.intake.columns import python_values
from features.pipeline.manifest import REASON_CONTEXT

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from features.pipeline.manifest import FeatureManifest, FeatureSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reason:
    feature: str
    text: str
    contribution: float  # log-odds this feature added to the raw risk score

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "text": self.text, "contribution": self.contribution}


def display_value(spec: FeatureSpec, value: float) -> Any:
    """The value as a person reads it: category label, int, float; None if unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if spec.dtype == "category":
        code = int(value)
        if spec.categories is None or not 0 <= code < len(spec.categories):
            return None
        return spec.categories[code]
    if spec.dtype == "int":
        return int(value)
    return float(value)


def render_reason(spec: FeatureSpec, value: float, context: dict[str, Any]) -> str:
    """One sentence for one feature; the spec description whenever the template cannot fill."""
    shown = display_value(spec, value)
    if shown is None:
        return spec.description
    try:
        return spec.reason.format(value=shown, **context)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        logger.debug("reason template of %s fell back to its description: %r", spec.name, exc)
        return spec.description


def _context_rows(context: pd.DataFrame | Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """REASON_CONTEXT values per row, missing ones left out (the template then falls back).

    ``context``: a feature frame, or columns as arrays of Python values (None for missing).
    """
    import pandas as pd

    columns = [c for c in REASON_CONTEXT if c in context]
    if not columns:
        return [{} for _ in range(n)]
    if isinstance(context, pd.DataFrame):
        values = [python_values(context[c]) for c in columns]  # to_dict costs ~5x more per call
    else:
        values = [list(context[c]) for c in columns]
    return [
        {k: v for k, v in zip(columns, row, strict=True) if v is not None}
        for row in zip(*values, strict=True)
    ]


def explain_decisions(
    contributions: np.ndarray,
    X: np.ndarray,
    context: pd.DataFrame | Mapping[str, Any],
    manifest: FeatureManifest,
    top_k: int = 5,
) -> list[list[Reason]]:
    """Top ``top_k`` positive contributions of each row as reasons, largest first.

    ``contributions`` is ``RiskModel.contributions(X)`` (last column the base value), ``X`` the
    same rows of the model input matrix and ``context`` the same rows of the online feature
    frame, or its ``REASON_CONTEXT`` columns as arrays (``OnlineFeatures.context``). Rows with
    no positive contribution get no reasons.
    """
    n_features = len(manifest.features)
    if contributions.shape != (len(X), n_features + 1):
        raise ValueError(
            f"contributions shape {contributions.shape} does not match {len(X)} rows x "
            f"{n_features} features + base"
        )
    if len(X) == 0 or top_k <= 0:
        return [[] for _ in range(len(X))]
    phi = contributions[:, :n_features]
    k = min(top_k, n_features)
    # argpartition then sort only the k candidates: O(n·f) instead of a full sort per row
    top = np.argpartition(-phi, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(-phi, top, axis=1).argsort(axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    contexts = _context_rows(context, len(X))
    specs = manifest.features
    out: list[list[Reason]] = []
    for i in range(len(X)):
        row: list[Reason] = []
        for j in top[i]:
            c = float(phi[i, j])
            if c <= 0:
                break
            row.append(Reason(specs[j].name, render_reason(specs[j], X[i, j], contexts[i]), c))
        out.append(row)
    return out


def contribution_table(
    contributions: np.ndarray, X: np.ndarray, manifest: FeatureManifest
) -> list[dict[str, Any]]:
    """One row's full contribution vector as (feature, value, contribution), manifest order."""
    return [
        {
            "feature": spec.name,
            "value": display_value(spec, float(X[j])),
            "contribution": float(contributions[j]),
        }
        for j, spec in enumerate(manifest.features)
    ]
