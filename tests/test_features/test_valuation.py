def test_reference_lookups_by_key_and_missing_keys() -> None:
    import numpy as np
    import pandas as pd

    from features.families.valuation import References

    refs = References(
        hs6=pd.DataFrame(
            {"log_value_per_item": [1.0, 2.0], "count": [5.0, 7.0]},
            index=pd.Index(["610910", "640399"], dtype="str"),
        ),
        hs6_origin=References.empty().hs6_origin,
    )
    at = refs.positions("hs6", np.array(["640399", "999999", "610910"], dtype=object))
    assert at.tolist() == [1, -1, 0]
    values = refs.values("hs6", "count", at)
    assert values[0] == 7.0 and np.isnan(values[1]) and values[2] == 5.0
    empty = refs.positions("hs6_origin", np.array(["610910|CN"], dtype=object))
    assert empty.tolist() == [-1]
    assert np.isnan(refs.values("hs6_origin", "count", empty)).all()


def test_without_quantities_the_reference_value_counts_kilograms() -> None:
    """An export without quantities: the goods are valued at the usual price per kg."""
    import numpy as np

    from features.families.valuation import fit_references, valuation_features
    from features.pipeline.prepare import unit_values

    # past declarations of HS 610910 from CN at EUR 20/kg; quantity unknown (NaN)
    past_value = np.array([20.0, 40.0, 10.0, 60.0, 30.0])
    past_weight = past_value / 20.0
    logs = unit_values(past_value, np.full(5, np.nan), past_weight)
    hs6 = np.array(["610910"] * 5, dtype=object)
    pair = np.array(["610910|CN"] * 5, dtype=object)
    refs = fit_references(hs6, pair, logs)
    # a 3 kg parcel declared at EUR 15: worth EUR 60 at the usual price, EUR 45 undervalued
    value, weight = np.array([15.0]), np.array([3.0])
    now = unit_values(value, np.array([np.nan]), weight)
    out = valuation_features(
        value, now, hs6[:1], pair[:1], refs, de_minimis=150.0, min_reference_count=5,
        per_item=False,
    )  # fmt: skip
    np.testing.assert_allclose(out["reference_value_eur"], [60.0])
    np.testing.assert_allclose(out["value_gap_eur"], [45.0])
    np.testing.assert_allclose(out["value_per_kg_ratio_hs6_origin"], [0.25])
    assert np.isnan(out["unit_value_ratio_hs6"]).all()  # no items, no per-item ratio


def test_references_are_the_grouped_medians_and_counts_missing_keys_left_out() -> None:
    import numpy as np
    import pandas as pd

    from features.families.valuation import REFERENCE_COLUMNS, fit_references

    rng = np.random.default_rng(3)
    n = 500
    hs6 = rng.choice(np.array(["640399", "610910", "950300", None], dtype=object), n)
    pair = np.array(
        [f"{h}|{o}" for h, o in zip(hs6, rng.choice(["CN", "TR"], n), strict=True)], dtype=object
    )
    logs = {k: rng.normal(size=n) for k in REFERENCE_COLUMNS}
    logs["log_value_per_item"][::7] = np.nan  # unknown currency: skipped, not counted
    refs = fit_references(hs6, pair, logs)
    frame = pd.DataFrame(logs)
    expected = frame.groupby(hs6, sort=True).median()
    expected["count"] = frame.groupby(hs6)["log_value_per_item"].count().astype(np.float64)
    pd.testing.assert_frame_equal(refs.hs6, expected, check_exact=True)
    assert list(refs.hs6.index) == ["610910", "640399", "950300"]
    assert len(refs.hs6_origin) == len(set(pair))  # "None|CN" is a key of its own


def test_sorted_codes_of_the_history_codes_are_key_codes() -> None:
    import numpy as np

    from features.families.valuation import key_codes, sorted_codes
    from features.pipeline.prepare import entity_codes

    keys = np.array(["640399", None, "610910", "640399", "950300", None, "610910"], dtype=object)
    codes, levels = sorted_codes(*entity_codes(keys))
    expected_codes, expected_levels = key_codes(keys)
    np.testing.assert_array_equal(codes, expected_codes)
    assert list(levels) == list(expected_levels) == ["610910", "640399", "950300"]
