"""The batch kernel (rows sorted once per entity) against the general event index, and the
pair codes built from their parts' codes against the string keys they replace."""

from __future__ import annotations

import numpy as np
import pytest

from features.pipeline.history import (
    NO_TIME,
    BatchIndex,
    EventIndex,
    RowQueries,
    TimeGrid,
    merge_indexes,
)
from features.pipeline.prepare import Prepared, entity_codes, entity_keys, entity_of


def _history(seed: int, n: int = 3_000, n_codes: int = 40):
    """Rows in time order with many ties (same instant, same code) and a weight."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 500, n)) * 1_000  # ~6 rows per instant
    codes = rng.integers(0, n_codes, n)
    value = rng.integers(-5, 10_000, n)
    return codes, t, value


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shift", [0, 1, 999, 1_000, 7_000, 10**9])
@pytest.mark.parametrize("n_codes", [40, 200_000])  # 16-bit codes sort by radix, wider not
def test_batch_index_over_the_rows_equals_the_event_index(seed, shift, n_codes):
    codes, t, value = _history(seed, n_codes=n_codes)
    rows = RowQueries(codes)
    batch = BatchIndex(
        rows, TimeGrid(t, t), rows.codes, t, {"value_cents": value}, order=rows.order
    )
    general = EventIndex(codes, t, {"value_cents": value})
    got, expected = batch.prefix(rows.codes, t, shift), general.prefix(codes, t - shift)
    assert set(got) == {"count", "value_cents"}
    for name in got:
        np.testing.assert_array_equal(got[name], expected[name])
    np.testing.assert_array_equal(
        batch.first_time_before(rows.codes, t), general.first_time_before(codes, t)
    )


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("shift", [0, 500, 90_000])
def test_batch_index_over_other_events_equals_the_event_index(seed, shift):
    """Results recorded at their own times (some at a declaration's instant, some never before
    any declaration), queried by the rows."""
    codes, t, _ = _history(seed)
    rng = np.random.default_rng(seed + 100)
    which = rng.choice(len(t), 400, replace=False)
    out_t = t[which] + rng.choice([0, 0, 1, 3_000, 50_000], len(which))
    illicit = rng.integers(0, 2, len(which))
    rows = RowQueries(codes)
    batch = BatchIndex(rows, TimeGrid(out_t, t), codes[which], out_t, {"illicit": illicit})
    general = EventIndex(codes[which], out_t, {"illicit": illicit})
    got, expected = batch.prefix(rows.codes, t, shift), general.prefix(codes, t - shift)
    for name in ("count", "illicit"):
        np.testing.assert_array_equal(got[name], expected[name])


def test_batch_ties_at_one_instant_do_not_see_each_other():
    codes, t = np.array([0, 1, 0, 0, 1]), np.array([10, 10, 10, 20, 30])
    rows = RowQueries(codes)
    index = BatchIndex(rows, TimeGrid(t, t), rows.codes, t, order=rows.order)
    assert index.prefix(rows.codes, t)["count"].tolist() == [0, 0, 0, 2, 1]
    assert index.prefix(rows.codes, t, shift_us=10)["count"].tolist() == [0, 0, 0, 0, 1]
    first = index.first_time_before(rows.codes, t).tolist()
    assert first == [NO_TIME, NO_TIME, NO_TIME, 10, 10]


def test_a_batch_index_refuses_queries_of_other_rows():
    codes, t = np.array([0, 1]), np.array([1, 2])
    rows = RowQueries(codes)
    index = BatchIndex(rows, TimeGrid(t, t), rows.codes, t, order=rows.order)
    with pytest.raises(ValueError, match="only the rows it was built for"):
        index.prefix(codes.copy(), t)
    with pytest.raises(ValueError, match="only the rows it was built for"):
        index.first_time_before(rows.codes, t.copy())


def test_empty_events_give_zero_counts_and_no_first_time():
    codes, t = np.array([0, 1, 0]), np.array([1, 2, 3])
    rows = RowQueries(codes)
    empty = np.zeros(0, dtype=np.int64)
    index = BatchIndex(rows, TimeGrid(empty, t), empty, empty, {"illicit": empty})
    got = index.prefix(rows.codes, t)
    assert got["count"].tolist() == [0, 0, 0] and got["illicit"].tolist() == [0, 0, 0]
    assert index.first_time_before(rows.codes, t).tolist() == [NO_TIME] * 3


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sizes", [(3_000, 700), (5, 2_000), (1, 1), (0, 40), (40, 0)])
def test_merged_indexes_equal_one_index_built_from_their_events(seed, sizes):
    """The live runs' merge (no sort of the events) gives the very arrays an index built from
    the older events followed by the newer ones gives: ties at one code and instant, in
    either part or across both, keep that order; distinct times only one side has re-rank."""
    codes, t, value = _history(seed, n=sum(sizes), n_codes=30)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(codes))  # events arrive in any order
    codes, t, value = codes[shuffled], t[shuffled], value[shuffled]
    cut = sizes[0]

    def index(part: slice) -> EventIndex:
        return EventIndex(
            codes[part], t[part], {"value": value[part], "one": np.ones_like(t[part])}
        )

    merged = merge_indexes(index(slice(None, cut)), index(slice(cut, None)))
    whole = index(slice(None))
    assert np.array_equal(merged.keys, whole.keys)
    assert np.array_equal(merged.unique_times, whole.unique_times)
    assert merged.stride == whole.stride
    assert all(np.array_equal(merged.cumsums[k], whole.cumsums[k]) for k in whole.cumsums)
    q_codes, q_t = rng.integers(0, 31, 300), rng.integers(0, 600, 300) * 1_000
    got, want = merged.prefix(q_codes, q_t, 7_000), whole.prefix(q_codes, q_t, 7_000)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_indexes_of_other_weights_are_not_merged():
    one = np.array([1])
    with pytest.raises(ValueError, match="weights differ"):
        merge_indexes(EventIndex(one, one, {"value": one}), EventIndex(one, one, {"other": one}))


def test_pair_codes_from_part_codes_equal_the_string_keys():
    """History codes a pair from its parts' integer codes: same codes, same keys, same order of
    first appearance, None where any part is missing, as factorizing the "a|b" strings."""
    from features.pipeline.family import History

    rng = np.random.default_rng(7)
    n = 2_000
    seller = np.array([None if v == 0 else f"S{v}" for v in rng.integers(0, 30, n)], dtype=object)
    chapter = np.array(
        [None if v == 0 else f"{v:02d}" for v in rng.integers(0, 9, n)], dtype=object
    )
    consignee = np.array([f"C{v}" for v in rng.integers(0, 300, n)], dtype=object)
    prep = Prepared(n, {"seller_id": seller, "hs_chapter": chapter, "consignee_id": consignee})
    prep["t_us"] = np.arange(n, dtype=np.int64)
    history = History(prep, None, None, None)  # only the key columns are read
    # the pair first: the line after it reuses the pair's keys
    specs = ("seller_id*hs_chapter", "seller_id*consignee_id", "seller_id*consignee_id*hs_chapter")
    for spec in (*specs, "consignee_id"):
        entity = entity_of(spec)
        codes, vocabulary = history.entity(entity)
        expected_codes, expected_vocabulary = entity_codes(entity_keys(prep, entity))
        np.testing.assert_array_equal(codes, expected_codes)
        assert vocabulary.tolist() == expected_vocabulary.tolist()
        assert (codes == -1).sum() == (entity_keys(prep, entity) == None).sum()  # noqa: E711


@pytest.mark.parametrize("since", [-1, 0, 700, 1_999, 5_000])
@pytest.mark.parametrize("spec", ["consignee_id", "seller_id*consignee_id"])
def test_recent_rows_are_coded_among_themselves(since, spec):
    """The snapshot's recent rows: codes in order of first appearance among them, and their
    keys, as factorising the keys of those rows would give."""
    from features.pipeline.family import History

    rng = np.random.default_rng(8)
    n = 2_000
    seller = np.array([None if v == 0 else f"S{v}" for v in rng.integers(0, 30, n)], dtype=object)
    consignee = np.array([f"C{v}" for v in rng.integers(0, 300, n)], dtype=object)
    t = np.arange(n, dtype=np.int64)
    prep = Prepared(n, {"seller_id": seller, "consignee_id": consignee, "t_us": t})
    entity = entity_of(spec)
    rows, codes, keys = History(prep, None, None, None).recent(entity, since)
    all_keys = entity_keys(prep, entity)
    expected_rows = np.flatnonzero((t >= since) & (all_keys != None))  # noqa: E711
    expected_codes, expected_keys = entity_codes(all_keys[expected_rows])
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(codes, expected_codes)
    assert list(keys) == list(expected_keys)


def test_codes_are_shared_only_between_histories_of_the_same_rows():
    from features.pipeline.family import History

    seller = np.array(["S1", "S2", "S1"], dtype=object)
    prep = Prepared(3, {"seller_id": seller, "t_us": np.arange(3)})
    build = History(prep, None, None, None)
    codes, _ = build.column_codes("seller_id")
    state = History(prep, None, None, None)
    state.share_codes(build)
    assert state.column_codes("seller_id")[0] is codes  # not factorised again
    other = History(Prepared(3, {"seller_id": seller.copy()}), None, None, None)
    with pytest.raises(ValueError, match="same rows"):
        other.share_codes(build)


def test_prepare_hands_over_the_codes_the_history_would_make():
    from features.intake.contract import Contract
    from features.params import FeatureParams
    from features.pipeline.prepare import prepare
    from features.synthetic import SyntheticParams, generate

    declarations, _ = generate(SyntheticParams(seed=5, parcels=3_000, days=20))
    declarations["seller_id"] = declarations["seller_id"].where(
        declarations.index % 7 != 3, None
    )  # unknown sellers: code -1
    prep = prepare(declarations, Contract(), FeatureParams())
    assert {"seller_id", "consignee_id", "hs6", "hs_chapter", "hs6_origin"} <= set(prep.codes)
    assert "description" not in prep.codes  # no family codes it as a key
    for name, (codes, values) in prep.codes.items():
        expected_codes, expected_values = entity_codes(prep[name])
        np.testing.assert_array_equal(codes, expected_codes, err_msg=name)
        assert codes.dtype == np.int64 and list(values) == list(expected_values), name
    assert (prep.codes["seller_id"][0] == -1).any()
    assert prep.slice(10, 20).codes == {}  # a slice's first appearances are its own
