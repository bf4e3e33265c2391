"""Shipments family: parcels and value of the split entity before this parcel, de minimis edges."""

from __future__ import annotations

import pandas as pd
import pytest

from features.intake.contract import OUTCOME_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.online import compute_online_features
from features.pipeline.snapshot import build_entity_state
from tests.test_features.family_frames import T0, declarations

PARAMS = FeatureParams(split_windows_hours=(24,), de_minimis_eur=150.0)


def _last(history: pd.DataFrame, params: FeatureParams = PARAMS) -> pd.Series:
    return build_features(history, Contract(), params).frame.iloc[-1]


@pytest.mark.parametrize(
    ("partners", "own", "tops"),
    [
        ((100.0, 49.5), 0.25, 0.0),  # together 149.75: still below
        ((100.0, 49.5), 0.5, 1.0),  # together exactly 150: tops it
        ((100.0, 49.5), 10.0, 1.0),  # together above
        ((100.0,), 150.0, 0.0),  # not below de minimis alone
        ((100.0,), 149.5, 1.0),  # just below alone, above together
        ((), 149.5, 0.0),  # no partners
    ],
)
def test_split_tops_de_minimis(partners, own, tops):
    rows = [
        {"declared_at": T0 + pd.Timedelta(hours=i), "declared_value": v}
        for i, v in enumerate(partners)
    ]
    last = _last(
        declarations(*rows, {"declared_at": T0 + pd.Timedelta(hours=3), "declared_value": own})
    )
    assert last["consignee_parcels_24h"] == len(partners)
    assert last["consignee_value_24h_eur"] == pytest.approx(sum(partners))
    assert last["split_tops_de_minimis"] == tops


def test_split_window_edge_and_other_consignees():
    day = pd.Timedelta(days=1)
    history = declarations(
        {"declared_at": T0, "declared_value": 100.0},  # exactly 24 h before the last: counted
        {"declared_at": T0 + pd.Timedelta(microseconds=1) - day, "declared_value": 7.0},
        {"declared_at": T0 + pd.Timedelta(hours=1), "consignee_id": "C2", "declared_value": 60.0},
        {"declared_at": T0 + day, "declared_value": 60.0},
    )
    last = _last(history)
    assert last["consignee_parcels_24h"] == 1  # not the one 24 h + 1 us before, nor C2's
    assert last["consignee_value_24h_eur"] == 100.0
    assert last["split_tops_de_minimis"] == 1.0


def test_missing_key_is_no_one_and_counts_for_no_one():
    history = declarations(
        {"declared_at": T0, "declared_value": 100.0},
        {"declared_at": T0 + pd.Timedelta(hours=1), "consignee_id": None, "declared_value": 60.0},
        {"declared_at": T0 + pd.Timedelta(hours=2), "declared_value": 10.0},
    )
    frame = build_features(history, Contract(), PARAMS).frame
    unknown, last = frame.iloc[1], frame.iloc[2]
    assert pd.isna(unknown["consignee_parcels_24h"]) and pd.isna(unknown["split_tops_de_minimis"])
    assert (last["consignee_parcels_24h"], last["consignee_value_24h_eur"]) == (1.0, 100.0)


def test_any_entity_can_be_the_split_entity_with_names_and_reasons_following_it():
    params = PARAMS.replace(split_entity="seller_id")
    history = declarations(
        {"declared_at": T0, "consignee_id": "C1", "declared_value": 100.0},
        {"declared_at": T0 + pd.Timedelta(hours=1), "consignee_id": "C2", "declared_value": 60.0},
    )
    built = build_features(history, Contract(), params)
    names = built.manifest.names
    assert "seller_parcels_24h" in names and not any(
        n.startswith("consignee_parcels") for n in names
    )
    assert built.manifest.spec("seller_value_24h_eur").reason.startswith("seller {seller_id}")
    last = built.frame.iloc[-1]
    assert (last["seller_parcels_24h"], last["split_tops_de_minimis"]) == (1.0, 1.0)
    # online, from the snapshot: the same
    cutoff = T0 + pd.Timedelta(minutes=30)
    state = build_entity_state(
        history.iloc[:1], Contract(), params, cutoff=cutoff, manifest=built.manifest
    )
    online = compute_online_features(
        history.iloc[1:].drop(columns=list(OUTCOME_COLUMNS)),
        state,
    )
    assert (online.iloc[0]["seller_parcels_24h"], online.iloc[0]["split_tops_de_minimis"]) == (
        1.0,
        1.0,
    )
