"""A period of live traffic scored by the champion, with the inspection results that came back.

``score_live_period(sandbox)`` takes the traffic a sandbox (``models.sandbox``) saved after its
cut and sends it, day by day in ``declared_at`` order and requests of ``REQUEST_SIZE``, through
the service worker's per-batch path in process (``runtime.catch_up`` -> ``score_frame`` ->
``decision_records`` -> ``store.record`` -> ``runtime.recorded``, as
``serving.service._score_declarations`` without HTTP). Red-lane and exploration parcels are
inspected: the physical exam finds the generator's truth, and the result is posted at the end of
the simulated day it falls due in (``inspected_at``), through the check ``POST /outcomes`` runs
(``serving.outcomes.store_outcomes``). Results due after the period's last day are never posted:
the store ends as a service's would, with the latest exams still out.

The decision store is ``root/live/decisions.db``; ``root/live/scored.json`` marks it complete, so
later calls return at once, and an interrupted run is started over. ``benchmarks/loop.py`` runs
its arms on the same pieces (``inspection_results``, ``post_due_results``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.sandbox import Sandbox
    from serving.outcome_store import SqliteOutcomeStore

log = logging.getLogger(__name__)

STORE_FILE = "decisions.db"  # under root/live
SCORED_FILE = "scored.json"
MODEL_DIR = "model"  # the champion's bundle and entity state, downloaded once
REQUEST_SIZE = 100  # declarations per request: the service's batches are about this size
RESULT_SOURCE = "sandbox:inspections"


def inspection_results(
    lanes: np.ndarray, exploration: np.ndarray, truth: pd.DataFrame, inspected_at: pd.Series
) -> pd.DataFrame:
    """What the physical exams of a request's red and exploration parcels will report.

    ``truth`` (the generator's: declaration_id, illicit, offence_type, revenue_at_stake) and
    ``inspected_at`` are row-aligned with ``lanes``; yellow is a documentary check and reports
    nothing. Columns: those of ``POST /outcomes``.
    """
    selected = np.flatnonzero((np.asarray(lanes) == "red") | np.asarray(exploration, dtype=bool))
    truth = truth.iloc[selected]
    illicit = truth["illicit"].to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "declaration_id": truth["declaration_id"].to_numpy(),
            "inspected_at": inspected_at.iloc[selected].to_numpy(),
            "illicit": illicit,
            "offence_type": truth["offence_type"].where(illicit, None).to_numpy(),
            "revenue_recovered": np.where(illicit, truth["revenue_at_stake"], np.nan),
        }
    )


def post_due_results(
    outcomes: SqliteOutcomeStore,
    pending: pd.DataFrame,
    clock: pd.Timestamp,
    *,
    source: str = RESULT_SOURCE,
) -> tuple[pd.DataFrame, int]:
    """Post the results of ``pending`` whose exam reported before ``clock``, through the
    ``POST /outcomes`` check; returns the results still to come and how many were stored."""
    from serving.outcomes import store_outcomes

    if pending.empty:
        return pending, 0
    due = (pending["inspected_at"] < clock).to_numpy()
    if not due.any():
        return pending, 0
    stored = store_outcomes(outcomes, pending.loc[due], source=source, now=clock.to_pydatetime())
    return pending.loc[~due].reset_index(drop=True), stored["stored"]


def score_live_period(sandbox: Sandbox, *, request_size: int = REQUEST_SIZE) -> Path:
    """Score the sandbox's traffic through the worker's path (once) and return the store file.

    Idempotent like ``build_sandbox``: a completed store is returned as it is (under the
    sandbox's lock, so notebooks started together score once); a store left incomplete by an
    interrupted run is removed and scored again. Needs the audit key like ``parcelrisk serve``.
    """
    from models.sandbox import locked

    live_dir = sandbox.traffic.parent
    db = live_dir / STORE_FILE
    with locked(sandbox.root):
        done = live_dir / SCORED_FILE
        if done.exists() and db.exists():
            return db
        for stale in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", ".lock"))):
            stale.unlink(missing_ok=True)
        summary = _score(sandbox, db, request_size)
        done.write_text(json.dumps(summary, indent=1))
        return db


def _score(sandbox: Sandbox, db: Path, request_size: int) -> dict[str, Any]:
    from features.intake.io import read_declarations
    from serving.outcome_store import SqliteOutcomeStore
    from serving.scoring import decision_records, load_runtime, score_frame
    from serving.sqlite_store import SqliteDecisionStore

    # one line per command, not a progress bar per bundle file
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = sandbox.settings()
    runtime = load_runtime(settings, sandbox.tracking_uri, db.parent / MODEL_DIR)
    traffic, _ = read_declarations(sandbox.traffic)
    truth = pd.read_parquet(sandbox.traffic_truth)
    if not (truth["declaration_id"].to_numpy() == traffic["declaration_id"].to_numpy()).all():
        raise AssertionError("the sandbox's traffic and its truth are not row-aligned")
    inspected_at = pd.to_datetime(truth["inspected_at"], utc=True)
    cut = pd.Timestamp(sandbox.cut)
    day_of = ((traffic["declared_at"] - cut) // pd.Timedelta(days=1)).to_numpy()
    store, outcomes = SqliteDecisionStore(db), SqliteOutcomeStore(db)
    none = np.array([], dtype=bool)
    pending = inspection_results(none, none, truth.iloc[:0], inspected_at.iloc[:0])
    posted = 0
    try:
        for day in range(int(day_of.max()) + 1):
            rows = np.flatnonzero(day_of == day)
            found = []
            for lo in range(0, len(rows), request_size):
                part = rows[lo : lo + request_size]
                runtime.catch_up(store, outcomes)
                batch = score_frame(traffic.iloc[part].reset_index(drop=True), runtime)
                records = decision_records(batch, runtime)
                store.record(records)
                runtime.recorded(batch, records)
                found.append(
                    inspection_results(
                        batch.lanes, batch.exploration, truth.iloc[part], inspected_at.iloc[part]
                    )
                )
            pending = pd.concat([pending, *found], ignore_index=True)
            pending, stored = post_due_results(outcomes, pending, cut + pd.Timedelta(days=day + 1))
            posted += stored
    finally:
        store.close()
        outcomes.close()
    log.info("live period: %d decisions, %d results posted", len(traffic), posted)
    return {
        "model_version": runtime.model_version,
        "decisions": len(traffic),
        "results_posted": posted,
        "results_not_yet_due": len(pending),
        "days": int(day_of.max()) + 1,
    }
