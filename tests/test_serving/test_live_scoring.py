"""The live entity state in the scoring path: across workers (one decision store) and chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.params import load_settings
from serving.scoring import decision_records, load_runtime, score_file, score_frame
from serving.sqlite_store import SqliteDecisionStore
from serving.store import DecisionStore, open_outcome_store, open_store
from tests.test_serving.conftest import fresh_declarations

SPLIT_24H = "consignee_parcels_24h"


@pytest.fixture(scope="module")
def runtimes(real_pipeline, tmp_path_factory):
    """Three independently loaded champions (worker processes, in one process)."""
    tmp = tmp_path_factory.mktemp("live-runtimes")
    settings = load_settings(real_pipeline["params"])
    return lambda i: load_runtime(settings, real_pipeline["tracking_uri"], tmp / f"m{i}")


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """A new decision store of each kind: workers sharing a file, replicas sharing a server."""
    if request.param == "sqlite":
        return str(tmp_path / "audit.db")
    return request.getfixturevalue("postgres_url")


def _serve(runtime, store: DecisionStore, frame: pd.DataFrame):
    """One batch the way the service scores it: catch up, score, record, hand the batch back."""
    runtime.catch_up(store)
    batch = score_frame(frame.reset_index(drop=True), runtime)
    records = decision_records(batch, runtime)
    store.record(records)
    runtime.recorded(batch, records)
    return batch


def _feature(batch, name: str) -> np.ndarray:
    return batch.features.values[name]


def test_a_parcel_scored_on_one_worker_counts_on_the_next(runtimes, real_pipeline, location):
    worker_1, worker_2 = runtimes(1), runtimes(2)
    store_1, store_2 = open_store(location), open_store(location)
    try:
        parcels = fresh_declarations(real_pipeline["history"], 2, prefix="C")
        parcels["consignee_id"] = parcels["consignee_id"].iloc[0]
        t0 = pd.Timestamp("2026-03-10 10:00", tz="UTC")
        parcels["declared_at"] = [t0, t0 + pd.Timedelta(minutes=5)]
        _serve(worker_1, store_1, parcels.head(1))
        seen = _serve(worker_2, store_2, parcels.tail(1))
        alone = score_frame(parcels.tail(1).reset_index(drop=True), runtimes(3))
        assert _feature(seen, SPLIT_24H)[0] == _feature(alone, SPLIT_24H)[0] + 1
        assert len(worker_2.live) == 1 and worker_2.log_seq == 1
        # worker 1 appends its own batch and reads worker 2's from the log (its own decision,
        # also in the log, is skipped): each declaration counted once
        assert worker_1.catch_up(store_1) == 2 and worker_1.catch_up(store_1) == 0
        assert len(worker_1.live) == 2
        again = score_frame(parcels.tail(1).reset_index(drop=True), worker_1)
        assert _feature(again, SPLIT_24H)[0] == _feature(seen, SPLIT_24H)[0]
    finally:
        store_1.close()
        store_2.close()


def test_a_served_snapshot_holds_its_events_in_its_indexes_only(runtimes, tmp_path):
    """load_runtime lets the snapshot's entity tables go of the events its indexes hold: a
    served snapshot is never saved, and saving it is refused."""
    from features.errors import ParcelriskError

    runtime = runtimes(9)
    snapshot = runtime.live.snapshot
    part = snapshot.parts["entity_history"]
    assert all(t.released and len(t.decl_codes) == 0 for t in part.tables.values())
    assert len(part.merged.declarations) > 0
    with pytest.raises(ParcelriskError, match="loaded to serve"):
        snapshot.save(tmp_path / "state")


def test_store_since_reads_the_log_in_sequence(runtimes, real_pipeline, tmp_path):
    store = SqliteDecisionStore(tmp_path / "audit.db")
    try:
        assert store.since(0) == []
        runtime = runtimes(4)
        fresh = fresh_declarations(real_pipeline["history"], 5, prefix="S")
        _serve(runtime, store, fresh.head(3))
        _serve(runtime, store, fresh.tail(2))
        rows = store.since(0)
        assert [seq for seq, _ in rows] == [1, 2, 3, 4, 5]
        assert [seq for seq, _ in store.since(3)] == [4, 5]
        assert '"declaration_id": "S000003"' in rows[3][1]
        assert isinstance(store, DecisionStore)
    finally:
        store.close()


def test_chunk_size_does_not_change_results(runtimes, real_pipeline, tmp_path):
    fresh = fresh_declarations(real_pipeline["history"], 60, prefix="K")
    fresh["consignee_id"] = fresh["consignee_id"].iloc[:6].tolist() * 10  # repeat customers
    source = tmp_path / "in.parquet"
    fresh.sample(frac=1.0, random_state=2).to_parquet(source)  # not in time order
    vectors, names = {}, []
    for i, chunk_size in enumerate((1, 7, 60)):
        runtime = runtimes(10 + i)
        names = list(runtime.model.manifest.names)
        store = SqliteDecisionStore(tmp_path / f"audit-{chunk_size}.db")
        try:
            out = tmp_path / f"out-{chunk_size}.parquet"
            score_file(source, out, runtime, chunk_size=chunk_size, store=store, progress=False)
            result = pd.read_parquet(out)
            vectors[chunk_size] = np.stack(
                [store.get(d)[0].feature_vector for d in result["decision_id"]]
            )
            ids = result["declaration_id"].tolist()
        finally:
            store.close()
        assert ids == pd.read_parquet(source)["declaration_id"].tolist()  # the file's order
    assert np.array_equal(vectors[1], vectors[7], equal_nan=True)
    assert np.array_equal(vectors[1], vectors[60], equal_nan=True)
    split = vectors[1][:, names.index(SPLIT_24H)]
    assert split.max() >= 9  # the repeat customers' parcels did see each other


def test_a_bad_output_name_or_an_empty_file_records_nothing(runtimes, real_pipeline, tmp_path):
    from features.errors import ParcelriskError

    fresh = fresh_declarations(real_pipeline["history"], 20, prefix="OUT")
    source, empty = tmp_path / "in.parquet", tmp_path / "empty.parquet"
    fresh.to_parquet(source)
    fresh.head(0).to_parquet(empty)
    runtime = runtimes(20)
    store = SqliteDecisionStore(tmp_path / "audit.db")
    try:
        with pytest.raises(ParcelriskError, match=r"--out .*x\.json: use a \.csv or \.parquet"):
            score_file(source, tmp_path / "x.json", runtime, store=store, progress=False)
        with pytest.raises(ParcelriskError, match="no declarations to score"):
            score_file(empty, tmp_path / "out.csv", runtime, store=store, progress=False)
        assert store.count() == 0 and len(runtime.live) == 0
        assert not (tmp_path / "x.json").exists() and not (tmp_path / "out.csv").exists()
    finally:
        store.close()


def test_an_inspection_result_moves_the_sellers_history_from_its_time(
    runtimes, real_pipeline, location, tmp_path
):
    """A result stored for a scored parcel enters every worker's live state at ``inspected_at``:
    the seller's next parcel, declared after it, counts one more inspection and offence."""
    from serving.outcomes import store_outcomes

    worker_1, worker_2 = runtimes(5), runtimes(6)
    store = open_store(location)
    results = open_outcome_store(location, store)
    try:
        parcels = fresh_declarations(real_pipeline["history"], 3, prefix="R")
        parcels["seller_id"] = parcels["seller_id"].iloc[0]
        t0 = pd.Timestamp("2026-03-10 10:00", tz="UTC")
        parcels["declared_at"] = [t0, t0 + pd.Timedelta(hours=5), t0 + pd.Timedelta(hours=1)]
        _serve(worker_1, store, parcels.head(1))
        inspected = t0 + pd.Timedelta(hours=2)
        stored = store_outcomes(
            results,
            pd.DataFrame(
                [
                    {
                        "declaration_id": parcels["declaration_id"].iloc[0],
                        "inspected_at": inspected.isoformat(),
                        "illicit": "true",
                        "offence_type": "undervaluation",
                        "revenue_recovered": "40",
                    }
                ]
            ),
            source="test",
        )
        assert stored["stored"] == 1
        before = score_frame(parcels.iloc[[1]].reset_index(drop=True), worker_2)
        worker_2.catch_up(store, results)
        assert worker_2.results_seq == 1
        after = score_frame(parcels.iloc[[1]].reset_index(drop=True), worker_2)
        for name in ("seller_n_inspected", "seller_n_illicit"):
            assert _feature(after, name)[0] == _feature(before, name)[0] + 1, name
        # a parcel declared before the result was recorded does not see it
        earlier_before = score_frame(parcels.iloc[[2]].reset_index(drop=True), worker_1)
        worker_1.catch_up(store, results)
        earlier_after = score_frame(parcels.iloc[[2]].reset_index(drop=True), worker_1)
        assert (
            _feature(earlier_after, "seller_n_inspected")[0]
            == _feature(earlier_before, "seller_n_inspected")[0]
        )
        assert worker_1.catch_up(store, results) == 0 and worker_1.results_seq == 1
        # the offline path (`parcelrisk score --audit-db`) reads them too
        offline = runtimes(7)
        parcels.iloc[[1]].assign(declaration_id="R-OFFLINE").to_parquet(tmp_path / "in.parquet")
        score_file(
            tmp_path / "in.parquet",
            tmp_path / "out.csv",
            offline,
            store=store,
            results=results,
            progress=False,
        )
        assert offline.results_seq == 1
        decision_id = pd.read_csv(tmp_path / "out.csv")["decision_id"].iloc[0]
        record, _ = store.get(decision_id)
        assert record.known_results_seq == 1
    finally:
        results.close()
        store.close()


def test_a_parcel_declared_at_the_snapshots_last_instant_is_replayed(
    runtimes, real_pipeline, tmp_path
):
    """A declaration at the instant of the history's last one that the history does not hold
    (a date-only export cut part-way through a day: the rest of the day shares its local
    midnight) enters the live state, and a worker started later replays it from the log."""
    store = open_store(str(tmp_path / "audit.db"))
    try:
        worker_1 = runtimes(1)
        last = worker_1.live.snapshot.last_declared_us
        assert last is not None and last < worker_1.live.snapshot.cutoff_us
        parcels = fresh_declarations(real_pipeline["history"], 2, prefix="M")
        parcels["consignee_id"] = parcels["consignee_id"].iloc[0]
        t0 = pd.Timestamp(last * 1000, tz="UTC")
        parcels["declared_at"] = [t0, t0 + pd.Timedelta(minutes=5)]
        first = _serve(worker_1, store, parcels.head(1))
        assert not first.warnings[0]  # its history is the batch one: nothing to warn
        alone = score_frame(parcels.tail(1).reset_index(drop=True), runtimes(3))
        worker_2 = runtimes(2)  # started after it was decided: replays the log
        seen = _serve(worker_2, store, parcels.tail(1))
        assert _feature(seen, SPLIT_24H)[0] == _feature(alone, SPLIT_24H)[0] + 1
        assert len(worker_2.live) == 1
    finally:
        store.close()


def test_a_backlog_declared_before_the_snapshot_counts_on_every_worker_and_after_a_restart(
    runtimes, real_pipeline, location
):
    """Five parcels of one seller to one consignee, declared hours before the history's last
    declaration but first sent now (a backlog re-sent after an outage): a later parcel of the
    pair sees them on the worker that scored them, on a sibling, and on a worker started
    afterwards (replayed from the log), as the batch build over the same history would; the
    backlog itself gets the warning that its own history is the cutoff's."""
    store = open_store(location)
    try:
        worker_1, worker_2 = runtimes(1), runtimes(2)
        last = pd.Timestamp(worker_1.live.snapshot.last_declared_us * 1000, tz="UTC")
        parcels = fresh_declarations(real_pipeline["history"], 6, prefix="BACKLOG")
        parcels["seller_id"] = parcels["seller_id"].iloc[0]
        parcels["consignee_id"] = parcels["consignee_id"].iloc[0]
        parcels["declared_at"] = [last - pd.Timedelta(hours=6 - i) for i in range(5)] + [
            last + pd.Timedelta(hours=1)
        ]
        backlog, later = parcels.head(5), parcels.tail(1)
        alone = score_frame(later.reset_index(drop=True), runtimes(3))
        scored = _serve(worker_1, store, backlog)
        assert all("entity-state cutoff" in " ".join(w) for w in scored.warnings)
        for worker in (worker_1, worker_2, runtimes(4)):  # the last one replays the log
            seen = _serve(worker, store, later.assign(declaration_id=f"AFTER{id(worker)}"))
            for name in ("seller_n_7d", "consignee_n_7d", SPLIT_24H):
                assert _feature(seen, name)[0] == _feature(alone, name)[0] + 5, name
    finally:
        store.close()


def test_a_corrected_result_moves_a_running_worker_and_a_new_one_alike(
    runtimes, real_pipeline, location
):
    """An offence found, then overturned on appeal (a correction): a worker that counted the
    first result takes it back at the next catch-up, and a worker started afterwards (replaying
    the store) counts the corrected one only; both give the seller's next parcel the features
    it had before any result but for one clean inspection."""
    from serving.outcomes import store_outcomes

    running, fresh = runtimes(7), runtimes(8)
    store = open_store(location)
    results = open_outcome_store(location, store)
    try:
        parcels = fresh_declarations(real_pipeline["history"], 2, prefix="FIX")
        parcels["seller_id"] = parcels["seller_id"].iloc[0]
        t0 = pd.Timestamp("2026-03-11 10:00", tz="UTC")
        parcels["declared_at"] = [t0, t0 + pd.Timedelta(days=1)]
        _serve(running, store, parcels.head(1))
        probe = parcels.iloc[[1]].reset_index(drop=True)
        running.catch_up(store, results)
        blank = score_frame(probe, running)
        result = {
            "declaration_id": parcels["declaration_id"].iloc[0],
            "inspected_at": (t0 + pd.Timedelta(hours=2)).isoformat(),
            "illicit": "true",
            "offence_type": "undervaluation",
            "revenue_recovered": "40",
        }
        store_outcomes(results, pd.DataFrame([result]), source="test")
        running.catch_up(store, results)
        found = score_frame(probe, running)
        assert _feature(found, "seller_n_illicit")[0] == _feature(blank, "seller_n_illicit")[0] + 1
        overturned = {
            **result,
            "illicit": "false",
            "offence_type": "",
            "revenue_recovered": "",
            "correction": "appeal upheld",
        }
        assert store_outcomes(results, pd.DataFrame([overturned]), source="test")["corrected"] == 1
        running.catch_up(store, results)
        fresh.catch_up(store, results)  # the first: a replay of the whole store
        for worker in (running, fresh):
            after = score_frame(probe, worker)
            for name, moved in (("seller_n_inspected", 1), ("seller_n_illicit", 0)):
                assert _feature(after, name)[0] == _feature(blank, name)[0] + moved, name
            assert _feature(after, "seller_revenue_recovered_eur")[0] == pytest.approx(
                _feature(blank, "seller_revenue_recovered_eur")[0]
            )
    finally:
        results.close()
        store.close()


def test_a_champion_serving_past_its_refit_period_values_parcels_as_batch_does(
    runtimes, real_pipeline, tmp_path
):
    """A month of declarations after the champion's cutoff, scored offline into a store: the
    reference prices and description models are refitted every period as the batch build over
    history + that month refits them (``features.pipeline.refit``), so the stored vectors hold
    batch's valuation and text features, not the snapshot's frozen ones."""
    from features.intake.contract import DECLARATION_COLUMNS
    from features.intake.io import read_declarations
    from features.pipeline.prepare import period_of
    from tests.test_features.test_build import _batch_features_with

    history, contract = read_declarations(
        real_pipeline["root"] / "raw" / "declarations.parquet", with_outcomes=True
    )
    month = history[history["declared_at"] >= history["declared_at"].max() - pd.Timedelta(days=30)]
    later = month[list(DECLARATION_COLUMNS)].copy()
    later["declared_at"] += pd.Timedelta(days=31)  # after the cutoff, across refit periods
    later["declaration_id"] = [f"M{i:06d}" for i in range(len(later))]
    runtime = runtimes(30)
    settings = load_settings(real_pipeline["params"])
    days = settings.features.refit_period_days
    t_us = later["declared_at"].astype("datetime64[us, UTC]").astype("int64").to_numpy()
    assert len(np.unique(period_of(t_us, days))) >= 3
    source, out = tmp_path / "later.parquet", tmp_path / "scored.parquet"
    later.sample(frac=1.0, random_state=5).to_parquet(source)
    store = SqliteDecisionStore(tmp_path / "audit.db")
    try:
        score_file(source, out, runtime, chunk_size=500, store=store, progress=False)
        result = pd.read_parquet(out)
        vectors = np.stack([store.get(d)[0].feature_vector for d in result["decision_id"]])
    finally:
        store.close()
    manifest = runtime.model.manifest
    names = [s.name for s in manifest.features if s.group in ("valuation", "weight", "text")]
    assert "unit_value_ratio_hs6" in names and "text_p_illicit" in names
    batch = _batch_features_with(
        history, later, contract, manifest.categories, params=settings.features
    ).set_index("declaration_id")
    expected = batch.loc[result["declaration_id"], names].to_numpy(float)
    served = vectors[:, [manifest.names.index(n) for n in names]]
    same = np.isclose(served, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert same.all(), {
        n: int((~same[:, i]).sum()) for i, n in enumerate(names) if not same[:, i].all()
    }
    assert runtime.live.state.parts["valuation"].refit_count >= 2  # a fit per later period
    assert runtime.live.refit_count >= 4  # valuation and text (parcelrisk_live_refits)
