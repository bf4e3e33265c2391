"""Valuation family: ratios against references learned before the period, hand-computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from tests.test_features.family_frames import T0, declarations

PARAMS = FeatureParams(min_reference_count=5, refit_period_days=7)


def _history(*later: dict) -> pd.DataFrame:
    # five past parcels of HS 610910 at EUR 10 per item (2 items, EUR 20), in the week before T0
    past = [
        {"declared_at": T0 - pd.Timedelta(days=6, hours=i), "quantity": 2, "declared_value": 20.0}
        for i in range(5)
    ]
    return declarations(*past, *later)


@pytest.mark.parametrize(("value", "ratio"), [(40.0, 2.0), (10.0, 0.5), (20.0, 1.0)])
def test_unit_value_ratio_is_declared_over_reference(value, ratio):
    frame = build_features(
        _history({"declared_at": T0, "quantity": 2, "declared_value": value}), Contract(), PARAMS
    ).frame
    last = frame.iloc[-1]
    assert last["unit_value_ratio_hs6"] == pytest.approx(ratio)
    assert last["unit_value_ratio_hs6_origin"] == pytest.approx(ratio)
    assert last["reference_value_eur"] == pytest.approx(20.0)  # 2 items at EUR 10
    assert last["value_gap_eur"] == pytest.approx(max(20.0 - value, 0.0))
    assert last["reference_count_hs6"] == 5


def test_references_come_from_before_the_period_start():
    frame = build_features(_history(), Contract(), PARAMS).frame
    # the five parcels share one period: none has a reference yet
    assert (frame["reference_count_hs6"] == 0).all()
    assert frame["unit_value_ratio_hs6"].isna().all()


def test_de_minimis_ratio_and_just_below():
    values = [119.99, 120.0, 149.99, 150.0]
    frame = build_features(
        declarations(*({"declared_at": T0, "declared_value": v} for v in values)),
        Contract(),
        PARAMS,
    ).frame.sort_values("declaration_id")
    np.testing.assert_allclose(frame["de_minimis_ratio"], np.array(values) / 150.0)
    assert frame["just_below_de_minimis"].tolist() == [0.0, 1.0, 1.0, 0.0]
