"""An administration whose base currency is not EUR (XOF): its de minimis, set in EUR, is
compared with values in XOF, and what people read names XOF for values in XOF."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from features.intake.contract import Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.synthetic import SyntheticParams, generate

XOF_PER = {"XOF": 1.0, "EUR": 655.957, "USD": 603.48, "GBP": 767.47, "CNY": 83.31}
XOF_PER |= {"HKD": 77.40, "TRY": 17.71, "JPY": 4.00, "NGN": 0.40}
XOF = FeatureParams(base_currency="XOF", fx_to_base=XOF_PER)


def test_the_de_minimis_in_eur_is_compared_in_the_base_currency() -> None:
    assert XOF.de_minimis_base == pytest.approx(150.0 * 655.957)
    assert FeatureParams().de_minimis_base == 150.0


def test_a_base_currency_without_an_eur_rate_is_refused() -> None:
    rates = {k: v for k, v in XOF_PER.items() if k != "EUR"}
    with pytest.raises(ValidationError, match="fx_to_base needs a rate for EUR"):
        FeatureParams(base_currency="XOF", fx_to_base=rates)


@pytest.fixture(scope="module")
def built():
    declarations, _ = generate(SyntheticParams(seed=3, parcels=3_000, days=30))
    return build_features(declarations, Contract(), XOF)


def test_values_in_xof_are_judged_against_150_eur_in_xof(built) -> None:
    frame = built.frame
    value_xof = frame["value_eur"].to_numpy(float)  # the base currency, whatever the name
    ratio = frame["de_minimis_ratio"].to_numpy(float)
    assert np.allclose(ratio, value_xof / (150.0 * 655.957), equal_nan=True)
    # a parcel of 20 EUR is far under the threshold, not 87 times above it
    assert np.nanmedian(ratio) < 2


def test_reasons_name_the_base_currency_for_values_and_eur_for_revenue(built) -> None:
    specs = {s.name: s for s in built.manifest.features}
    assert specs["value_gap_eur"].reason.startswith("declared XOF ")
    assert "XOF" in specs["value_eur"].description
    revenue = next(s for name, s in specs.items() if name.endswith("_revenue_recovered_eur"))
    assert "EUR" in revenue.reason and "XOF" not in revenue.reason
    windows = [s for name, s in specs.items() if name.startswith(("order_value", "split_value"))]
    assert windows and all("XOF" in s.reason and "EUR" not in s.reason for s in windows)


def test_a_held_field_no_feature_reads_is_named() -> None:
    from features.pipeline.prepare import unused_inputs

    held = ("declared_at", "hs_code", "consignee_region", "channel", "seller_id")
    assert unused_inputs(FeatureParams(), Contract(), held) == ["consignee_region"]
    as_category = FeatureParams(categoricals=("channel", "consignee_region"))
    assert unused_inputs(as_category, Contract(), held) == []
    assert unused_inputs(FeatureParams(), Contract(), None) == []
