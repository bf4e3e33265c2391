"""A declaration scored long after the model's history ends is warned: its recent counts read 0
and its hit rates are those of the history's end, not the entity's behaviour.

The declarations warning fires past the longest window after the newest declaration the state
knows (the snapshot's last, or the live layer's newest); the results warning past the recent
results window after the newest inspection result (the snapshot's, the carried ones, or those
posted since). Fed back what it scores, a served state never warns.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import DECLARATION_COLUMNS, OUTCOME_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.history import US_PER_DAY
from features.pipeline.live import LiveState
from features.pipeline.online import online_features
from features.pipeline.snapshot import (
    LAST_DECLARED_FILE,
    META_FILE,
    EntityState,
    _fingerprint_dir,
    build_entity_state,
    pending_results_of,
)
from features.synthetic import SyntheticParams, generate

PARAMS = FeatureParams()
DECLARATIONS_GAP = "holds no declaration after"
RESULTS_GAP = "holds no inspection result after"
RESULT_COLUMNS = tuple(c for c in OUTCOME_COLUMNS if c != "inspected")  # a result's fields


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    declarations, _ = generate(SyntheticParams(seed=17, parcels=2_000, days=30))
    return declarations


@pytest.fixture(scope="module")
def manifest(history: pd.DataFrame):
    return build_features(history, Contract(), PARAMS).manifest


def _state_of(history: pd.DataFrame, manifest) -> EntityState:
    """The snapshot ``features build`` makes: just after the last declaration, the results
    recorded after it carried beside it."""
    cut = history["declared_at"].max() + pd.Timedelta(microseconds=1)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cut, manifest=manifest)
    pending = pending_results_of(history, Contract(), state.cutoff_us)
    return dataclasses.replace(state, pending_results=pending)


@pytest.fixture(scope="module")
def state(history: pd.DataFrame, manifest) -> EntityState:
    return _state_of(history, manifest)


def _declared_after(history: pd.DataFrame, days: float, n: int = 20, prefix: str = "N"):
    """``n`` of the history's last declarations, new ids, declared ``days`` after its end."""
    rows = history.sort_values("declared_at").tail(n)[list(DECLARATION_COLUMNS)].copy()
    end = history["declared_at"].max()
    rows["declared_at"] = end + pd.Timedelta(days=days)
    rows["declaration_id"] = [f"{prefix}{i}" for i in range(n)]
    return rows.reset_index(drop=True)


def _stale(live: LiveState | EntityState, declarations: pd.DataFrame) -> dict[str, set[int]]:
    """Rows warned of each gap."""
    warnings: list[tuple[int, str]] = []
    if isinstance(live, LiveState):
        live.features(declarations, warnings)
    else:
        online_features(declarations, live, warnings)
    return {
        gap: {row for row, text, _ in warnings if gap in text}
        for gap in (DECLARATIONS_GAP, RESULTS_GAP)
    }


def _utc_day(t: pd.Timestamp) -> str:
    return t.tz_convert("UTC").strftime("%Y-%m-%d")


def test_the_snapshot_records_its_newest_result_before_the_cutoff(history, state) -> None:
    recorded = history["inspected"].fillna(False).astype(bool) & history["illicit"].notna()
    inspected = history.loc[recorded, "inspected_at"]
    newest = inspected[inspected < state.cutoff].max()
    assert state.last_result_us == newest.value // 1000
    # the later ones ride beside the snapshot, for the live state
    assert state.pending_results
    assert min(r["inspected_at_us"] for r in state.pending_results) >= state.cutoff_us


def test_a_declaration_within_the_windows_is_not_warned(history, state) -> None:
    new = _declared_after(history, days=10)
    assert _stale(LiveState(state), new) == {DECLARATIONS_GAP: set(), RESULTS_GAP: set()}


def test_a_declaration_long_after_the_history_gets_both_warnings(history, state) -> None:
    new = _declared_after(history, days=400)
    warnings: list[tuple[int, str]] = []
    LiveState(state).features(new, warnings)
    stale = [(row, text) for row, text, _ in warnings if "holds no" in text]
    assert sorted(row for row, _ in stale) == sorted(2 * list(range(20)))  # both, every row
    texts = [text for _, text in stale]
    end = history["declared_at"].max()
    gap = (new["declared_at"][0] - end) // pd.Timedelta(days=1)
    said = (
        f"the model's history holds no declaration after {_utc_day(end)} ({gap:,} days before "
        f"this one, beyond its longest window of {PARAMS.max_window_days} days): "
    )
    assert sum(t.startswith(said) for t in texts) == 20
    # the newest result known is a carried one, recorded after the cutoff
    newest = max(r["inspected_at_us"] for r in state.pending_results)
    since = _utc_day(pd.Timestamp(newest * 1000, tz="UTC"))
    assert since != _utc_day(pd.Timestamp(state.last_result_us * 1000, tz="UTC"))
    results = [t for t in texts if RESULTS_GAP in t]
    assert results and all(f"result after {since} (" in t for t in results)
    assert all(f"the {PARAMS.outcome_window_days}-day window" in t for t in results)


def test_the_snapshot_alone_dates_the_results_from_its_own_newest(history, state) -> None:
    new = _declared_after(history, days=400)
    warnings: list[tuple[int, str]] = []
    online_features(new, state, warnings)
    since = _utc_day(pd.Timestamp(state.last_result_us * 1000, tz="UTC"))
    assert any(f"inspection result after {since} (" in t for _, t, _ in warnings)


def test_thousands_are_separated(history, state) -> None:
    new = _declared_after(history, days=4_722, n=1)
    warnings: list[tuple[int, str]] = []
    online_features(new, state, warnings)
    assert any("(4,722 days before this one" in t for _, t, _ in warnings)


def test_later_declarations_appended_end_the_declarations_warning(history, state) -> None:
    live = LiveState(state)
    live.append(_declared_after(history, days=399, prefix="EARLIER"))
    stale = _stale(live, _declared_after(history, days=400))
    assert stale[DECLARATIONS_GAP] == set()
    assert stale[RESULTS_GAP] == set(range(20))  # declarations alone bring no results


def test_a_recent_result_posted_ends_the_results_warning(history, state) -> None:
    live = LiveState(state)
    earlier = _declared_after(history, days=390, n=1, prefix="EARLIER")
    live.append(earlier)
    t_us = earlier["declared_at"].astype("datetime64[us, UTC]").astype("int64").to_numpy()
    added = live.append_outcomes(
        earlier, t_us + US_PER_DAY, np.array([False]), np.array([0], dtype=np.int64)
    )
    assert added == 1
    assert _stale(live, _declared_after(history, days=400)) == {
        DECLARATIONS_GAP: set(),
        RESULTS_GAP: set(),
    }


def test_a_result_taken_back_does_not_count_as_recent(history, state) -> None:
    live = LiveState(state)
    earlier = _declared_after(history, days=390, n=1, prefix="EARLIER")
    live.append(earlier)
    t_us = earlier["declared_at"].astype("datetime64[us, UTC]").astype("int64").to_numpy()
    live.append_outcomes(
        earlier,
        t_us + US_PER_DAY,
        np.array([False]),
        np.array([0], dtype=np.int64),
        signs=np.array([-1]),
    )
    assert _stale(live, _declared_after(history, days=400))[RESULTS_GAP] == set(range(20))


def test_the_newest_result_survives_save_and_load(state, tmp_path) -> None:
    loaded = EntityState.load(state.save(tmp_path / "state"))
    assert loaded.last_result_us == state.last_result_us is not None


def test_an_older_snapshot_without_it_gets_no_results_warning(history, state, tmp_path) -> None:
    directory = state.save(tmp_path / "state")
    last = json.loads((directory / LAST_DECLARED_FILE).read_text())
    del last["last_result_us"]
    (directory / LAST_DECLARED_FILE).write_text(json.dumps(last))
    # as the older code wrote it: the fingerprint of what is there
    meta = json.loads((directory / META_FILE).read_text())
    meta["fingerprint"] = _fingerprint_dir(directory)
    (directory / META_FILE).write_text(json.dumps(meta))
    older = EntityState.load(directory)
    assert older.last_result_us is None
    stale = _stale(older, _declared_after(history, days=400))
    assert stale == {DECLARATIONS_GAP: set(range(20)), RESULTS_GAP: set()}


def test_a_history_without_results_gets_no_results_warning(history, manifest) -> None:
    blind = history.copy()
    blind["inspected"] = False
    for column in RESULT_COLUMNS:
        blind[column] = None
    state = _state_of(blind, manifest)
    assert state.last_result_us is None and not state.pending_results
    stale = _stale(LiveState(state), _declared_after(history, days=400))
    assert stale == {DECLARATIONS_GAP: set(range(20)), RESULTS_GAP: set()}
