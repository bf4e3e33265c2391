"""An absurd declared value (accepted by the gate with a plausibility warning) is capped before
it reaches the features: no numpy overflow warnings, and no entity sum wrapping around int64."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from features.intake.contract import Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.prepare import MAX_VALUE_EUR
from tests.test_features.family_frames import T0, declarations


def test_absurd_values_of_one_consignee_sum_without_wrapping_around() -> None:
    """Three parcels of one consignee at 1e308 (GBP: more than the base currency) within a
    day: the third's 24 h consignee and order sums were -9.2e16 EUR before the cap."""
    history = declarations(
        *(
            {"declared_at": T0 + pd.Timedelta(hours=i), "declared_value": 1e308, "currency": "GBP"}
            for i in range(3)
        ),
        {"declared_at": T0 + pd.Timedelta(hours=4), "declared_value": 12.0},
    )
    params = FeatureParams()  # GBP is worth more than the base currency (EUR)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow would raise here
        frame = build_features(history, Contract(), params).frame
    sums = [c for c in frame.columns if c.endswith("_eur") and ("value_" in c)]
    assert sums, frame.columns.tolist()
    values = frame[sums].to_numpy(dtype=float)
    assert np.isfinite(values[~np.isnan(values)]).all()
    assert (values[~np.isnan(values)] >= 0).all(), frame[sums].iloc[2].to_dict()
    last = frame.iloc[3]
    for column in ("consignee_value_24h_eur", "order_value_24h_eur"):
        if column in frame.columns:  # three capped parcels before it: their sum, exactly
            assert last[column] == 3 * MAX_VALUE_EUR, (column, last[column])
