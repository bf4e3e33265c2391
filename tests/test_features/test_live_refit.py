"""Refits in the live state: past the snapshot's refit period, references and text models are
refitted as batch refits them (``features.pipeline.refit``).

A snapshot cut mid-period, then four weeks of declarations (four refit periods of 7 days)
scored through the live state in time order with their inspection results appended as they are
recorded: the valuation, HS-heading and text features equal batch's over the whole history.
Without the refits the snapshot's fit would serve them all (the control below shows it differs).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.contract import DECLARATION_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.history import US_PER_DAY
from features.pipeline.live import LiveState
from features.pipeline.prepare import fit_cut_us, period_of, period_start_us
from features.pipeline.refit import RefitPart
from features.pipeline.snapshot import META_FILE, EntityState, _fingerprint_dir, build_entity_state
from features.synthetic import SyntheticParams, generate

PARAMS = FeatureParams(refit_period_days=7, extra_families=("hs_heading_value",))
REFIT_FAMILIES = ("valuation", "hs_heading_value", "text")


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    declarations, _ = generate(SyntheticParams(seed=23, parcels=8_000, days=56))
    return declarations


@pytest.fixture(scope="module")
def world(history: pd.DataFrame):
    """(snapshot cut mid-period four weeks before the end, the declarations after it, batch
    features of the whole history by id, the names of the refit families' features)."""
    built = build_features(history, Contract(), PARAMS)
    t = history["declared_at"]
    last = period_of(np.array([t.max().value // 1000]), PARAMS.refit_period_days)[0]
    cut_us = period_start_us(int(last) - 4, PARAMS.refit_period_days) + 3 * US_PER_DAY
    cut = pd.Timestamp(cut_us * 1000, tz="UTC")
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cut, manifest=built.manifest)
    names = [
        spec.name
        for family in state.families
        if family.name in REFIT_FAMILIES
        for spec in family.specs(_ctx(state))
    ]
    assert {"unit_value_ratio_hs6", "unit_value_ratio_hs_heading", "text_p_illicit"} <= set(names)
    new = history[t >= cut].sort_values(["declared_at", "declaration_id"], kind="stable")
    assert np.ptp(period_of(_us(new["declared_at"]), 7)) >= 3
    return state, new, built.frame.set_index("declaration_id"), names


def _us(stamps: pd.Series) -> np.ndarray:
    return stamps.astype("datetime64[us, UTC]").astype("int64").to_numpy()


def _ctx(state: EntityState):
    from features.pipeline.family import SpecContext

    return SpecContext(
        state.params, state.contract, state.manifest.inputs, state.manifest.categories
    )


def _results(rows: pd.DataFrame):
    """Their inspection results as a results log hands them over (declarations, time us,
    illicit, revenue cents), in time order."""
    done = rows[rows["inspected"].fillna(False)].sort_values("inspected_at", kind="stable")
    return (
        done[list(DECLARATION_COLUMNS)].reset_index(drop=True),
        done["inspected_at"].to_numpy("datetime64[us]").astype(np.int64),
        done["illicit"].to_numpy(bool, na_value=False),
        np.round(done["revenue_recovered"].to_numpy(float, na_value=0.0) * 100).astype(np.int64),
    )


def _replay(live: LiveState, history: pd.DataFrame, new: pd.DataFrame, cut: pd.Timestamp, seed):
    """Score ``new`` in time-ordered chunks, each after the results recorded before its last
    declaration (a period's fit learns from the results recorded before the period starts, so
    those recorded before a chunk's declarations of a new period are in before them; the
    entity histories, which would see results too early this way, are not compared here)."""
    declarations, at_us, illicit, cents = _results(history[history["inspected_at"] >= cut])
    done = 0
    frames = []
    rng = np.random.default_rng(seed)
    start = 0
    while start < len(new):
        chunk = new.iloc[start : start + int(rng.integers(1, 400))]
        last_us = int(_us(chunk["declared_at"])[-1])
        upto = int(np.searchsorted(at_us, last_us, side="left"))
        if upto > done:
            live.append_outcomes(
                declarations.iloc[done:upto], at_us[done:upto], illicit[done:upto], cents[done:upto]
            )
            done = upto
        rows = chunk[list(DECLARATION_COLUMNS)].reset_index(drop=True)
        frames.append(live.features(rows).frame())
        live.append(rows)
        start += len(chunk)
    return pd.concat(frames, ignore_index=True).set_index("declaration_id")


def _differing(online: pd.DataFrame, batch: pd.DataFrame, names: list[str]) -> dict[str, int]:
    b = batch.loc[online.index, names]
    out = {}
    for name in names:
        x, y = b[name].to_numpy(float), online[name].to_numpy(float)
        ok = np.isclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True)
        if not ok.all():
            out[name] = int((~ok).sum())
    return out


def test_references_and_text_models_are_refitted_as_batch_refits_them(history, world):
    state, new, batch, names = world
    live = LiveState(state)
    online = _replay(live, history, new, state.cutoff, seed=1)
    assert _differing(online, batch, names) == {}
    # four later periods fitted, the latest two kept (a text model is tens of MB)
    assert all(len(live.state.parts[f]._fits) == 2 for f in REFIT_FAMILIES)


def test_without_refits_the_snapshot_fit_goes_stale(history, world):
    """The control: the same replay with the snapshot's fit for every period differs."""
    state, new, batch, names = world
    parts = {  # as a snapshot from before evidence was kept
        name: RefitPart(part.fitted, part.period, None) if isinstance(part, RefitPart) else part
        for name, part in state.parts.items()
    }
    frozen = LiveState(dataclasses.replace(state, parts=parts))
    online = _replay(frozen, history, new, state.cutoff, seed=1)
    stale = _differing(online, batch, names)
    assert {"unit_value_ratio_hs6", "text_p_illicit"} & set(stale), stale
    assert max(stale.values()) > len(new) // 3


def test_late_arrivals_drop_the_fits_they_change(history, world):
    """Declarations in random order: a period's fit made before an earlier declaration came
    is dropped when it comes; once everything has come, every feature is batch's again."""
    state, new, batch, names = world
    live = LiveState(state)
    declarations, at_us, illicit, cents = _results(history[history["inspected_at"] >= state.cutoff])
    shuffled = new.sample(frac=1.0, random_state=4)[list(DECLARATION_COLUMNS)]
    for lo in range(0, len(shuffled), 500):
        rows = shuffled.iloc[lo : lo + 500].reset_index(drop=True)
        live.features(rows)  # fits periods on what has come so far
        live.append(rows)
    live.append_outcomes(declarations, at_us, illicit, cents)  # results, all at once, late
    rows = new[list(DECLARATION_COLUMNS)].reset_index(drop=True)
    again = live.features(rows).frame().set_index("declaration_id")
    assert _differing(again, batch, names) == {}


def test_a_request_spanning_a_period_start_counts_its_own_earlier_declarations(history, world):
    state, new, batch, names = world
    live = LiveState(state)
    declarations, at_us, illicit, cents = _results(history[history["inspected_at"] >= state.cutoff])
    # everything up to a period start, then one request across it
    t_us = _us(new["declared_at"])
    boundary = period_start_us(int(period_of(t_us[:1], 7)[0]) + 2, 7)
    before = new[t_us < boundary - 2 * US_PER_DAY]
    across = new[(t_us >= boundary - 2 * US_PER_DAY) & (t_us < boundary + 2 * US_PER_DAY)]
    live.append(before[list(DECLARATION_COLUMNS)].reset_index(drop=True))
    live.append_outcomes(*(a[at_us < boundary] for a in (declarations, at_us, illicit, cents)))
    online = live.features(across[list(DECLARATION_COLUMNS)].reset_index(drop=True)).frame()
    assert _differing(online.set_index("declaration_id"), batch, names) == {}


def test_evidence_is_saved_with_the_snapshot_and_an_older_one_still_loads(world, tmp_path):
    state, new, _, names = world
    state.save(tmp_path / "state")
    loaded = EntityState.load(tmp_path / "state")
    for family in REFIT_FAMILIES:
        part = loaded.parts[family]
        assert isinstance(part, RefitPart) and part.evidence is not None
        assert part.period == period_of(np.array([state.cutoff_us]), 7)[0]
        for kind, frame in part.evidence.items():
            pd.testing.assert_frame_equal(frame, state.parts[family].evidence[kind])
    later = new.tail(300)[list(DECLARATION_COLUMNS)].reset_index(drop=True)
    a = LiveState(state).features(later).frame()[names]
    b = LiveState(loaded).features(later).frame()[names]
    pd.testing.assert_frame_equal(a, b)
    # a serving process frees the frames its live copy holds coded; such a state is not saved
    served = LiveState(loaded)
    served.release_snapshot_copies()
    assert loaded.parts["valuation"].evidence is None
    assert served.state.parts["valuation"].refits and LiveState(loaded).state.parts["text"].refits
    b = LiveState(loaded).features(later).frame()[names]  # another live state, coded already
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ParcelriskError, match="released"):
        loaded.save(tmp_path / "again")
    # evidence is fingerprinted as every snapshot file: a changed count is refused
    evidence = tmp_path / "state" / "valuation_evidence_declared.parquet"
    original = evidence.read_bytes()
    frame = pd.read_parquet(evidence)
    frame.loc[0, "n"] += 1
    frame.to_parquet(evidence, index=False)
    with pytest.raises(ParcelriskError, match="corrupt"):
        EntityState.load(tmp_path / "state")
    evidence.write_bytes(original)
    # a snapshot written before evidence was kept: its fit serves every later period
    for path in (tmp_path / "state").glob("*_evidence_*.parquet"):
        path.unlink()
    meta_path = tmp_path / "state" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["fingerprint"] = _fingerprint_dir(tmp_path / "state")
    meta_path.write_text(json.dumps(meta))
    old = EntityState.load(tmp_path / "state")
    assert all(old.parts[f].evidence is None for f in REFIT_FAMILIES)
    frozen = LiveState(old).features(later).frame()[names]
    assert not frozen.equals(a)  # the later periods get the snapshot's fit, as before


def test_what_comes_within_the_lag_keeps_the_fit_and_what_comes_later_drops_it(history, world):
    """A declaration lodged before a period start but sent after its first declaration was
    scored: within ``refit_lag_days`` of the start it is no evidence of that period (batch
    leaves it out too) and the fit stays; earlier than that, the fit is made again with it."""
    state, new, batch, names = world
    live = LiveState(state)
    t_us = _us(new["declared_at"])
    period = int(period_of(t_us[:1], 7)[0]) + 1  # the first period after the snapshot's
    start = period_start_us(period, 7)
    held = (t_us >= start - 3 * US_PER_DAY) & (t_us < start)  # a day before the cut .. start
    within = held & (t_us >= start - 2 * US_PER_DAY)
    early = held & ~within
    assert within.any() and early.any()
    cols = list(DECLARATION_COLUMNS)
    live.append(new[(t_us < start) & ~held][cols].reset_index(drop=True))
    first = new[t_us >= start].head(50)[cols].reset_index(drop=True)
    live.features(first)
    part = live.state.parts["valuation"]
    fitted = part._fits[period]
    live.append(new[within][cols].reset_index(drop=True))
    assert part._fits.get(period) is fitted  # kept: no evidence of this period
    live.append(new[early][cols].reset_index(drop=True))
    assert period not in part._fits  # dropped: the period's fit learns from them
    # the refit sees them: the period's declarations get batch's references (the results are
    # left out here, so only the valuation and heading features are compared)
    later = new[(t_us >= start) & (t_us < start + 7 * US_PER_DAY)][cols].reset_index(drop=True)
    made = part.refit_count
    online = live.features(later).frame().set_index("declaration_id")
    assert part.refit_count == made + 1
    valued = [n for n in names if not n.startswith("text_")]
    assert _differing(online, batch, valued) == {}


def test_results_stored_after_the_export_refit_the_snapshots_own_period(history, world):
    """Results recorded before the snapshot period's cut but stored after the history was
    exported (a laboratory result, a correction; ``EntityState.results_seq``): the history
    the snapshot was built from lacked them, batch over the whole history counts them, so the
    snapshot's own fit is made again with them (probe 7, F1: it was kept, 494 rows stale)."""
    state, new, batch, names = world
    cut_us = fit_cut_us(state.parts["text"].period, PARAMS)
    at = history["inspected_at"]
    late = history[
        history["inspected"].fillna(False) & (at < pd.Timestamp(cut_us * 1000, tz="UTC"))
    ]
    late = late[late["illicit"].fillna(False)].tail(40)  # illicit ones move the text model
    lacking = history.copy()
    lacking.loc[late.index, ["inspected", "illicit", "revenue_recovered"]] = [False, pd.NA, np.nan]
    lacking.loc[late.index, "inspected_at"] = pd.NaT
    exported = build_entity_state(
        lacking, Contract(), PARAMS, cutoff=state.cutoff, manifest=state.manifest
    )
    exported = dataclasses.replace(exported, results_seq=0)  # the store's results up to seq 0
    live = LiveState(exported)
    declarations, at_us, illicit, cents = _results(late)
    seqs = np.arange(1, len(late) + 1)  # stored after the export
    assert live.append_outcomes(declarations, at_us, illicit, cents, seqs=seqs) == len(late)
    assert live.state.parts["text"].snapshot_stale
    online = _replay(live, history, new, state.cutoff, seed=2)
    assert _differing(online, batch, names) == {}
    # the control: the snapshot's fit kept for its period differs
    kept = LiveState(exported)
    kept.append_outcomes(declarations, at_us, illicit, cents, seqs=seqs)
    for part in kept.state.parts.values():
        if isinstance(part, RefitPart):
            part.snapshot_stale = False  # as before the fix: the snapshot's fit kept
    first = new[period_of(_us(new["declared_at"]), 7) == state.parts["text"].period]
    rows = first[list(DECLARATION_COLUMNS)].reset_index(drop=True)
    frozen = kept.features(rows).frame().set_index("declaration_id")
    assert "text_p_illicit" in _differing(frozen, batch, names)


def test_the_next_period_is_fitted_ahead_once_its_cut_has_passed(history, world):
    """Once declarations past the next period's cut come in, that period's fit is made in a
    thread: its first request finds it made (no refit on the request path), and a fit whose
    evidence changed while it was made is not kept."""
    state, new, batch, names = world
    live = LiveState(state)
    part = live.state.parts["valuation"]
    t_us = _us(new["declared_at"])
    period = int(period_of(t_us[:1], 7)[0]) + 1
    cut = fit_cut_us(period, PARAMS)
    cols = list(DECLARATION_COLUMNS)
    live.append(new[t_us < cut][cols].reset_index(drop=True))
    assert part._prefit_thread is None  # the cut has not passed
    live.append(new[(t_us >= cut) & (t_us < cut + US_PER_DAY)][cols].reset_index(drop=True))
    part._prefit_thread.join(60)
    assert period in part._fits and part.refit_count == 1
    first = new[t_us >= period_start_us(period, 7)].head(100)[cols].reset_index(drop=True)
    online = live.features(first).frame().set_index("declaration_id")
    assert part.refit_count == 1  # made ahead: the request did not refit
    valued = [n for n in names if not n.startswith("text_")]
    assert _differing(online, batch, valued) == {}

    # evidence of the period arriving while its fit is made ahead: that fit is not kept
    del part._fits[period]
    straggler = new[t_us < cut].head(1)[cols].reset_index(drop=True)
    straggler["declaration_id"] = "straggler-1"

    def fit_while_a_straggler_comes(evidence):
        live.append(straggler)
        return live.state.families[0]  # any object: it must not be kept

    thread = part.prefit(period, fit_while_a_straggler_comes)
    thread.join(60)
    assert period not in part._fits
