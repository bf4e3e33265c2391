"""Valuation without quantities: every reference level counts kilograms, in batch and online."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.families.valuation import fit_references
from features.intake.contract import DECLARATION_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.online import compute_online_features
from features.pipeline.prepare import unit_values
from features.pipeline.snapshot import EntityState, build_entity_state
from features.synthetic import SyntheticParams, generate
from tests.test_features.family_frames import T0, declarations

PARAMS = FeatureParams(min_reference_count=5, refit_period_days=7)
VALUATION = [
    "value_per_kg_ratio_hs6",
    "value_per_kg_ratio_hs6_origin",
    "reference_count_hs6",
    "reference_value_eur",
    "value_gap_eur",
]


def _past(n: int = 5, quantity: int | None = None) -> list[dict]:
    """``n`` parcels of HS 610910 from CN at EUR 20 per kg, in the week before T0."""
    values = [20.0, 40.0, 10.0, 60.0, 30.0, 50.0, 70.0][:n]
    return [
        {
            "declared_at": T0 - pd.Timedelta(days=6, hours=i),
            "quantity": quantity,
            "declared_value": value,
            "gross_weight_kg": value / 20.0,
        }
        for i, value in enumerate(values)
    ]


# 3 kg declared at EUR 15 (EUR 5 per kg): worth EUR 60 at EUR 20 per kg, EUR 45 undervalued;
# TR has no HS6 x origin reference of its own, so its ratios fall back on the HS6 one
NEW = [
    {"declared_at": T0, "quantity": None, "declared_value": 15.0, "gross_weight_kg": 3.0},
    {
        "declared_at": T0,
        "quantity": None,
        "declared_value": 15.0,
        "gross_weight_kg": 3.0,
        "origin_country": "TR",
    },
]


def test_hs6_references_count_kilograms_without_quantities() -> None:
    past_value = np.array([20.0, 40.0, 10.0, 60.0, 30.0])
    logs = unit_values(past_value, np.full(5, np.nan), past_value / 20.0)
    hs6 = np.array(["610910"] * 5, dtype=object)
    refs = fit_references(hs6, np.array(["610910|CN"] * 5, dtype=object), logs)
    assert refs.hs6.loc["610910", "count"] == 5
    assert refs.hs6_origin.loc["610910|CN", "count"] == 5
    assert refs.hs6.loc["610910", "log_value_per_kg"] == pytest.approx(np.log(20.0))


def test_batch_ratios_and_reference_values_count_kilograms_at_every_level() -> None:
    built = build_features(declarations(*_past(), *NEW), Contract(), PARAMS)
    assert "quantity" not in built.manifest.inputs
    new = built.frame.iloc[-2:]
    np.testing.assert_allclose(new["reference_count_hs6"], [5.0, 5.0])
    np.testing.assert_allclose(new["value_per_kg_ratio_hs6"], [0.25, 0.25])
    np.testing.assert_allclose(new["value_per_kg_ratio_hs6_origin"], [0.25, 0.25])
    np.testing.assert_allclose(new["reference_value_eur"], [60.0, 60.0])
    np.testing.assert_allclose(new["value_gap_eur"], [45.0, 45.0])


def test_too_few_past_kilograms_give_no_reference() -> None:
    frame = build_features(declarations(*_past(4), *NEW), Contract(), PARAMS).frame
    new = frame.iloc[-2:]
    np.testing.assert_allclose(new["reference_count_hs6"], [4.0, 4.0])
    assert new[["value_per_kg_ratio_hs6", "reference_value_eur"]].isna().all().all()


def test_online_features_from_the_saved_state_equal_batch(tmp_path) -> None:
    history = declarations(*_past(), *NEW)
    built = build_features(history, Contract(), PARAMS)
    past = history[history["declared_at"] < T0]
    state = build_entity_state(past, Contract(), PARAMS, cutoff=T0, manifest=built.manifest)
    state.save(tmp_path / "state")
    loaded = EntityState.load(tmp_path / "state")
    assert loaded.parts["valuation"].fitted.hs6["count"].tolist() == [5.0]
    request = history[history["declared_at"] >= T0][list(DECLARATION_COLUMNS)]
    online = compute_online_features(request, loaded).set_index("declaration_id")[VALUATION]
    batch = built.frame.set_index("declaration_id").loc[online.index, VALUATION]
    np.testing.assert_allclose(online.to_numpy(float), batch.to_numpy(float), rtol=1e-12)
    assert online["value_per_kg_ratio_hs6"].notna().all()


def test_with_quantities_references_still_count_items() -> None:
    # two more past parcels declare no quantity: counted per item, they add no count
    past = [*_past(5, quantity=2), *({**row, "quantity": None} for row in _past(7)[5:])]
    frame = build_features(declarations(*past, *NEW), Contract(), PARAMS).frame
    assert (frame.iloc[-2:]["reference_count_hs6"] == 5).all()


def test_a_parcel_without_quantity_in_a_history_with_quantities_is_valued_by_weight() -> None:
    with_items = {"declared_at": T0, "quantity": 2, "declared_value": 15.0, "gross_weight_kg": 3.0}
    frame = build_features(
        declarations(*_past(5, quantity=2), NEW[0], with_items), Contract(), PARAMS
    ).frame
    without, counted = frame.iloc[-2], frame.iloc[-1]
    assert without["reference_value_eur"] == pytest.approx(60.0)  # 3 kg at EUR 20 per kg
    assert without["value_gap_eur"] == pytest.approx(45.0)
    # a parcel that declares its items is still valued per item: the past median is EUR 30
    # for 2 items (EUR 15 each), whatever the weight
    assert counted["reference_value_eur"] == pytest.approx(30.0)


def _generated(missing: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A generated history, and it with the quantity of a share ``missing`` of parcels lost."""
    full, _ = generate(SyntheticParams(seed=7, parcels=4000, days=35))
    lacking = np.random.default_rng(7).random(len(full)) < missing
    return full, full.assign(quantity=full["quantity"].mask(lacking))


def test_generated_export_without_quantities_covers_as_one_with_them():
    full, history = _generated(1.0)
    with_quantities = build_features(full, Contract(), FeatureParams()).frame
    without = build_features(history, Contract(), FeatureParams()).frame
    for name in ("value_per_kg_ratio_hs6", "value_per_kg_ratio_hs6_origin", "reference_value_eur"):
        assert without[name].notna().mean() == pytest.approx(
            with_quantities[name].notna().mean(), abs=0.01
        ), name
    assert (without["reference_count_hs6"] > 0).mean() > 0.5


def test_generated_parcels_without_quantity_among_others_get_reference_values():
    _, history = _generated(0.3)
    frame = build_features(history, Contract(), FeatureParams()).frame
    # every parcel compared per kg gets a reference value, with or without its own quantity
    compared = frame["value_per_kg_ratio_hs6_origin"].notna()
    assert frame.loc[compared & frame["value_per_item_eur"].isna()].shape[0] > 100
    assert frame.loc[compared, "reference_value_eur"].notna().all()


@pytest.mark.parametrize("missing", [1.0, 0.3], ids=["no_quantity", "some_rows_without"])
def test_generated_history_online_equals_batch(tmp_path, missing):
    _, history = _generated(missing)
    params = FeatureParams()
    built = build_features(history, Contract(), params)
    # parcels of the day after a cutoff, in its refit period: their references are the snapshot's
    cut = pd.Timestamp(history["declared_at"].quantile(0.7)).floor("D")
    day = history["declared_at"].between(cut, cut + pd.Timedelta(days=1), inclusive="left")
    state = build_entity_state(history, Contract(), params, cutoff=cut, manifest=built.manifest)
    state.save(tmp_path / "state")
    request = history.loc[day, list(DECLARATION_COLUMNS)]
    online = compute_online_features(request, EntityState.load(tmp_path / "state"))
    online = online.set_index("declaration_id")[VALUATION]
    batch = built.frame.set_index("declaration_id").loc[online.index, VALUATION]
    np.testing.assert_allclose(online.to_numpy(float), batch.to_numpy(float), rtol=1e-9)
    assert online["value_per_kg_ratio_hs6"].notna().mean() > 0.5
