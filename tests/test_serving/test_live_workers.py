"""The live entity state across real worker processes: `parcelrisk serve --workers 2`.

A parcel scored by one worker counts in the history of the next parcel whichever worker scores
it (the other one reads it from the decision store before its next batch). Replayed days of
traffic, scored in time order across both workers, are stored with the features batch gives
them over history plus those days (the families batch refits per period: as the snapshot fitted
them, see REFIT_FAMILIES).

The tests share one server (module scope; a start costs ~15 s) and ask xdist for one worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.mmap_dict import MmapedDict

from features.families import family_specs
from features.intake.contract import DECLARATION_COLUMNS
from features.intake.io import read_declarations
from features.params import load_settings
from features.pipeline.family import SpecContext
from features.pipeline.manifest import FeatureManifest
from features.pipeline.online import online_features
from features.pipeline.snapshot import EntityState
from serving.scoring import load_runtime, score_frame
from serving.sqlite_store import SqliteDecisionStore
from tests.test_features.test_build import _batch_features_with
from tests.test_features.test_live_state import _assert_parity
from tests.test_serving.conftest import (
    AUDITOR_KEY,
    SCORER_KEY,
    fresh_declarations,
    wait_until_serving,
)

pytestmark = pytest.mark.xdist_group("serving_live_workers")

SPLIT_24H = "consignee_parcels_24h"
DECISIONS_SAMPLE = "parcelrisk_decisions_total"  # serving.metrics.DECISIONS
INITIALIZED = "Service parcelrisk initialized"  # BentoML logs it per worker, after __init__


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _payload(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


@dataclass(frozen=True)
class Server:
    url: str
    audit_db: Path
    prometheus_dir: Path  # one metrics file per process and kind: counter_<pid>.db ...
    model_dir: Path  # one champion copy per worker process: worker-<pid>/


@contextlib.contextmanager
def serve_two_workers(real_pipeline: dict, tmp: Path) -> Iterator[Server]:
    """``parcelrisk serve --workers 2`` on the pipeline's champion, both workers loaded; stopped
    (server and workers) on exit. Shared with the auditor pages' browser test."""
    port = _free_port()
    env = {
        **os.environ,
        "PARCELRISK_API_KEYS": f"scorer:{SCORER_KEY},auditor:{AUDITOR_KEY}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "BENTOML_HOME": str(tmp / "bentoml"),
        # the workers' metric files where this test reads them (else a fresh directory)
        "PARCELRISK_METRICS_DIR": str(tmp / "metrics"),
    }
    env.pop("PARCELRISK_WORKERS", None)
    server = Server(
        f"http://127.0.0.1:{port}",
        tmp / "a.db",
        tmp / "metrics",
        tmp / "models",
    )
    command = [
        str(Path(sys.executable).parent / "parcelrisk"),
        "serve",
        *("--params", str(real_pipeline["params"]), "--port", str(port), "--workers", "2"),
        *("--tracking-uri", real_pipeline["tracking_uri"], "--audit-db", str(server.audit_db)),
        *("--model-dir", str(server.model_dir)),
    ]
    log = (tmp / "serve.log").open("w")
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        # /readyz answers from one worker: wait for both to have loaded the champion
        wait_until_serving(
            server.url,
            process,
            Path(log.name),
            ready=lambda: Path(log.name).read_text().count(INITIALIZED) == 2,
        )
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its workers
            process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def two_workers(real_pipeline, tmp_path_factory) -> Iterator[Server]:
    with serve_two_workers(real_pipeline, tmp_path_factory.mktemp("two-workers")) as server:
        yield server


def test_a_parcel_scored_on_one_worker_counts_on_both(two_workers, real_pipeline, tmp_path):
    parcels = fresh_declarations(real_pipeline["history"], 17, prefix="W")
    parcels["consignee_id"] = parcels["consignee_id"].iloc[0]
    first = pd.Timestamp("2026-03-10 10:00", tz="UTC")
    parcels["declared_at"] = [first] + [first + pd.Timedelta(minutes=5)] * 16
    # what the next parcels see without the first one: the snapshot alone
    runtime = load_runtime(
        load_settings(real_pipeline["params"]), real_pipeline["tracking_uri"], tmp_path / "m"
    )
    runtime.live = None
    alone = score_frame(parcels.iloc[1:].reset_index(drop=True), runtime).features.values[SPLIT_24H]

    scorer, auditor = {"X-API-Key": SCORER_KEY}, {"X-API-Key": AUDITOR_KEY}
    first_answer = httpx.post(
        f"{two_workers.url}/score", json={"declarations": _payload(parcels.head(1))}, headers=scorer
    )
    assert first_answer.status_code == 200, first_answer.text
    seen = []
    # one request per connection: a kept-alive connection would stay on one worker, new ones
    # are spread over both by the shared socket
    for i in range(1, len(parcels)):
        answer = httpx.post(
            f"{two_workers.url}/score",
            json={"declarations": _payload(parcels.iloc[[i]])},
            headers=scorer,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        decision_id = answer.json()["decisions"][0]["decision_id"]
        stored = httpx.get(
            f"{two_workers.url}/decision", params={"decision_id": decision_id}, headers=auditor
        )
        seen.append(stored.json()["features"][SPLIT_24H])
    # the later parcels share one declared_at: they do not see each other, only the first one
    assert seen == [value + 1 for value in alone.tolist()], (seen, alone)


def test_an_auditors_what_if_sees_what_either_worker_just_decided(two_workers, real_pipeline):
    """A what-if explanation of a seller's next parcel counts the parcels of that seller just
    scored, whichever worker answers it: a worker that had scored nothing since explained it
    from a stale live state (0 of 3; risk 0.27 against the 0.17 /score gave; probe 27)."""
    parcels = fresh_declarations(real_pipeline["history"], 4, prefix="WHATIF")
    parcels["seller_id"] = "SELLER-WHATIF-NEW"
    first = pd.Timestamp("2026-03-10 10:00", tz="UTC")
    parcels["declared_at"] = [first + pd.Timedelta(minutes=m) for m in (0, 1, 2, 30)]
    scorer, auditor = {"X-API-Key": SCORER_KEY}, {"X-API-Key": AUDITOR_KEY}
    answer = httpx.post(
        f"{two_workers.url}/score", json={"declarations": _payload(parcels.head(3))}, headers=scorer
    )
    assert answer.status_code == 200, answer.text
    (asked,) = _payload(parcels.tail(1))
    counts = []
    for _ in range(6):  # new connections: both workers answer some
        r = httpx.post(
            f"{two_workers.url}/explain", json={"declaration": asked}, headers=auditor, timeout=30
        )
        assert r.status_code == 200, r.text
        values = {c["feature"]: c["value"] for c in r.json()["contributions"]}
        counts.append(values["seller_n_7d"])
    assert counts == [3] * 6, counts


# --- parity: days of traffic through both workers against batch features ---------------------

# Families batch refits every refit period (reference prices, text models): the live state keeps
# the snapshot's fit (features.pipeline.live). The champion's cutoff is the end of its history,
# here one second before a refit period starts, so batch refits them for every replayed day.
REFIT_FAMILIES = ("valuation", "hs_heading_value", "text")


def _replayed_days(history: pd.DataFrame, cutoff: pd.Timestamp, days: int) -> pd.DataFrame:
    """The last ``days`` of history declared again ``days`` later under new ids: after the
    cutoff, with the same sellers, consignees and daily rhythm as the history just before it."""
    shift = pd.Timedelta(days=days)
    recent = history[history["declared_at"] > cutoff - shift]
    out = recent[list(DECLARATION_COLUMNS)].assign(declared_at=recent["declared_at"] + shift)
    out["declaration_id"] = [f"R{i:06d}" for i in range(len(out))]
    return out.sort_values(["declared_at", "declaration_id"], kind="stable").reset_index(drop=True)


def _request_sizes(n: int, seed: int) -> list[int]:
    """Single declarations mixed with batches of up to 50, covering ``n`` rows."""
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < n:
        size = 1 if rng.uniform() < 0.4 else int(rng.integers(2, 51))
        sizes.append(min(size, n - sum(sizes)))
    return sizes


def _decisions_by_process(prometheus_dir: Path) -> dict[int, float]:
    """parcelrisk_decisions_total per process id, from each process's own metrics file."""
    out = {}
    for path in prometheus_dir.glob("counter_*.db"):
        samples = MmapedDict.read_all_values_from_file(str(path))
        total = sum(v for key, v, *_ in samples if json.loads(key)[1] == DECISIONS_SAMPLE)
        out[int(path.stem.removeprefix("counter_"))] = total
    return out


def _live_declarations_by_process(prometheus_dir: Path) -> dict[int, float]:
    """parcelrisk_live_declarations per process id (serving.metrics.LIVE_DECLARATIONS)."""
    out = {}
    for path in prometheus_dir.glob("gauge_liveall_*.db"):
        samples = MmapedDict.read_all_values_from_file(str(path))
        for key, value, *_ in samples:
            if json.loads(key)[1] == "parcelrisk_live_declarations":
                out[int(path.stem.removeprefix("gauge_liveall_"))] = value
    return out


def _stored_features(audit_db: Path, decision_ids: list[str], names: list[str]) -> pd.DataFrame:
    """The model input stored with each decision, one row per decision (``names`` order)."""
    store = SqliteDecisionStore(audit_db)
    try:
        rows, declaration_ids = [], []
        for decision_id in decision_ids:
            found = store.get(decision_id)
            assert found is not None, decision_id
            record, intact = found
            assert intact, decision_id
            rows.append(record.feature_vector)
            declaration_ids.append(record.declaration_id)
    finally:
        store.close()
    return pd.DataFrame(np.vstack(rows), columns=names).assign(declaration_id=declaration_ids)


def _refit_features(state: EntityState) -> set[str]:
    ctx = SpecContext(
        state.params, state.contract, state.manifest.inputs, state.manifest.categories
    )
    return {
        s.name
        for family, specs in family_specs(ctx)
        if family.name in REFIT_FAMILIES
        for s in specs
    }


def _model_inputs(
    values: Mapping[str, np.ndarray], ids: pd.Index, manifest: FeatureManifest
) -> pd.DataFrame:
    """Feature arrays as the model sees them: its manifest's columns, categories as codes
    (unknown -> NaN), through the same ``matrix_of`` as scoring."""
    X = manifest.matrix_of(values, len(ids))
    return pd.DataFrame(X, columns=manifest.names, index=ids)


def _score_on(url: str, declarations: pd.DataFrame) -> list[dict]:
    """POST /score on a new connection (no client kept: the shared socket spreads them over
    both workers), answered 200; the decisions."""
    answer = httpx.post(
        f"{url}/score",
        json={"declarations": _payload(declarations)},
        headers={"X-API-Key": SCORER_KEY},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["decisions"]


def test_replayed_days_through_both_workers_store_the_batch_features(
    two_workers, real_pipeline, tmp_path
):
    runtime = load_runtime(
        load_settings(real_pipeline["params"]), real_pipeline["tracking_uri"], tmp_path / "m"
    )
    assert runtime.live is not None
    state, model = runtime.live.state, runtime.model
    history, contract = read_declarations(
        real_pipeline["root"] / "raw" / "declarations.parquet", with_outcomes=True
    )
    cutoff = state.cutoff
    assert cutoff == history["declared_at"].max() + pd.Timedelta(microseconds=1)
    new = _replayed_days(real_pipeline["history"], cutoff, days=3)
    assert 600 <= len(new) <= 1500 and new["declared_at"].min() > cutoff
    # the history's entities come back: most replayed parcels have a consignee seen before
    assert new["consignee_id"].isin(history["consignee_id"]).mean() > 0.5

    before = _decisions_by_process(two_workers.prometheus_dir)
    decision_ids, sizes, start = [], _request_sizes(len(new), seed=12), 0
    for size in sizes:
        chunk = new.iloc[start : start + size]
        # a new connection per request (no client kept): the shared socket spreads them over
        # both workers; each request is sent once the one before is answered, so recorded
        decisions = _score_on(two_workers.url, chunk)
        assert [d["declaration_id"] for d in decisions] == chunk["declaration_id"].tolist()
        decision_ids += [d["decision_id"] for d in decisions]
        start += size

    after = _decisions_by_process(two_workers.prometheus_dir)
    served = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    served = {pid: n for pid, n in served.items() if n}
    workers = {int(p.name.removeprefix("worker-")) for p in two_workers.model_dir.glob("worker-*")}
    assert len(served) == 2 and set(served) <= workers, (served, workers)
    assert sum(served.values()) == len(new)
    # each worker's live state holds both workers' declarations (but the last few batches,
    # taken in at its next catch-up), and says so on /metrics. A worker catches up when it
    # takes a request: one whose last came early holds only what was recorded by then (the
    # kernel spread the connections 389/1030 once), so a few one-parcel requests follow,
    # until each worker has taken one since
    live = _live_declarations_by_process(two_workers.prometheus_dir)
    last = new.iloc[[-1]]
    for tick in range(40):
        if all(live.get(pid, 0) >= len(new) // 2 for pid in served):
            break
        one = last.assign(
            declaration_id=f"TICK-{tick}",
            declared_at=last["declared_at"] + pd.Timedelta(seconds=tick + 1),
        )
        _score_on(two_workers.url, one)
        live = _live_declarations_by_process(two_workers.prometheus_dir)
    assert all(live.get(pid, 0) >= len(new) // 2 for pid in served), (live, len(new))

    # batch: the history plus the replayed days (its results recorded after the cutoff count
    # from their time: the snapshot carried them), the champion's categories with the settings
    # the champion's features were built with (params.yaml's, watchlist too)
    assert len(state.pending_results) == (history["inspected_at"] >= cutoff).sum() > 0
    batch = _batch_features_with(
        history, new, contract, state.manifest.categories, state.params
    ).set_index("declaration_id")
    ids = pd.Index(new["declaration_id"])
    names = model.manifest.names
    expected = _model_inputs(
        {n: batch.loc[ids, n].to_numpy(float) for n in names}, ids, model.manifest
    )
    # the refit families as the snapshot fitted them (a request the live layer adds nothing to)
    frozen = _model_inputs(online_features(new, state).values, ids, model.manifest)
    stored = _stored_features(two_workers.audit_db, decision_ids, names)
    assert stored["declaration_id"].tolist() == ids.tolist()

    # the snapshot alone (the last parcels without the days before them) is stale where the
    # live state is not: the parity below needs what both workers scored before each request
    late = new.tail(200)
    stale = _model_inputs(
        online_features(late, state).values, pd.Index(late["declaration_id"]), model.manifest
    )
    recent = [n for n in names if n.endswith("_parcels_72h")]
    assert recent and not np.array_equal(stale[recent], expected.loc[stale.index, recent])
    refit = _refit_features(state)
    assert refit & set(names)  # the comparison below holds some to the snapshot, not all
    _assert_parity(stored, expected, [n for n in names if n not in refit])
    _assert_parity(stored, frozen, [n for n in names if n in refit])

    # both workers appended to one tamper-evident chain: every decision in it, none broken
    from serving.audit.verify import verify_store

    store = SqliteDecisionStore(two_workers.audit_db)
    try:
        report = verify_store(store)
        assert report.intact and report.checked == store.count() >= len(decision_ids)
    finally:
        store.close()
