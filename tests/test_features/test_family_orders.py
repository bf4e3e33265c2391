"""Split-order signatures: the same seller to the same consignee within hours, batch = online."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import DECLARATION_COLUMNS, OUTCOME_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.live import LiveState
from features.pipeline.online import compute_online_features
from features.pipeline.snapshot import build_entity_state
from tests.test_features.family_frames import T0, declarations

PARAMS = FeatureParams(order_windows_hours=(24, 72), de_minimis_eur=150.0)
H = pd.Timedelta(hours=1)

# One split order (S1 -> C1, same T-shirt line, three parcels under 150 EUR within a day) among
# the same consignee's and the same seller's other traffic.
ORDER = declarations(
    {"declared_at": T0, "declared_value": 60.0},
    {"declared_at": T0 + 2 * H, "seller_id": "S2", "declared_value": 500.0},  # other seller
    {"declared_at": T0 + 3 * H, "consignee_id": "C2", "declared_value": 40.0},  # other consignee
    {"declared_at": T0 + 5 * H, "hs_code": "640299", "declared_value": 50.0},  # other line
    {"declared_at": T0 + 30 * H, "declared_value": 45.0},
)


def _frame(history: pd.DataFrame, params: FeatureParams = PARAMS) -> pd.DataFrame:
    return build_features(history, Contract(), params).frame


def test_an_order_split_under_de_minimis_shows_its_signature():
    last = _frame(ORDER).iloc[-1]
    # 24 h back from T0+30h reaches T0+6h: only the earlier parcels of the 72 h window count
    assert (last["order_parcels_24h"], last["order_parcels_72h"]) == (0.0, 2.0)
    assert last["order_value_72h_eur"] == pytest.approx(110.0)
    assert last["order_same_hs6_72h"] == 1.0  # the shoe parcel is the pair's, not the line's
    assert last["order_value_with_own_eur"] == pytest.approx(155.0)
    assert last["order_tops_de_minimis"] == 1.0


def test_first_parcel_of_a_pair_and_other_pairs_have_no_signature():
    frame = _frame(ORDER)
    first, other_seller, other_consignee = frame.iloc[0], frame.iloc[1], frame.iloc[2]
    for row in (first, other_seller, other_consignee):
        assert row["order_parcels_72h"] == 0.0 and row["order_tops_de_minimis"] == 0.0
    assert other_seller["order_value_with_own_eur"] == 500.0


@pytest.mark.parametrize(
    ("earlier", "own", "tops"),
    [
        ((100.0, 49.5), 0.5, 1.0),  # together exactly 150: tops it
        ((100.0, 49.5), 0.25, 0.0),  # 149.75: still below
        ((100.0,), 150.0, 0.0),  # not below de minimis alone
        ((), 149.0, 0.0),  # nothing before
    ],
)
def test_tops_de_minimis_edges(earlier, own, tops):
    rows = [{"declared_at": T0 + i * H, "declared_value": v} for i, v in enumerate(earlier)]
    last = _frame(declarations(*rows, {"declared_at": T0 + 3 * H, "declared_value": own})).iloc[-1]
    assert last["order_tops_de_minimis"] == tops


def test_window_edge_is_inclusive_of_exactly_h_hours_before():
    history = declarations(
        {"declared_at": T0, "declared_value": 10.0},
        {"declared_at": T0 + pd.Timedelta(microseconds=1), "declared_value": 20.0},
        {"declared_at": T0 + 72 * H + pd.Timedelta(microseconds=1), "declared_value": 5.0},
    )
    last = _frame(history).iloc[-1]
    assert last["order_parcels_72h"] == 1.0 and last["order_value_72h_eur"] == 20.0


def test_a_missing_id_is_no_pair_and_counts_for_no_pair():
    history = declarations(
        {"declared_at": T0, "declared_value": 60.0},
        {"declared_at": T0 + H, "seller_id": None, "declared_value": 60.0},
        {"declared_at": T0 + 2 * H, "consignee_id": None, "declared_value": 60.0},
        {"declared_at": T0 + 3 * H, "declared_value": 60.0},
    )
    frame = _frame(history)
    for unknown in (frame.iloc[1], frame.iloc[2]):
        assert pd.isna(unknown["order_parcels_72h"]) and pd.isna(unknown["order_tops_de_minimis"])
    last = frame.iloc[3]
    assert (last["order_parcels_72h"], last["order_value_72h_eur"]) == (1.0, 60.0)


def test_a_parcel_without_an_hs_code_has_no_line_in_batch_online_and_live():
    """Probe 25: the "same HS6" counts of parcels without an HS code (optional in the contract)
    counted a pooled "no code" line, more than the pair's parcels, and pandas, Dask and the
    live service each gave another value. Unknown (NaN) everywhere; the pair's counts hold."""
    history = declarations(
        {"declared_at": T0, "declared_value": 60.0, "hs_code": None},
        {"declared_at": T0 + H, "seller_id": "S9", "consignee_id": "C9", "hs_code": None},
        {"declared_at": T0 + 2 * H, "declared_value": 60.0},
        {"declared_at": T0 + 3 * H, "declared_value": 60.0, "hs_code": None},
        {"declared_at": T0 + 4 * H, "declared_value": 60.0},
    )
    built = build_features(history, Contract(), PARAMS)
    frame = built.frame.set_index("declaration_id")
    no_code = frame.loc[["D000", "D001", "D003"]]
    assert no_code["order_same_hs6_24h"].isna().all() and no_code["order_same_hs6_72h"].isna().all()
    assert frame.loc["D003", "order_parcels_24h"] == 2.0  # the pair's parcels, codes or not
    assert frame.loc["D004", "order_same_hs6_24h"] == 1.0  # D002 only: no pooled "no code"
    names = [n for n in built.manifest.names if n.startswith("order_")]
    state = build_entity_state(
        history.iloc[:2], Contract(), PARAMS, cutoff=T0 + 2 * H, manifest=built.manifest
    )
    live = LiveState(state)
    live.append(history.iloc[2:3][list(DECLARATION_COLUMNS)])
    got = live.features(history.iloc[3:][list(DECLARATION_COLUMNS)]).frame()
    got = got.set_index("declaration_id")[names]
    pd.testing.assert_frame_equal(got, frame.loc[got.index, names])


def test_no_windows_or_no_seller_column_means_no_order_features():
    names = build_features(ORDER, Contract(), PARAMS.replace(order_windows_hours=())).manifest.names
    assert not any(n.startswith("order_") for n in names)
    blank = ORDER.assign(seller_id=None)
    assert not any(n.startswith("order_") for n in _frame(blank).columns)


def test_windows_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        FeatureParams(order_windows_hours=(24, 0))


def test_online_from_the_snapshot_and_the_live_layer_equals_batch():
    """The last two parcels scored online, from a snapshot cut after the first three, alone, in
    one request, and after the live layer has seen the fourth: the batch values each time."""
    built = build_features(ORDER, Contract(), PARAMS)
    batch = built.frame.set_index("declaration_id")
    names = [n for n in built.manifest.names if n.startswith("order_")]
    cutoff = T0 + 4 * H
    state = build_entity_state(
        ORDER.iloc[:3], Contract(), PARAMS, cutoff=cutoff, manifest=built.manifest
    )
    request = ORDER.iloc[3:].drop(columns=list(OUTCOME_COLUMNS))
    together = compute_online_features(request, state).set_index("declaration_id")
    pd.testing.assert_frame_equal(together[names], batch.loc[together.index, names])

    live = LiveState(state)
    live.append(ORDER.iloc[3:4][list(DECLARATION_COLUMNS)])
    alone = live.features(ORDER.iloc[4:][list(DECLARATION_COLUMNS)]).frame()
    got = alone.set_index("declaration_id")[names]
    pd.testing.assert_frame_equal(got, batch.loc[got.index, names])
    assert np.isfinite(got.to_numpy()).all()


def test_a_snapshot_written_before_order_signatures_existed_still_loads(tmp_path):
    """A champion's entity state recorded without ``order_windows_hours`` (older versions) is
    read as having none, so it keeps serving after an upgrade, with its own features."""
    import json

    from features.pipeline.snapshot import META_FILE, EntityState

    params = PARAMS.replace(order_windows_hours=())
    built = build_features(ORDER, Contract(), params)
    state = build_entity_state(
        ORDER.iloc[:3], Contract(), params, cutoff=T0 + 4 * H, manifest=built.manifest
    )
    state.save(tmp_path / "s")
    meta_path = tmp_path / "s" / META_FILE
    meta = json.loads(meta_path.read_text())
    del meta["params"]["order_windows_hours"]
    meta_path.write_text(json.dumps(meta))
    loaded = EntityState.load(tmp_path / "s")
    assert "orders" not in [f.name for f in loaded.families]
    request = ORDER.iloc[3:].drop(columns=list(OUTCOME_COLUMNS))
    pd.testing.assert_frame_equal(
        compute_online_features(request, loaded), compute_online_features(request, state)
    )


def test_every_signature_has_a_reason_a_clearance_officer_can_read():
    manifest = build_features(ORDER, Contract(), PARAMS).manifest
    reasons = {
        n: manifest.spec(n).reason.format(value=1.0)
        for n in manifest.names
        if n.startswith("order_")
    }
    assert len(reasons) == 8 and all("{" not in r for r in reasons.values())
    assert reasons["order_same_hs6_72h"] == (
        "1 earlier parcel(s) of the same goods from this seller to this consignee in the last 72 "
        "hours"
    )
    assert reasons["order_value_with_own_eur"].endswith("the order is worth EUR 1")
