"""The live entity state on an export of local dates without a time (XOF, Africa/Lagos).

Every declaration of a local day is at the same instant (its local midnight), so a history
exported part-way through a day ends on an instant that declarations still to come share. The
snapshot holds the day's exported declarations; those lodged after the export are declared at
the same instant, not before it: they must enter the live state (the next days count them, as
batch does) and be scored with the history batch gives them (the longest window reaching back
to the same instant 180 days earlier included).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import (
    DECLARATION_COLUMNS,
    Contract,
    ExtraColumn,
    coerce_declarations,
)
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.live import LiveState
from features.pipeline.prepare import as_known_at, period_of, sort_declarations
from features.pipeline.snapshot import EntityState, build_entity_state
from features.synthetic import SyntheticParams, generate
from tests.test_features.test_build import _batch_features_with
from tests.test_features.test_live_state import _assert_parity, _chunk_sizes, _score_in_chunks

TIMEZONE = "Africa/Lagos"
XOF_PER = {"XOF": 1.0, "EUR": 655.957, "USD": 603.48, "GBP": 767.47, "CNY": 83.31}
XOF_PER |= {"HKD": 77.40, "TRY": 17.71, "JPY": 4.00, "NGN": 0.40}
PARAMS = FeatureParams(
    base_currency="XOF",
    fx_to_base=XOF_PER,
    timezone=TIMEZONE,
    de_minimis_eur=150.0,  # EUR, compared in XOF (FeatureParams.de_minimis_base)
    # the longest window (30 days) reaches back to a local midnight inside the history
    windows_days=(7, 30),
    outcome_window_days=30,
)
CONTRACT = Contract((ExtraColumn("broker_id", "entity"),))


def _date_only(declarations: pd.DataFrame) -> pd.DataFrame:
    """Declared at the local midnight of the local date, as an export without a time is read."""
    local = declarations["declared_at"].dt.tz_convert(TIMEZONE).dt.floor("D")
    out = declarations.assign(
        declared_at=local.dt.tz_convert("UTC").astype("datetime64[us, UTC]"),
        broker_id="BR-" + declarations["operator_id"].str[-2:],
    )
    return sort_declarations(out)


@pytest.fixture(scope="module")
def world():
    """(snapshot of a history exported part-way through a local day, the declarations after
    the export: the rest of that day and the next days, their batch features, the history)."""
    declarations, _ = generate(SyntheticParams(seed=5, parcels=6_000, days=45))
    declarations = _date_only(declarations)
    days = declarations["declared_at"].drop_duplicates().reset_index(drop=True)
    periods = period_of(days.to_numpy("datetime64[us]").astype(np.int64), PARAMS.refit_period_days)
    # the cut day and the 3 days after it in one refit period (batch refits at period starts)
    cut_day = next(i for i in range(31, len(days) - 3) if periods[i] == periods[i + 3])
    instant = days[cut_day]
    that_day = declarations[declarations["declared_at"] == instant]
    exported = set(that_day["declaration_id"].iloc[::2])
    in_history = (declarations["declared_at"] < instant) | declarations["declaration_id"].isin(
        exported
    )
    cutoff = instant + pd.Timedelta(microseconds=1)  # `features build`: just after the last
    history = as_known_at(declarations[in_history], cutoff)
    new = declarations[~in_history & (declarations["declared_at"] <= days[cut_day + 3])]
    new = new[[*DECLARATION_COLUMNS, "broker_id"]].reset_index(drop=True)
    assert (new["declared_at"] == instant).sum() >= 20  # the rest of the cut day
    manifest = build_features(history, CONTRACT, PARAMS).manifest
    categories = {s.name: s.categories for s in manifest.features if s.dtype == "category"}
    state = build_entity_state(history, CONTRACT, PARAMS, cutoff=cutoff, manifest=manifest)
    batch = _batch_features_with(history, new, CONTRACT, categories, PARAMS)
    return state, new, batch.set_index("declaration_id"), history


def test_declarations_at_the_cut_instant_enter_the_live_state_as_in_batch(world):
    state, new, batch, _ = world
    live = LiveState(state)
    online = _score_in_chunks(live, new, _chunk_sizes(len(new), 4))
    _assert_parity(online, batch, state.manifest.names)
    assert len(live) == len(new)  # every one entered, the rest of the cut day included


def test_a_declaration_the_snapshot_holds_is_not_appended_again(world, tmp_path):
    """The exported half of the cut day is in the snapshot (also once saved and loaded): sent
    again, none of it counts twice."""
    state, new, _, _ = world
    state.save(tmp_path / "state")
    loaded = EntityState.load(tmp_path / "state")
    instant = new["declared_at"].min()
    for snapshot in (state, loaded):
        live = LiveState(snapshot)
        held = list(snapshot.last_declared_ids)
        assert held and snapshot.last_declared_us == instant.value // 1000
        day = new[new["declared_at"] == instant]
        k = min(len(day), len(held))
        assert live.append(day.head(k).assign(declaration_id=held[:k])) == 0
        assert live.append(day) == len(day)


def test_no_warning_for_declarations_at_the_cut_instant(world):
    state, new, _, _ = world
    warnings: list[tuple[int, str]] = []
    LiveState(state).features(new[new["declared_at"] == new["declared_at"].min()], warnings)
    assert not [w for _, w, _ in warnings if "entity-state cutoff" in w]


def test_a_result_dated_the_cut_day_counts_as_in_batch(world):
    """A parcel of the rest of the cut day, inspected the same day: its result, read at the
    same local midnight, is recorded before the snapshot's cutoff, yet the snapshot cannot hold
    it (nor its declaration). Later declarations see it, as in batch."""
    state, new, _, history = world
    instant = new["declared_at"].min()
    day, later = new[new["declared_at"] == instant], new[new["declared_at"] > instant]
    found = day.head(1)
    inspected = pd.Series(False, index=new.index)
    inspected[found.index] = True
    result = {
        "inspected": inspected,
        "inspected_at": pd.Series(pd.NaT, index=new.index, dtype="datetime64[us, UTC]").mask(
            inspected, instant
        ),
        "illicit": pd.array([True if i else None for i in inspected], dtype="boolean"),
        "revenue_recovered": np.where(inspected, 12.5, np.nan),
    }
    world_frame = coerce_declarations(
        pd.concat([history, new.assign(**result)], ignore_index=True),
        with_outcomes=True,
        contract=CONTRACT,
    )
    batch = build_features(world_frame, CONTRACT, PARAMS, categories=state.manifest.categories)
    batch = batch.frame.set_index("declaration_id")

    live = LiveState(state)
    assert live.append(day) == len(day)
    at = np.array([instant.value // 1000], dtype=np.int64)
    assert live.append_outcomes(found, at, np.array([True]), np.array([1250])) == 1
    online = _score_in_chunks(live, later.reset_index(drop=True), _chunk_sizes(len(later), 5))
    _assert_parity(online, batch, state.manifest.names)
