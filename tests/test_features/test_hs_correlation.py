"""A nomenclature change (HS 2027): new codes read as the ones the history knows.

``features.hs_correlation`` names a ``code,reads_as`` table; every feature then reads a new
code as its predecessor, batch and online alike, and the stored declaration keeps the code
sent. Without it (probe 32) a new code had no history, no reference price, no watchlist
match, and its description "rarely went with" it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.contract import DECLARATION_COLUMNS, Contract
from features.params import FeatureParams, load_settings, read_hs_correlation
from features.pipeline.build import build_features
from features.pipeline.online import compute_online_features
from features.pipeline.snapshot import EntityState, build_entity_state
from tests.test_features.family_frames import T0, declarations

TABLE = "code,reads_as\n640395,640399\n851632,851631\n851633,851631\n"


def _history(last_code: str) -> pd.DataFrame:
    """A week of shoes (640399) and kettles (851631), then one parcel under ``last_code``."""
    past = [
        {
            "declared_at": T0 - pd.Timedelta(days=6, hours=i),
            "hs_code": "640399" if i % 2 else "8516310000",
            "description": "leather shoes" if i % 2 else "electric kettle",
            "declared_value": 20.0 + i,
            "seller_id": f"S{i % 3}",
        }
        for i in range(12)
    ]
    now = {"declared_at": T0, "hs_code": last_code, "description": "leather shoes",
           "declared_value": 25.0, "seller_id": "S1"}  # fmt: skip
    return declarations(*past, now)


def _params(tmp_path, table: str = TABLE) -> FeatureParams:
    path = tmp_path / "hs2027.csv"
    path.write_text(table)
    return FeatureParams(min_reference_count=3, refit_period_days=7, hs_correlation=str(path))


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.select_dtypes("number")


def test_a_new_code_gets_its_predecessor_s_features_batch_and_online(tmp_path) -> None:
    params = _params(tmp_path)
    assert params.hs_reads_as == {"640395": "640399", "851632": "851631", "851633": "851631"}
    as_before = build_features(_history("640399"), Contract(), FeatureParams(
        min_reference_count=3, refit_period_days=7)).frame  # fmt: skip
    renamed = build_features(_history("640395"), Contract(), params)
    pd.testing.assert_frame_equal(_features(renamed.frame), _features(as_before))
    assert renamed.frame["reference_count_hs6"].iloc[-1] == 6  # the shoes' history
    assert renamed.frame["hs_code"].iloc[-1] == "640395"  # the declaration keeps the code sent
    # without the table the same parcel is a code never seen
    alone = build_features(_history("640395"), Contract(), params.replace(
        hs_correlation=None, hs_reads_as={})).frame  # fmt: skip
    assert alone["reference_count_hs6"].iloc[-1] == 0
    # online, through the snapshot, which carries the table (no file needed by the service)
    history = _history("640395")
    state = build_entity_state(
        history.iloc[:12], Contract(), params, cutoff=T0, manifest=renamed.manifest
    )
    state.save(tmp_path / "state")
    (tmp_path / "hs2027.csv").unlink()
    online = compute_online_features(
        history.iloc[12:][list(DECLARATION_COLUMNS)], EntityState.load(tmp_path / "state")
    )
    for name in ("reference_count_hs6", "unit_value_ratio_hs6", "hs6_n_30d"):
        if name in online:
            assert online[name].iloc[0] == pytest.approx(as_before[name].iloc[-1], nan_ok=True)


def test_a_ten_digit_national_code_keeps_its_last_digits(tmp_path) -> None:
    from features.pipeline.prepare import prepare

    params = _params(tmp_path)
    history = _history("8516320010")
    prep = prepare(history, Contract(), params)
    assert prep["hs_code"][-1] == "8516310010" and prep["hs6"][-1] == "851631"
    assert prep["hs_code"][0] == "8516310000"  # a code of the old edition is as it was


def test_a_code_never_declared_gets_no_description_support(tmp_path) -> None:
    """No past use to be rare in: unknown, where it read 0 ("0% of past uses")."""
    params = FeatureParams(min_reference_count=3, refit_period_days=7)
    frame = build_features(_history("640395"), Contract(), params).frame
    known = build_features(_history("640399"), Contract(), params).frame
    assert np.isnan(frame["text_hs6_support_mean"].iloc[-1])
    assert np.isnan(frame["text_hs6_support_min"].iloc[-1])
    assert known["text_hs6_support_mean"].iloc[-1] > 0


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("new,old\n640395,640399\n", "the first line must be 'code,reads_as'"),
        ("code,reads_as\n64039,640399\n", "line 2: '64039','640399': two 6-digit HS"),
        ("code,reads_as\n640395,640399\n640395,640391\n", "640395 reads as 640399 and 640391"),
        ("code,reads_as\n640395,640399\n640399,640391\n", "itself replaced by 640391"),
        ("code,reads_as\n", "no row reads a code as another one"),
        ("code,reads_as\n640399,640399\n", "no row reads a code as another one"),
    ],
)
def test_a_bad_table_is_refused_naming_the_line(tmp_path, table: str, problem: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(table)
    with pytest.raises(ValueError, match=problem):
        read_hs_correlation(path)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"features:\n  hs_correlation: {path}\n")
    with pytest.raises(ParcelriskError, match="hs_correlation"):
        load_settings(params_file)


def test_a_table_named_but_missing_is_refused_when_features_are_built(tmp_path) -> None:
    params = FeatureParams(hs_correlation=str(tmp_path / "nowhere.csv"))
    with pytest.raises(ParcelriskError, match=r"nowhere\.csv: file not found"):
        build_features(_history("640395"), Contract(), params)
