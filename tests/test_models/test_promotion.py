"""The champion/challenger policy: pure functions over flat metric dicts (no MLflow here)."""

from __future__ import annotations

import pytest

from features.errors import ParcelriskError
from features.params import PromoteParams
from models.promotion import (
    Decision,
    decide_promotion,
    gate_metrics,
    promotion_outcome,
)


def _m(precision: float, revenue: float, ece: float, ev: str = "test_all") -> dict[str, float]:
    return {
        f"{ev}.model.precision_at_5": precision,
        f"{ev}.model.revenue_at_5": revenue,
        f"{ev}.model.ece": ece,
    }


GATE = PromoteParams(
    min_gain_revenue_at_5=0.01, min_gain_precision_at_5=0.0, max_calibration_error=0.05
)


@pytest.mark.parametrize(
    ("champion", "challenger", "promote"),
    [
        (_m(0.30, 0.40, 0.01), _m(0.35, 0.45, 0.02), True),
        (_m(0.30, 0.40, 0.01), _m(0.25, 0.45, 0.02), False),  # precision worse
        (_m(0.30, 0.40, 0.01), _m(0.35, 0.405, 0.02), False),  # revenue gain below margin
        (_m(0.30, 0.40, 0.01), _m(0.35, 0.45, 0.08), False),  # badly calibrated
        (_m(0.30, 0.40, 0.01, "test_random"), _m(0.35, 0.45, 0.02, "test_random"), True),
    ],
)
def test_decide_promotion(champion, challenger, promote):
    decision = decide_promotion(champion, challenger, GATE)
    assert decision.promote is promote
    assert len(decision.reasons) >= 3


def test_decision_type_is_plain_data():
    assert Decision(True, ["x"]).promote


def test_decide_promotion_refuses_a_tie():
    same = _m(0.3, 0.4, 0.01)
    decision = decide_promotion(same, same, GATE.replace(min_gain_revenue_at_5=0.0))
    assert not decision.promote
    assert any("no better" in r for r in decision.reasons)


def _precision_only(precision: float, ece: float | None = 0.01) -> dict[str, float]:
    out = {"test_random.model.precision_at_5": precision}
    if ece is not None:
        out["test_random.model.ece"] = ece
    return out


def test_without_revenue_in_either_precision_decides_alone():
    decision = decide_promotion(_precision_only(0.30), _precision_only(0.35), GATE)
    assert decision.promote and decision.evaluation == "test_random"
    assert any("revenue_at_5" in r and "precision_at_5 only" in r for r in decision.reasons)


def test_revenue_missing_in_one_version_is_not_compared():
    champion = _m(0.30, 0.90, 0.01, "test_random")  # revenue the challenger cannot match
    decision = decide_promotion(champion, _precision_only(0.35), GATE)
    assert decision.promote
    assert any("not available for the challenger" in r for r in decision.reasons)


def test_nan_metrics_count_as_missing_never_as_numbers():
    champion = _m(0.30, float("nan"), 0.01, "test_random")
    challenger = _m(0.35, float("nan"), 0.02, "test_random")
    decision = decide_promotion(champion, challenger, GATE)
    assert decision.promote
    assert not any("nan" in r for r in decision.reasons)


def test_equal_precision_without_revenue_is_refused():
    decision = decide_promotion(_precision_only(0.3), _precision_only(0.3), GATE)
    assert not decision.promote
    assert any("no better" in r for r in decision.reasons)


def test_missing_calibration_error_is_reported_not_held_against():
    decision = decide_promotion(_precision_only(0.3), _precision_only(0.4, ece=None), GATE)
    assert decision.promote
    assert any("calibration error" in r and "not checked" in r for r in decision.reasons)


@pytest.mark.parametrize(
    "challenger",
    [{}, {"test_random.model.precision_at_5": float("nan")}, _m(0.4, 0.5, 0.01, "test_all")],
)
def test_no_comparable_metric_is_refused_with_a_reason(challenger):
    decision = decide_promotion(_precision_only(0.3), challenger, GATE)
    assert not decision.promote
    assert decision.reasons == [
        "no comparable metric: champion and challenger share no finite precision_at_5 on "
        "the holdout (test_all or test_random)"
    ]


def test_decide_promotion_prefers_ground_truth_evaluation():
    champion = {**_m(0.3, 0.4, 0.01), **_m(0.9, 0.9, 0.01, "test_random")}
    challenger = {**_m(0.4, 0.5, 0.01), **_m(0.1, 0.1, 0.01, "test_random")}
    assert decide_promotion(champion, challenger, GATE).evaluation == "test_all"


@pytest.mark.parametrize(
    ("promote", "force", "outcome"),
    [
        (True, False, "promoted"),
        (True, True, "promoted"),
        (False, True, "forced"),
        (False, False, "refused"),
    ],
)
def test_force_overrides_only_a_refusal(promote, force, outcome):
    assert promotion_outcome(Decision(promote, ["x"]), force) == outcome


def test_gate_metrics_keep_the_compared_figures_per_role():
    per_model = {
        "champion": {
            **_m(0.3, 0.4, 0.01),
            "test_all.model.roc_auc": 0.8,
            "test_all.model.recall_at_5": 0.2,
        },
        "challenger": _m(0.35, 0.45, 0.02, "test_random"),
    }
    assert gate_metrics(per_model) == {
        "champion.test_all.model.precision_at_5": 0.3,
        "champion.test_all.model.revenue_at_5": 0.4,
        "champion.test_all.model.ece": 0.01,
        "champion.test_all.model.roc_auc": 0.8,
        "challenger.test_random.model.precision_at_5": 0.35,
        "challenger.test_random.model.revenue_at_5": 0.45,
        "challenger.test_random.model.ece": 0.02,
    }


def test_unknown_promote_params_are_a_clear_error():
    with pytest.raises(ParcelriskError, match="promote: min_gain: unknown key"):
        PromoteParams.from_dict({"min_gain": 0.1})
