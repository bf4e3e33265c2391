"""HS heading value family (optional): unit value against the past median of the heading."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.contract import DECLARATION_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.online import compute_online_features
from features.pipeline.snapshot import EntityState, build_entity_state
from tests.test_features.family_frames import T0, declarations

PARAMS = FeatureParams(
    min_reference_count=5, refit_period_days=7, extra_families=("hs_heading_value",)
)


def _history() -> pd.DataFrame:
    # the week before T0: five parcels of heading 6109 under two subheadings, EUR 5, 10 (x3), 40
    # per item; then this week: one at EUR 20 per item (2 items) under a third, rare subheading
    past = [
        {"declared_at": T0 - pd.Timedelta(days=6, hours=i), "hs_code": hs, "declared_value": v}
        for i, (hs, v) in enumerate(
            [
                ("610910", 5.0),
                ("610910", 10.0),
                ("610990", 10.0),
                ("610990", 10.0),
                ("610910", 40.0),
            ]
        )
    ]
    now = {"declared_at": T0, "hs_code": "610920", "quantity": 2, "declared_value": 40.0}
    return declarations(*past, now)


def test_ratio_to_the_heading_median_learned_before_the_period():
    built = build_features(_history(), Contract(), PARAMS)
    frame = built.frame
    assert frame["reference_count_hs_heading"].tolist() == [0, 0, 0, 0, 0, 5]
    assert frame["unit_value_ratio_hs_heading"].iloc[:5].isna().all()  # same period: no reference
    assert frame["unit_value_ratio_hs_heading"].iloc[5] == pytest.approx(2.0)  # 20 / median 10
    assert pd.isna(frame["unit_value_ratio_hs6"].iloc[5])  # the HS6 reference has nothing
    reason = built.manifest.spec("unit_value_ratio_hs_heading").reason
    assert reason.format(value=2.0, hs_code="610920") == (
        "declared unit value is 200% of the past median for the heading of HS 610920"
    )


def test_too_few_references_give_no_ratio():
    built = build_features(_history(), Contract(), PARAMS.replace(min_reference_count=6))
    assert built.frame["reference_count_hs_heading"].iloc[5] == 5
    assert pd.isna(built.frame["unit_value_ratio_hs_heading"].iloc[5])


def test_online_equals_batch_through_the_snapshot(tmp_path):
    history = _history()
    built = build_features(history, Contract(), PARAMS)
    state = build_entity_state(
        history.iloc[:5], Contract(), PARAMS, cutoff=T0, manifest=built.manifest
    )
    state.save(tmp_path / "state")
    online = compute_online_features(
        history.iloc[5:][list(DECLARATION_COLUMNS)], EntityState.load(tmp_path / "state")
    )
    assert online["unit_value_ratio_hs_heading"].iloc[0] == pytest.approx(2.0)


def test_off_by_default_and_unknown_families_are_refused():
    assert (
        "unit_value_ratio_hs_heading"
        not in build_features(_history(), Contract(), FeatureParams()).manifest.names
    )
    bad = PARAMS.replace(extra_families=("hs_heading",))
    with pytest.raises(ParcelriskError, match="unknown family hs_heading"):
        build_features(_history(), Contract(), bad)
