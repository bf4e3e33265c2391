"""Entity history family: window edges and outcome timing, hand-computed."""

from __future__ import annotations

import pandas as pd
import pytest

from features.intake.contract import Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from tests.test_features.family_frames import T0, declarations

US = pd.Timedelta(microseconds=1)
PARAMS = FeatureParams(windows_days=(7,), outcome_window_days=90)


def _seller(frame: pd.DataFrame, column: str) -> list[float]:
    return frame.set_index("declaration_id")[column].tolist()


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (pd.Timedelta(days=7) - US, 1.0),  # inside the window
        (pd.Timedelta(days=7), 1.0),  # exactly 7 days before: counted (window [t - 7d, t))
        (pd.Timedelta(days=7) + US, 0.0),  # 1 us further: outside
    ],
)
def test_declaration_window_edges(gap, expected):
    frame = build_features(
        declarations({"declared_at": T0}, {"declared_at": T0 + gap}), Contract(), PARAMS
    ).frame
    assert _seller(frame, "seller_n_7d") == [0.0, expected]
    assert _seller(frame, "seller_days_since_first")[1] == pytest.approx(gap / pd.Timedelta(days=1))


def test_same_instant_declarations_do_not_count_each_other():
    frame = build_features(
        declarations({"declared_at": T0}, {"declared_at": T0}), Contract(), PARAMS
    ).frame
    assert _seller(frame, "seller_n_7d") == [0.0, 0.0]


def test_a_result_counts_from_when_it_is_recorded_and_leaves_the_outcome_window():
    found = T0 + pd.Timedelta(days=2)
    history = declarations(
        {
            "declared_at": T0,
            "inspected": True,
            "inspected_at": found,
            "illicit": True,
            "revenue_recovered": 30.0,
        },
        {"declared_at": found},  # recorded at the same instant: not known yet
        {"declared_at": found + US},
        {"declared_at": found + pd.Timedelta(days=90)},  # window [t - 90d, t): still inside
        {"declared_at": found + pd.Timedelta(days=90) + US},  # outside the 90-day window
    )
    frame = build_features(history, Contract(), PARAMS).frame
    assert _seller(frame, "seller_n_illicit") == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert _seller(frame, "seller_illicit_90d") == [0.0, 0.0, 1.0, 1.0, 0.0]
    assert _seller(frame, "seller_revenue_recovered_eur") == [0.0, 0.0, 30.0, 30.0, 30.0]
    # hit rate smoothed towards the global prior (here: the same single result)
    strength = PARAMS.prior_strength
    prior = (1 + strength * PARAMS.default_prior) / (1 + strength)
    assert _seller(frame, "seller_hit_rate")[2] == pytest.approx(
        (1 + strength * prior) / (1 + strength)
    )
