"""A served snapshot lets go of the event arrays its indexes hold (release_snapshot_copies)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.contract import DECLARATION_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.live import LiveState
from features.pipeline.snapshot import build_entity_state
from features.synthetic import SyntheticParams, generate

PARAMS = FeatureParams()


def test_released_copies_leave_the_features_unchanged_and_refuse_a_save(tmp_path) -> None:
    history, _ = generate(SyntheticParams(seed=4, parcels=3_000, days=30))
    manifest = build_features(history, Contract(), PARAMS).manifest
    cut = history["declared_at"].quantile(0.8)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cut, manifest=manifest)
    new = history[history["declared_at"] >= cut][list(DECLARATION_COLUMNS)].head(300)
    new = new.reset_index(drop=True)
    before = LiveState(state).features(new, []).values
    live = LiveState(state)
    live.release_snapshot_copies()
    tables = state.parts["entity_history"].tables.values()
    assert all(len(t.decl_codes) == 0 and len(t.out_t_us) == 0 and t.released for t in tables)
    assert all(len(t.vocabulary) == 0 and t.n_keys > 0 for t in tables)  # found by hash
    after = live.features(new, []).values
    assert set(after) == set(before)
    for name, values in before.items():
        np.testing.assert_array_equal(np.asarray(after[name]), np.asarray(values), err_msg=name)
    with pytest.raises(ParcelriskError, match="loaded to serve"):
        state.save(tmp_path / "state")
    assert list(tmp_path.iterdir()) == []  # no state, no temporary directory left
    assert isinstance(cut, pd.Timestamp)
