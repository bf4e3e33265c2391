def test_reference_lookups_by_key_and_missing_keys() -> None:
    import numpy as np
    import pandas as pd

    from features.valuation import References

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
