"""The live entity state: declarations scored after the snapshot enter it, in any order.

Parity: a snapshot cut from generated history, the next days scored through the live path in
chunks; batch features over history + those days must give each declaration the same features.
Entity-history and split-shipment features follow every appended declaration. The replayed days
lie inside the cutoff's refit period, where batch uses the snapshot's fit of the families it
refits per period (valuation references, text models), so every feature of the manifest is
compared; their refits in later periods are tested in ``test_live_refit``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.contract import DECLARATION_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline import history as hist
from features.pipeline.build import build_features
from features.pipeline.history import US_PER_DAY
from features.pipeline.live import LiveState
from features.pipeline.online import online_features
from features.pipeline.prepare import as_known_at, period_of, period_start_us
from features.pipeline.snapshot import build_entity_state
from features.synthetic import SyntheticParams, generate
from tests.test_features.test_build import _batch_features_with

PARAMS = FeatureParams()
COUNTS = ("_n_7d", "_n_30d", "_n_180d", "_n_inspected", "_n_illicit", "_illicit_30d")


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    declarations, _ = generate(SyntheticParams(seed=11, parcels=12_000, days=50))
    return declarations


@pytest.fixture(scope="module")
def world(history: pd.DataFrame):
    """(snapshot at a cutoff, the next ~3 days of declarations, their batch features)."""
    manifest = build_features(history, Contract(), PARAMS).manifest
    categories = {s.name: s.categories for s in manifest.features if s.dtype == "category"}
    t = history["declared_at"]
    period = period_of(np.array([t.max().value // 1000]), PARAMS.refit_period_days)[0]
    period_start = period_start_us(int(period), PARAMS.refit_period_days)
    # a cutoff a day into the last refit period, 3 days replayed: one refit period throughout
    cut = pd.Timestamp((period_start + US_PER_DAY) * 1000, tz="UTC")
    new = history[(t >= cut) & (t < cut + pd.Timedelta(days=3))]
    assert len(new) > 500
    batch = _batch_features_with(as_known_at(history, cut), new, Contract(), categories)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cut, manifest=manifest)
    new = new[list(DECLARATION_COLUMNS)].reset_index(drop=True)
    return state, new, batch.set_index("declaration_id")


def _assert_parity(online: pd.DataFrame, batch: pd.DataFrame, names: list[str]) -> None:
    b = batch.loc[online["declaration_id"], names]
    o = online.set_index("declaration_id")[names]
    for name in names:
        x, y = b[name].to_numpy(float), o[name].to_numpy(float)
        if name.endswith(COUNTS) or "_parcels_" in name:
            assert np.array_equal(x, y, equal_nan=True), name  # counts exact (NaN: unknown key)
        else:
            ok = np.isclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True)
            assert ok.all(), f"{name}: {(~ok).sum()} rows differ, e.g. {x[~ok][:3]} vs {y[~ok][:3]}"


def _score_in_chunks(live: LiveState, declarations: pd.DataFrame, sizes: list[int]):
    """Features of each chunk from the live state, then the chunk appended (as scoring does)."""
    frames, start = [], 0
    for size in sizes:
        chunk = declarations.iloc[start : start + size].reset_index(drop=True)
        frames.append(live.features(chunk).frame())
        live.append(chunk)
        start += size
    assert start == len(declarations)
    return pd.concat(frames, ignore_index=True)


def _chunk_sizes(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(min(rng.integers(1, 300), n - sum(sizes))))
    return sizes


def test_time_ordered_chunks_match_batch(world):
    state, new, batch = world
    live = LiveState(state)
    ordered = new.sort_values(["declared_at", "declaration_id"], kind="stable")
    online = _score_in_chunks(live, ordered, _chunk_sizes(len(new), 1))
    _assert_parity(online, batch, state.manifest.names)
    assert len(live) == len(new)


def test_the_snapshot_alone_goes_stale_where_the_live_state_does_not(world):
    state, new, batch = world
    late = new.sort_values("declared_at").tail(200)
    frozen = online_features(late, state).frame().set_index("declaration_id")
    names = [n for n in state.manifest.names if n.endswith("_parcels_72h")]
    assert names
    # this test could pass with a live layer doing nothing only if the snapshot were up to date
    assert not np.array_equal(
        frozen[names].to_numpy(float), batch.loc[frozen.index, names].to_numpy(float)
    )


def test_shuffled_arrival_gives_the_batch_state(world):
    """Declarations arriving out of time order: once all are in, each one's features (a
    re-score: it is not counted twice) are the batch ones."""
    state, new, batch = world
    live = LiveState(state)
    shuffled = new.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for start in range(0, len(shuffled), 97):
        live.append(shuffled.iloc[start : start + 97])
    again = live.features(shuffled).frame()
    _assert_parity(again, batch, state.manifest.names)


def test_a_shuffled_chunk_sees_only_what_was_appended_before_it(world):
    """Out-of-order arrival: a declaration sees earlier-declared ones that arrived before it
    (and its own chunk), never one still to come."""
    state, new, _ = world
    ordered = new.sort_values(["declared_at", "declaration_id"], kind="stable")
    live = LiveState(state)
    late_half = ordered.iloc[len(ordered) // 2 :]
    live.append(late_half)
    first = ordered.iloc[: len(ordered) // 2]
    with_late = live.features(first).frame().set_index("declaration_id")
    without = online_features(first, state).frame().set_index("declaration_id")
    names = [n for n in state.manifest.names if "_parcels_" in n or n.endswith("_n_7d")]
    # everything appended is declared later than `first`: strictly earlier only, so no change
    _assert_parity(with_late.reset_index(), without, names)


def test_appending_twice_counts_once(world):
    state, new, _ = world
    live = LiveState(state)
    head = new.sort_values("declared_at").head(300)
    assert live.append(head) == 300
    assert live.append(head) == 0
    assert live.append(pd.concat([head.head(5), head.head(5)])) == 0
    assert len(live) == 300


def test_new_entities_grow_the_vocabulary(world):
    state, new, _ = world
    live = LiveState(state)
    first = new.sort_values("declared_at").head(2).copy()
    first["consignee_id"] = "never-seen-consignee"
    first["declared_at"] = first["declared_at"].iloc[0]
    first["declaration_id"] = ["x-1", "x-2"]
    live.append(first.head(1))
    later = first.tail(1).assign(declared_at=first["declared_at"] + pd.Timedelta(hours=1))
    features = live.features(later).frame()
    assert features["consignee_parcels_24h"].tolist() == [1.0]
    assert features["consignee_n_7d"].tolist() == [1.0]
    assert features["consignee_days_since_first"].iloc[0] == pytest.approx(1 / 24)


def test_inspection_results_move_entity_hit_rates_from_their_time(world):
    state, new, _ = world
    live = LiveState(state)
    parcel = new.sort_values("declared_at").head(1)
    live.append(parcel)
    seller = parcel["seller_id"].iloc[0]
    t = parcel["declared_at"].iloc[0]
    inspected = t + pd.Timedelta(hours=2)
    live.append_outcomes(
        parcel, np.array([inspected.value // 1000]), np.array([1]), np.array([12_345])
    )
    probe = parcel.assign(declaration_id=["probe-before", "probe-after"][:1])
    before = live.features(probe.assign(declared_at=inspected)).frame()
    after = live.features(probe.assign(declared_at=inspected + pd.Timedelta(seconds=1))).frame()
    assert after["seller_n_illicit"].iloc[0] == before["seller_n_illicit"].iloc[0] + 1
    assert after["seller_n_inspected"].iloc[0] == before["seller_n_inspected"].iloc[0] + 1
    assert after["seller_revenue_recovered_eur"].iloc[0] == pytest.approx(
        before["seller_revenue_recovered_eur"].iloc[0] + 123.45
    )
    assert after["seller_hit_rate"].iloc[0] > before["seller_hit_rate"].iloc[0]
    assert seller  # a known seller: the result lands on an entity


def _results_between(history: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp):
    """The history's inspection results recorded in [lo, hi): (declarations, time us, illicit,
    revenue cents), as a results log would hand them to the live state."""
    at = history["inspected_at"]
    done = history[history["inspected"].fillna(False) & (at >= lo) & (at < hi)]
    return (
        done[list(DECLARATION_COLUMNS)].reset_index(drop=True),
        done["inspected_at"].to_numpy("datetime64[us]").astype(np.int64),
        done["illicit"].to_numpy(bool, na_value=False),
        np.round(done["revenue_recovered"].to_numpy(float, na_value=0.0) * 100).astype(np.int64),
    )


def test_a_younger_snapshot_replays_only_what_it_does_not_hold(history, world):
    """Champion roll-over: the running state (snapshot at the cut, the next 1.5 days and their
    results appended) and a new champion's (snapshot cut 1.5 days later from the history that
    holds those days, then the same log replayed: what its snapshot holds is skipped) give the
    declarations after them the same features: nothing counted twice, nothing missed."""
    state, new, batch = world
    manifest = state.manifest
    ordered = new.sort_values(["declared_at", "declaration_id"], kind="stable")
    cut2 = state.cutoff + pd.Timedelta(days=1.5)
    before = ordered[ordered["declared_at"] < cut2]
    after = ordered[ordered["declared_at"] >= cut2]
    results = _results_between(history, state.cutoff, cut2 + pd.Timedelta(hours=12))
    assert (results[1] < cut2.value // 1000).any() and (results[1] >= cut2.value // 1000).any()

    running = LiveState(state)
    assert running.append(before) == len(before)
    assert running.append_outcomes(*results) == len(results[0])

    younger = build_entity_state(history, Contract(), PARAMS, cutoff=cut2, manifest=manifest)
    rolled = LiveState(younger)
    assert rolled.append(before) == 0  # all declared before its cutoff: in its snapshot
    held = int((results[1] < cut2.value // 1000).sum())
    assert rolled.append_outcomes(*results) == len(results[0]) - held

    sizes = _chunk_sizes(len(after), 2)
    a = _score_in_chunks(running, after, sizes)
    b = _score_in_chunks(rolled, after, sizes)
    _assert_parity(a, b.set_index("declaration_id"), manifest.names)
    # and both are the batch features (results of the history are not in `batch`: compare
    # the features results do not move)
    moved = ("_n_inspected", "_n_illicit", "_hit_rate", "_revenue", "_inspected_", "_illicit_")
    names = [n for n in manifest.names if not any(m in n for m in moved)]
    _assert_parity(b, batch, names)


def test_outcomes_need_one_result_per_declaration(world):
    state, new, _ = world
    live = LiveState(state)
    with pytest.raises(ValueError, match="one inspection result per declaration"):
        live.append_outcomes(new.head(2), np.array([0]), np.array([1]), np.array([0]))


def test_folding_old_events_bounds_memory_and_changes_no_feature(history):
    """Short windows so a 50-day history folds: a live state that folds and one that never does
    give the same features to the last days' declarations, and the folding one holds fewer
    events (old ones live on as per-entity totals: first seen, inspections)."""
    params = FeatureParams(windows_days=(3,), outcome_window_days=3, split_windows_hours=(24,))
    manifest = build_features(history, Contract(), params).manifest
    t = history["declared_at"]
    cut = t.min() + pd.Timedelta(days=10)
    state = build_entity_state(history, Contract(), params, cutoff=cut, manifest=manifest)
    new = history[t >= cut].sort_values("declared_at")[list(DECLARATION_COLUMNS)]
    folding, keeping = LiveState(state), LiveState(state)
    keeping._fold_if_due = lambda: None  # the reference: every event kept in the runs
    for start in range(0, len(new), 500):
        chunk = new.iloc[start : start + 500]
        for live in (folding, keeping):
            live.append(chunk)
            # results of the parcels of the chunk, an hour after each was declared
            done = chunk.iloc[::5]
            live.append_outcomes(
                done,
                (done["declared_at"] + pd.Timedelta(hours=1))
                .to_numpy("datetime64[us]")
                .astype(np.int64),
                np.arange(len(done)) % 3 == 0,
                np.arange(len(done)) * 100,
            )
    events = folding.state.parts["entity_history"].live.declarations
    assert folding.folded_before_us > state.cutoff_us  # it did fold
    assert len(events) < len(keeping.state.parts["entity_history"].live.declarations) / 2
    last_day = new[new["declared_at"] >= new["declared_at"].max() - pd.Timedelta(days=1)]
    a = folding.features(last_day).frame()
    b = keeping.features(last_day).frame().set_index("declaration_id")
    names = [
        n
        for n in manifest.names
        if manifest.spec(n).group in ("entity_history", "split_shipment", "split_order")
    ]
    _assert_parity(a, b, names)


def test_event_runs_answer_as_one_index_over_every_event():
    """Appends in any time order and batch size, across level merges and a fold: the runs
    queried together equal one index built over the same events."""
    rng = np.random.default_rng(4)
    n = 9_000
    codes = rng.integers(0, 40, n)
    times = rng.integers(0, 10_000, n)
    value = rng.integers(0, 1_000, n)
    runs = hist.EventRuns(("value",))
    start = 0
    while start < n:
        size = int(min(rng.integers(1, 700), n - start - 5)) if n - start > 5 else n - start
        runs.append(
            codes[start : start + size],
            times[start : start + size],
            {"value": value[start : start + size]},
        )
        start += size
    assert [len(r) > 0 for r in runs.runs] == [True, True]  # a merged level and a fresh one
    q_codes, q_times = rng.integers(0, 42, 500), rng.integers(0, 11_000, 500)

    def check(keep: np.ndarray) -> None:
        whole = hist.EventIndex(codes[keep], times[keep], {"value": value[keep]})
        combined = hist.CombinedIndex(*runs.runs)
        got, want = combined.prefix(q_codes, q_times), whole.prefix(q_codes, q_times)
        assert all(np.array_equal(got[k], want[k]) for k in want)
        assert np.array_equal(
            combined.first_time_before(q_codes, q_times), whole.first_time_before(q_codes, q_times)
        )

    check(np.ones(n, dtype=bool))
    dropped_codes, dropped_times, dropped = runs.fold_before(3_000)
    old = times < 3_000
    assert sorted(zip(dropped_codes.tolist(), dropped_times.tolist(), strict=True)) == sorted(
        zip(codes[old].tolist(), times[old].tolist(), strict=True)
    )
    assert dropped["value"].sum() == value[old].sum()
    check(times >= 3_000)


def test_event_runs_refuse_missing_weights():
    with pytest.raises(ValueError, match="need the weights"):
        hist.EventRuns(("value",)).append(np.array([1]), np.array([1]))


def test_live_keys_keep_codes_and_refuse_to_overflow():
    """Keys found by hash, a vocabulary's codes in its own order (``EntityTable.key_index``)."""
    hashes = hist.key_hashes(np.array(["a", "b"], dtype=object))
    order = np.argsort(hashes)
    keys = hist.HashedKeys(hashes[order], limit=3, codes=order)
    assert keys.codes(np.array(["b", "x", None, "x"], dtype=object)).tolist() == [1, 2, -1, 2]
    assert keys.add(np.array(["y", "a"], dtype=object)).tolist() == [2, 0]
    assert keys.codes(np.array(["x", "y"], dtype=object)).tolist() == [3, 2]  # y kept its code
    with pytest.raises(ParcelriskError, match="live entity state full"):
        keys.add(np.array(["p", "q"], dtype=object))


def test_a_result_stored_after_the_export_is_appended_though_inspected_before_the_cutoff(
    history, world
) -> None:
    """Results come back late (a lab test, a post-clearance audit): one inspected before the
    cutoff but stored after the history was exported is in neither the snapshot nor, by its
    inspection time, the live state. A snapshot that knows the store's last result its history
    held (results_seq) appends every later one; those up to it stay skipped."""
    import dataclasses

    state, _, _ = world
    t = history["declared_at"]
    uninspected = ~history["inspected"].fillna(False).astype(bool)
    held = history[(t >= state.cutoff - pd.Timedelta(days=1)) & (t < state.cutoff) & uninspected]
    parcel = held[list(DECLARATION_COLUMNS)].head(1)  # one the snapshot holds, no result
    inspected = state.cutoff - pd.Timedelta(hours=1)  # before the cutoff, after it
    assert parcel["declared_at"].iloc[0] < inspected
    result = (parcel, np.array([inspected.value // 1000]), np.array([1]), np.array([5_000]))
    probe = parcel.assign(declaration_id="probe", declared_at=state.cutoff + pd.Timedelta(days=1))

    def illicit_seen(live: LiveState) -> float:
        return live.features(probe).frame()["seller_n_illicit"].iloc[0]

    unknown = LiveState(state)  # a snapshot that does not know (an administration's export)
    base = illicit_seen(unknown)
    assert unknown.append_outcomes(*result, seqs=np.array([8])) == 0
    knowing = LiveState(dataclasses.replace(state, results_seq=7))
    assert knowing.append_outcomes(*result, seqs=np.array([7])) == 0  # held by the history
    assert illicit_seen(knowing) == base
    assert knowing.append_outcomes(*result, seqs=np.array([8])) == 1  # came back after it
    assert illicit_seen(knowing) == base + 1
    # but a declaration whose result the history holds (a base-history parcel sent again and
    # its result posted again): that result, already counted
    done = history[(t < state.cutoff - pd.Timedelta(days=3)) & ~uninspected]
    again = done[list(DECLARATION_COLUMNS)].tail(1)
    at = np.array([done["inspected_at"].iloc[-1].value // 1000])
    assert at[0] < state.cutoff_us
    assert knowing.append_outcomes(again, at, np.array([1]), np.array([0]), seqs=np.array([9])) == 0


OUTCOME_FEATURES = (
    "_n_inspected",
    "_n_illicit",
    "_hit_rate",
    "_revenue",
    "_inspected_",
    "_illicit_",
)


def test_a_correction_leaves_the_state_as_if_only_the_corrected_result_was_stored(world) -> None:
    """A correction is two events: the replaced result taken back at its own time (sign -1)
    and the corrected one added at its time. Every outcome feature (counts, windows, hit
    rates, revenue, the prior) of later declarations is then what a state that only ever saw
    the corrected result gives, also when the correction moves the inspection time."""
    state, new, _ = world
    parcels = new.sort_values("declared_at").head(40)
    first = parcels.head(1)
    t0 = first["declared_at"].iloc[0]
    us = lambda ts: np.array([ts.value // 1000])  # noqa: E731
    later = parcels.iloc[1:].assign(declared_at=t0 + pd.Timedelta(days=2))
    manifest_names = state.manifest.names
    moved = [n for n in manifest_names if any(m in n for m in OUTCOME_FEATURES)]

    corrected = LiveState(state)
    corrected.append(parcels)
    old_t, new_t = t0 + pd.Timedelta(hours=2), t0 + pd.Timedelta(hours=30)
    assert corrected.append_outcomes(first, us(old_t), np.array([1]), np.array([9_900])) == 1
    pair = pd.concat([first, first])
    times = np.concatenate([us(new_t), us(old_t)])
    assert (
        corrected.append_outcomes(
            pair, times, np.array([0, 1]), np.array([0, 9_900]), signs=np.array([1, -1])
        )
        == 2
    )
    only = LiveState(state)
    only.append(parcels)
    only.append_outcomes(first, us(new_t), np.array([0]), np.array([0]))
    a = corrected.features(later).frame()
    b = only.features(later).frame()
    pd.testing.assert_frame_equal(a[moved], b[moved])
    # and the correction did move them: the state that kept the first result differs
    kept = LiveState(state)
    kept.append(parcels)
    kept.append_outcomes(first, us(old_t), np.array([1]), np.array([9_900]))
    assert not kept.features(later).frame()[moved].equals(b[moved])


def test_a_correction_the_history_already_held_is_not_applied_twice(history, world) -> None:
    """Both events of a correction pass the append rule by the correction's seq: stored up to
    the snapshot's results_seq (the export had the corrected result), events before the cutoff
    are skipped; stored after it, both are applied, whenever inspected."""
    import dataclasses

    state, _, _ = world
    t = history["declared_at"]
    held = history[(t >= state.cutoff - pd.Timedelta(days=1)) & (t < state.cutoff)]
    parcel = held[list(DECLARATION_COLUMNS)].head(1)  # a declaration the snapshot holds
    before = np.array([(state.cutoff - pd.Timedelta(hours=3)).value // 1000] * 2)
    assert parcel["declared_at"].iloc[0] < state.cutoff - pd.Timedelta(hours=3)
    pair = (pd.concat([parcel, parcel]), before, np.array([0, 1]), np.array([0, 500]))
    knowing = LiveState(dataclasses.replace(state, results_seq=7))
    assert knowing.append_outcomes(*pair, seqs=np.array([7, 7]), signs=np.array([1, -1])) == 0
    assert knowing.append_outcomes(*pair, seqs=np.array([8, 8]), signs=np.array([1, -1])) == 2


def test_results_recorded_after_the_cutoff_ride_with_the_snapshot(history, world) -> None:
    """A history holds results recorded after its last declaration (they come back days
    later). The snapshot cannot count them at its cutoff; it carries them, and the live state
    appends them at their time: declarations after the cutoff get the batch features of the
    whole history. A results log handing the same ones over again (the store the history came
    from) adds nothing; a correction of one takes it back."""
    import dataclasses

    from features.pipeline.snapshot import pending_results_of, result_ids_of

    state, new, _ = world
    cut = state.cutoff
    before = history[history["declared_at"] < cut]
    pending = pending_results_of(before, Contract(), state.cutoff_us)
    assert len(pending) == int((before["inspected_at"] >= cut).sum()) > 20
    times = [r["inspected_at_us"] for r in pending]
    assert times == sorted(times) and min(times) >= state.cutoff_us
    # as features build writes it: the ids of every result of the history, the carried too
    carrying = dataclasses.replace(state, pending_results=pending, result_ids=result_ids_of(before))
    categories = {s.name: s.categories for s in state.manifest.features if s.dtype == "category"}
    batch = _batch_features_with(before, new, Contract(), categories).set_index("declaration_id")

    ordered = new.sort_values(["declared_at", "declaration_id"], kind="stable")
    sizes = _chunk_sizes(len(ordered), 4)
    live = LiveState(carrying)
    _assert_parity(_score_in_chunks(live, ordered, sizes), batch, state.manifest.names)
    # without them (the snapshot before this was fixed) the hit rates are not the batch's
    moved = [n for n in state.manifest.names if any(m in n for m in OUTCOME_FEATURES)]
    bare = _score_in_chunks(LiveState(state), ordered, sizes).set_index("declaration_id")
    assert not np.allclose(
        bare.loc[ordered["declaration_id"], moved].to_numpy(float),
        batch.loc[ordered["declaration_id"], moved].to_numpy(float),
        equal_nan=True,
    )

    # the same results from a log (to the second, not the microsecond: another export's
    # rounding): none counted twice; the new parcels' own are
    again = LiveState(carrying)
    results = _results_between(history, cut, cut + pd.Timedelta(days=365))
    results = (results[0], results[1] // 1_000_000 * 1_000_000, *results[2:])
    held = results[0]["declared_at"] < cut
    assert again.append_outcomes(*results) == int((~held).sum())
    first = tuple(a[:1] for a in (results[0].iloc[:1], *results[1:]))
    assert bool(held[0]) and again.append_outcomes(*first) == 0
    # a correction (the carried result taken back at its time, another added) applies
    taken = LiveState(carrying)
    pair = pd.concat([first[0], first[0]])
    flipped = (pair, np.repeat(first[1], 2), np.array([not first[2][0], first[2][0]]),
               np.array([0, first[3][0]]))  # fmt: skip
    pair_seqs = np.array([9, 9])  # one correction: its two events share its seq
    assert taken.append_outcomes(*flipped, seqs=pair_seqs, signs=np.array([1, -1])) == 2


def test_a_late_declaration_the_history_lacks_enters_the_live_state(history, world) -> None:
    """A backlog re-sent after an outage: declarations declared before the snapshot's last one
    but not in its history. Within LATE_ENTRY_DAYS of that last one they enter the live state,
    and the parcels after the cutoff see them as the batch build over history + backlog does
    (the split-order pattern of five parcels to one consignee is visible online). A re-sent
    declaration the history holds is not counted again, nor is one declared too early."""
    import dataclasses

    from features.pipeline.snapshot import LATE_ENTRY_DAYS

    state, new, _ = world
    cut = state.cutoff
    last = pd.Timestamp(state.last_declared_us * 1000, tz="UTC")
    ordered = new.sort_values(["declared_at", "declaration_id"], kind="stable")
    # five parcels of each of the first ten arrivals' seller and consignee, half a day early
    late = pd.concat([ordered.head(10)] * 5, ignore_index=True)
    late = late.assign(
        declaration_id=[f"LATE{i:04d}" for i in range(len(late))],
        declared_at=[cut - pd.Timedelta(hours=12) + pd.Timedelta(minutes=i) for i in range(50)],
    )
    assert (late["declared_at"] >= last - pd.Timedelta(days=LATE_ENTRY_DAYS)).all()
    categories = {s.name: s.categories for s in state.manifest.features if s.dtype == "category"}
    batch = _batch_features_with(
        as_known_at(history, cut), pd.concat([late, ordered]), Contract(), categories
    ).set_index("declaration_id")

    live = LiveState(state)
    assert live.append(late) == len(late)
    assert live.append(late) == 0  # once
    sizes = _chunk_sizes(len(ordered), 5)
    _assert_parity(_score_in_chunks(live, ordered, sizes), batch, state.manifest.names)
    # before (a snapshot without the recent ids): the backlog never counted for anyone
    old = LiveState(dataclasses.replace(state, recent_ids=None))
    assert old.append(late) == 0
    first = ordered.head(1)
    assert (
        old.features(first).frame()["consignee_n_7d"].iloc[0]
        < live.features(first).frame()["consignee_n_7d"].iloc[0]
    )

    # the history's own declarations re-sent: held, never counted twice (nor in-request)
    t = history["declared_at"]
    own = history[(t < cut) & (t >= last - pd.Timedelta(days=1))][list(DECLARATION_COLUMNS)]
    fresh = LiveState(state)
    assert fresh.append(own) == 0
    pair = pd.concat([own.head(1), own.head(1).assign(declaration_id="probe", declared_at=cut)])
    alone = fresh.features(pair.tail(1)).frame()
    both = fresh.features(pair).frame()
    names = [n for n in state.manifest.names if n.endswith(COUNTS)]
    pd.testing.assert_frame_equal(both[names].tail(1).reset_index(drop=True), alone[names])
    # declared earlier than the late-entry span: scored, never entered
    early = late.head(3).assign(
        declaration_id=["EARLY1", "EARLY2", "EARLY3"],
        declared_at=last - pd.Timedelta(days=LATE_ENTRY_DAYS, hours=1),
    )
    assert fresh.append(early) == 0
    warnings: list[tuple[int, str]] = []
    fresh.features(early, warnings)
    assert any(
        "too late" in text and "to count for later declarations" in text for _, text, _ in warnings
    )
    # nor for the other declarations of its request: one of the history's own, re-sent from
    # before the span beside a new parcel of its seller, is counted once (by the snapshot)
    old = history[t < last - pd.Timedelta(days=LATE_ENTRY_DAYS + 1)][list(DECLARATION_COLUMNS)]
    old = old.tail(1)
    probe = old.assign(declaration_id="probe-old", declared_at=cut)
    alone = fresh.features(probe).frame()
    both = fresh.features(pd.concat([old, probe])).frame()
    pd.testing.assert_frame_equal(both[names].tail(1).reset_index(drop=True), alone[names])


def test_seen_ids_hold_ids_as_hashes_in_a_few_sorted_runs() -> None:
    """The live state's de-duplication held a dict of the id strings, ~170 bytes an id of each
    worker's growth (probe 24); 16 bytes now, same answers."""
    from features.pipeline.live import SeenIds

    seen = SeenIds()
    rng = np.random.default_rng(0)
    held: dict[str, int] = {}
    for batch in range(300):
        n = int(rng.integers(1, 200))
        ids = np.array([f"D{batch}-{i}" for i in range(n)], dtype=object)
        t = rng.integers(0, 1_000, n)
        seen.add(ids, t)
        held.update(zip(ids.tolist(), t.tolist(), strict=True))
    assert len(seen) == len(held) and len(seen._runs) <= 2 * np.log2(len(held))
    asked = np.array([*list(held)[::7], "D-none", "D0-999", ""], dtype=object)
    assert seen.among(asked).tolist() == [i in held for i in asked.tolist()]
    assert "D0-0" in seen and "D-none" not in seen
    seen.keep(lambda t: t >= 500)
    kept = {i for i, t in held.items() if t >= 500}
    assert len(seen) == len(kept)
    assert seen.among(asked).tolist() == [i in kept for i in asked.tolist()]
    assert not SeenIds().among(asked).any()


def test_seen_ids_never_lose_an_id_to_a_query_beside_an_append() -> None:
    """A query may run beside an append (``/explain`` beside a batch): an id held before the
    append is found throughout it, whatever runs are being merged or tables rebuilt."""
    import threading

    from features.pipeline.live import SeenIds

    seen = SeenIds()
    held = np.array([f"OLD-{i}" for i in range(5_000)], dtype=object)
    seen.add(held, np.zeros(len(held), dtype=np.int64))
    stop, lost = threading.Event(), []

    def query() -> None:
        while not stop.is_set():
            if not seen.among(held).all() or held[7] not in seen:
                lost.append(1)

    reader = threading.Thread(target=query)
    reader.start()
    try:
        for batch in range(400):  # merges and several table rebuilds
            ids = np.array([f"NEW-{batch}-{i}" for i in range(500)], dtype=object)
            seen.add(ids, np.full(len(ids), batch, dtype=np.int64))
        seen.keep(lambda t: t >= 0)
    finally:
        stop.set()
        reader.join()
    assert not lost and len(seen) == 5_000 + 400 * 500
