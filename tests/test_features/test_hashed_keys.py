"""Recent-shipment and split-order keys held as 64-bit hashes (``hist.HashedKeys``): the same
codes contract as the dict they replace, and a snapshot saved with its keys as text still loads
and gives the same features."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.contract import OUTCOME_COLUMNS, Contract
from features.pipeline import history as hist
from features.pipeline.build import build_features
from features.pipeline.online import compute_online_features
from features.pipeline.prepare import entity_keys, entity_of, prepare
from features.pipeline.snapshot import META_FILE, EntityState, _fingerprint_dir, build_entity_state
from tests.test_features.family_frames import T0
from tests.test_features.test_family_orders import ORDER, PARAMS

H = pd.Timedelta(hours=1)
SNAPSHOT_KEYS = np.array(["S1|C1", "S2|C1", "S1|C2"], dtype=object)


def _keys(limit: int = 1 << 20) -> hist.HashedKeys:
    hashes, _ = hist.hash_codes(np.arange(3), SNAPSHOT_KEYS)
    return hist.HashedKeys(hashes, limit)


def test_snapshot_keys_new_keys_and_missing_keys_get_their_codes() -> None:
    keys = _keys()
    hashes = keys.hashes
    assert (np.diff(hashes.astype(np.float64)) > 0).all()  # sorted, distinct
    known = keys.codes(SNAPSHOT_KEYS)
    assert sorted(known.tolist()) == [0, 1, 2]  # a snapshot key's code: its hash's position
    asked = np.array(["S9|C9", None, "S1|C1", "S9|C9", "S8|C8"], dtype=object)
    codes = keys.codes(asked)
    assert codes.tolist() == [3, -1, known[0], 3, 4]  # equal new keys share a fresh code
    assert keys.codes(asked[:1]).tolist() == [3]  # not registered: the next request's own
    assert keys.add(np.array(["S8|C8"], dtype=object)).tolist() == [3]
    assert keys.codes(asked).tolist() == [4, -1, known[0], 4, 3]  # codes never change once given


def test_a_live_layer_that_outgrows_its_limit_is_refused_by_name() -> None:
    keys = _keys(limit=2)
    keys.add(np.array(["new-1"], dtype=object))
    with pytest.raises(ParcelriskError, match="live entity state full"):
        keys.codes(np.array(["new-2", "new-3"], dtype=object))


def test_two_keys_sharing_a_hash_share_a_code_and_nothing_fails(monkeypatch) -> None:
    monkeypatch.setattr(hist, "key_hashes", lambda keys: np.array([7, 7, 9], dtype=np.uint64))
    hashes, codes = hist.hash_codes(np.array([0, 1, 2, 0]), SNAPSHOT_KEYS)
    assert hashes.tolist() == [7, 9] and codes.tolist() == [0, 0, 1, 0]


def test_a_snapshot_saved_with_text_keys_loads_and_gives_the_same_features(tmp_path) -> None:
    """Champions trained before the hashes keep serving: their ``*_keys.parquet`` (keys as
    text, coded in any order) is hashed as it loads."""
    built = build_features(ORDER, Contract(), PARAMS)
    history = ORDER.iloc[:3]
    state = build_entity_state(
        history, Contract(), PARAMS, cutoff=T0 + 4 * H, manifest=built.manifest
    )
    directory = state.save(tmp_path / "s")
    prep = prepare(history, Contract(), PARAMS)
    for stem, spec in (
        ("orders_pair", "seller_id*consignee_id"),
        ("orders_line", "seller_id*consignee_id*hs6"),
        ("shipments", PARAMS.split_entity),
    ):
        text = entity_keys(prep, entity_of(spec))
        by_hash = dict(zip(hist.key_hashes(text).tolist(), text.tolist(), strict=True))
        saved = dict(np.load(directory / f"{stem}_events.npz"))
        keys = np.array([by_hash[h] for h in saved.pop("key_hashes").tolist()], dtype=object)
        order = np.arange(len(keys))[::-1]  # the old format coded keys in another order
        where = np.argsort(order)
        pd.DataFrame({"key": keys[order]}).to_parquet(directory / f"{stem}_keys.parquet")
        np.savez(directory / f"{stem}_events.npz", **{**saved, "codes": where[saved["codes"]]})
    meta = json.loads((directory / META_FILE).read_text())
    meta["fingerprint"] = _fingerprint_dir(directory)
    (directory / META_FILE).write_text(json.dumps(meta))
    loaded = EntityState.load(directory)
    assert loaded.parts["orders"].pair.hashes.tolist() == state.parts["orders"].pair.hashes.tolist()
    request = ORDER.iloc[3:].drop(columns=list(OUTCOME_COLUMNS))
    pd.testing.assert_frame_equal(
        compute_online_features(request, loaded), compute_online_features(request, state)
    )
    names = [n for n in built.manifest.names if n.startswith("order_")]
    assert compute_online_features(request, loaded)[names].to_numpy().any()  # not all zero


def test_a_requests_few_keys_hash_and_code_as_a_batchs_many() -> None:
    """The per-key path (a request) and the vectorised one (a batch, a snapshot build) must
    agree to the bit, or a worker would look up keys the snapshot never had."""
    from pandas.util import hash_array

    odd = ["S1|C1", None, "é中|x", float("nan"), "", "S2|C1", 7, "S1|C1"]
    many = np.array(odd * 5, dtype=object)  # more than FEW_KEYS: hash_array itself
    assert len(many) > hist.FEW_KEYS
    expected = hash_array(many, categorize=False)
    np.testing.assert_array_equal(hist.key_hashes(many), expected)
    for lo in range(0, len(many), 3):  # request-sized slices: the per-key path
        few = many[lo : lo + 3]
        np.testing.assert_array_equal(hist.key_hashes(few), expected[lo : lo + 3])
    vocabulary = np.array([k for k in odd if isinstance(k, str)][:4], dtype=object)
    hashes = hist.key_hashes(vocabulary)
    order = np.argsort(hashes)
    batch_side = hist.HashedKeys(hashes[order], 1 << 20, order).codes(many)
    one_by_one = np.concatenate(
        [
            hist.HashedKeys(hashes[order], 1 << 20, order).codes(many[lo : lo + 1])
            for lo in range(len(many))
        ]
    )
    # fresh codes are per call (4: the first after the vocabulary); the rest must agree
    np.testing.assert_array_equal(np.minimum(batch_side, 4), one_by_one)
    assert one_by_one.tolist()[:8] == [0, -1, 1, -1, 2, 3, 4, 0]
