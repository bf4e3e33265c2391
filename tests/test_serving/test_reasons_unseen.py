"""A reason about an entity's past hit rate says when there were no past inspections: the
number is then the prior, not a record of inspections that never happened."""

from __future__ import annotations

import numpy as np

from features.pipeline.manifest import FeatureManifest, FeatureSpec
from serving.reasons import explain_decisions

SPECS = (
    FeatureSpec("hs6_n_inspected", "entity_history", "float", "d", "HS {hs6} inspected {value:.0f} times before"),
    FeatureSpec("hs6_hit_rate", "entity_history", "float", "d", "HS {hs6} past inspections hit rate {value:.0%}"),
)  # fmt: skip


def _reasons(n_inspected: float) -> list[str]:
    manifest = FeatureManifest(SPECS)
    X = np.array([[n_inspected, 0.21]])
    contributions = np.array([[0.0, 0.8, -1.0]])  # the hit rate raised the score; base last
    (row,) = explain_decisions(contributions, X, {"hs6": np.array(["901210"])}, manifest)
    return [r.text for r in row]


def test_never_inspected_says_the_rate_is_the_prior() -> None:
    assert _reasons(0.0) == ["HS 901210 never inspected before: prior hit rate 21%"]


def test_inspected_before_keeps_the_record() -> None:
    assert _reasons(3.0) == ["HS 901210 past inspections hit rate 21%"]
