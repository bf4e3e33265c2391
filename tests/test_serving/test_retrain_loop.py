"""The analyst's loop through the CLI, as the README gives it: arrivals scored into the
decision store, their inspection results coming back as a file, the next history exported on
the champion's (``history export --base``), then gate, features, train and the champion gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from features.intake.contract import DECLARATION_COLUMNS
from features.intake.io import read_declarations
from tests.test_serving.conftest import fresh_declarations

ARRIVALS = 400


def _run(*args: str) -> str:
    from serving.main import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0 or args[0] == "promote", (args, result.output, result.exception)
    return result.output


def test_results_that_come_back_train_the_next_challenger(real_pipeline, tmp_path: Path) -> None:
    root, params = real_pipeline["root"], str(real_pipeline["params"])
    # the registry copied: this test's challenger must not become the session's champion
    shutil.copy(root / "mlflow.db", tmp_path / "mlflow.db")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = root / "raw" / "declarations.parquet"
    arrivals = fresh_declarations(real_pipeline["history"], ARRIVALS, prefix="LOOP")
    arrivals[list(DECLARATION_COLUMNS)].to_parquet(tmp_path / "arrivals.parquet")
    audit = str(tmp_path / "audit.db")

    # 1. the clearance side: every arrival decided and recorded
    _run(
        "score", str(tmp_path / "arrivals.parquet"), "--out", str(tmp_path / "scored.csv"),
        "--params", params, "--tracking-uri", tracking, "--audit-db", audit,
    )  # fmt: skip
    scored = pd.read_csv(tmp_path / "scored.csv")
    # 2. the inspectors' results: the red and yellow parcels and one in ten of the others
    rng = np.random.default_rng(1)
    inspected = scored[(scored["lane"] != "green") | (rng.uniform(size=len(scored)) < 0.1)]
    declared = arrivals.set_index("declaration_id")["declared_at"]
    illicit = rng.uniform(size=len(inspected)) < 0.4
    results = pd.DataFrame(
        {
            "declaration_id": inspected["declaration_id"],
            "inspected_at": declared.loc[inspected["declaration_id"]].to_numpy()
            + pd.Timedelta(hours=20),
            "illicit": illicit,
            "offence_type": np.where(illicit, "undervaluation", None),
            "revenue_recovered": np.where(illicit, 25.0, np.nan),
        }
    )
    results.to_csv(tmp_path / "results.csv", index=False)
    stored = json.loads(_run("outcomes", "ingest", str(tmp_path / "results.csv"), "--db", audit))
    assert stored["stored"] == len(results) > 0

    # 3. the next history: the champion's, then what was scored since
    export = ["history", "export", "--db", audit, "--base", str(base)]
    summary = json.loads(_run(*export, "--out", str(tmp_path / "next.parquet")))
    history, _ = read_declarations(tmp_path / "next.parquet")
    base_rows = len(real_pipeline["history"])
    assert summary["declarations"] == len(history) == base_rows + ARRIVALS
    assert history["declaration_id"].tail(ARRIVALS).str.startswith("LOOP").all()
    came_back = history.set_index("declaration_id").loc[results["declaration_id"]]
    assert came_back["inspected"].all()
    assert came_back["illicit"].astype(bool).tolist() == illicit.tolist()

    # 4. gate, features, train, champion gate: the challenger is judged against the champion
    _run("validate", str(tmp_path / "next.parquet"), "--params", params, "--no-cross-check")
    _run(
        "features", "build", "--declarations", str(tmp_path / "next.parquet"),
        "--out", str(tmp_path / "processed"), "--params", params, "--quiet",
    )  # fmt: skip
    # the snapshot knows the store's last result its history holds: a result stored after
    # the export is appended by the live state whenever it was inspected
    from features.pipeline.build import STATE_DIR
    from features.pipeline.snapshot import EntityState

    assert summary["results_up_to_seq"] == len(results)
    state = EntityState.load(tmp_path / "processed" / STATE_DIR)
    assert state.results_seq == len(results)
    # results recorded after the history's last declaration ride with the snapshot; the store
    # the history came from hands the same ones over again on replay: none counts twice
    later = history["inspected_at"] > history["declared_at"].max()
    assert len(state.pending_results) == later.sum() > 0
    assert {r["declaration"]["declaration_id"] for r in state.pending_results} >= set(
        results.loc[results["inspected_at"] > history["declared_at"].max(), "declaration_id"]
    )
    _replay_adds_nothing_carried(state, audit)
    _run(
        "train", "--features", str(tmp_path / "processed"), "--params", params,
        "--tracking-uri", tracking, "--quiet", "--metrics-out", str(tmp_path / "train.json"),
    )  # fmt: skip
    _run(
        "promote", "--params", params, "--tracking-uri", tracking,
        "--report", str(tmp_path / "promotion.json"),
    )  # fmt: skip
    decision = json.loads((tmp_path / "promotion.json").read_text())
    assert decision["champion_before"] == real_pipeline["version"]
    assert decision["challenger"] == str(int(real_pipeline["version"]) + 1)
    assert decision["outcome"] in ("promoted", "refused") and decision["comparison"]


def _replay_adds_nothing_carried(state, audit: str) -> None:
    """A new champion's first catch-up on this snapshot: the stored results it replays are
    the history's own, those recorded after its cutoff carried by the snapshot (matched to
    the microsecond, label and cents) and the others held by it."""
    from features.pipeline.live import LiveState
    from serving.outcome_store import SqliteOutcomeStore
    from serving.scoring import outcome_events, results_to_replay

    live = LiveState(state)
    store = SqliteOutcomeStore(audit, read_only=True)
    rows = results_to_replay(store, live.appends_from_us, state.results_seq)
    carried = {r["declaration"]["declaration_id"] for r in state.pending_results}
    assert rows and {json.loads(r.declaration_json)["declaration_id"] for r in rows} <= carried
    assert live.append_outcomes(*outcome_events(rows, state.contract)) == 0
