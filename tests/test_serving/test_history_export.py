"""`parcelrisk history export`: the scored declarations and their results, back into training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.intake.contract import OUTCOME_COLUMNS, RANDOM_SELECTION
from features.intake.io import read_declarations
from features.params import FeatureParams
from features.synthetic import SyntheticParams, generate
from serving.decision import DecisionRecord
from serving.outcomes import MANUAL_SELECTION, store_outcomes
from serving.scoring import declarations_as_json


def _records(declarations, exploration: np.ndarray, repeat: int = 0) -> list[DecisionRecord]:
    texts = declarations_as_json(
        declarations.drop(columns=[c for c in declarations if c in OUTCOME_COLUMNS])
    )
    return [
        DecisionRecord(
            decision_id=f"dec-{repeat}-{i}",
            scored_at=f"2026-0{7 + repeat}-01T00:00:00.000000+00:00",
            declaration_id=declaration_id,
            declaration_json=text,
            features=b"\x00" * 8,
            manifest_fingerprint="fp",
            model_name="parcel-risk",
            model_version=str(1 + repeat),
            thresholds_version="thr",
            lane_policy="{}",
            raw_score=0.0,
            risk=0.1,
            expected_revenue=0.0,
            lane="green",
            exploration=bool(exploration[i]),
            reasons=[],
            warnings=[],
        )
        for i, (declaration_id, text) in enumerate(
            zip(declarations["declaration_id"], texts, strict=True)
        )
    ]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scored_store(request, tmp_path_factory: pytest.TempPathFactory):
    """A small generated history scored into a store of each kind (some twice), its
    inspections posted back."""
    from serving.store import open_outcome_store, open_store

    declarations, _ = generate(SyntheticParams(seed=3, parcels=3000, days=20))
    rng = np.random.default_rng(0)
    exploration = rng.uniform(size=len(declarations)) < 0.05
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("history") / "audit.db")
    else:
        db = request.getfixturevalue("postgres_server").create_database()
    decisions = open_store(db)
    decisions.record(_records(declarations, exploration))
    decisions.record(_records(declarations.head(50), ~exploration[:50], repeat=1))  # re-scored
    decisions.close()
    inspected = declarations[declarations["inspected"].astype(bool)]
    results = inspected[
        ["declaration_id", "inspected_at", "illicit", "offence_type", "revenue_recovered"]
    ]
    outcomes = open_outcome_store(db)
    counts = store_outcomes(outcomes, results.reset_index(drop=True), source="test")
    outcomes.close()
    assert counts == {"stored": len(inspected), "unchanged": 0}
    return db, declarations, exploration


def test_export_is_the_history_as_scored_with_its_results(scored_store, tmp_path: Path) -> None:
    from serving.main import app

    db, declarations, exploration = scored_store
    out = tmp_path / "history.parquet"
    run = CliRunner().invoke(app, ["history", "export", "--db", str(db), "--out", str(out)])
    assert run.exit_code == 0, run.output
    history, _ = read_declarations(out)
    assert json.loads(run.output)["declarations"] == len(declarations) == len(history)
    by_id = history.set_index("declaration_id")
    source = declarations.set_index("declaration_id").loc[by_id.index]
    for column in ("declared_at", "hs_code", "declared_value", "inspected", "illicit"):
        assert by_id[column].equals(source[column]), column
    # the first decision decides the selection reason, not the later re-score
    drawn = dict(zip(declarations["declaration_id"], exploration, strict=True))
    inspected = by_id[by_id["inspected"].astype(bool)]
    # every decision of the fixture is green: an inspection not drawn was someone's choice
    expected = [RANDOM_SELECTION if drawn[i] else MANUAL_SELECTION for i in inspected.index]
    assert inspected["selection_reason"].tolist() == expected
    assert by_id.loc[~by_id["inspected"].astype(bool), "selection_reason"].isna().all()


def test_the_export_passes_the_gate_and_builds_features(scored_store, tmp_path: Path) -> None:
    from features.intake.rules import Limits
    from features.intake.validation import validate_file
    from features.pipeline.build import build_features
    from serving.main import app

    db, _, _ = scored_store
    out = tmp_path / "history.parquet"
    assert (
        CliRunner().invoke(app, ["history", "export", "--db", str(db), "--out", str(out)]).exit_code
        == 0
    )
    gate = validate_file(out, Limits.from_params({}, FeatureParams()), cross_check=False)
    assert gate.success, gate.render()
    history, contract = read_declarations(out)
    built = build_features(history, contract, FeatureParams())
    assert len(built.frame) == len(history)


def test_since_keeps_later_declarations(scored_store, tmp_path: Path) -> None:
    from serving.main import app

    db, declarations, _ = scored_store
    cut = declarations["declared_at"].iloc[len(declarations) // 2]
    out = tmp_path / "later.parquet"
    run = CliRunner().invoke(
        app, ["history", "export", "--db", str(db), "--out", str(out), "--since", cut.isoformat()]
    )
    assert run.exit_code == 0, run.output
    history, _ = read_declarations(out)
    assert len(history) == int((declarations["declared_at"] >= cut).sum())


def _export_on(db: str, base: Path, out: Path, *more: str):
    from serving.main import app

    args = ["history", "export", "--db", str(db), "--out", str(out), "--base", str(base)]
    return CliRunner().invoke(app, [*args, *more])


def test_export_on_a_base_keeps_the_history_the_champion_learned_from(
    scored_store, tmp_path: Path
) -> None:
    """The next model's history: the base (the champion's, here the first 1,000 declarations
    the service also scored, and 500 from before the service), then what was scored since."""
    from features.intake.io import write_declarations

    db, declarations, _ = scored_store
    before, _ = generate(SyntheticParams(seed=4, parcels=500, days=5))
    before["declaration_id"] = "B-" + before["declaration_id"].astype(str)
    base_frame = pd.concat([before, declarations.head(1000)], ignore_index=True)
    # the administration's own reason for one overlapping inspection: not the store's guess
    inspected = np.flatnonzero(base_frame["inspected"].astype(bool).to_numpy()[500:]) + 500
    base_frame.loc[inspected[0], "selection_reason"] = "rule:legacy-7"
    # a result only the base holds: an inspection the service was never told of
    quiet = np.flatnonzero(~base_frame["inspected"].astype(bool).to_numpy()[500:]) + 500
    row = quiet[0]
    base_frame.loc[row, ["inspected", "illicit"]] = [True, False]
    base_frame.loc[row, "inspected_at"] = base_frame.loc[row, "declared_at"] + pd.Timedelta("1D")
    base = tmp_path / "base.parquet"
    write_declarations(base_frame, base)
    out = tmp_path / "next.parquet"
    run = _export_on(db, base, out)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output)
    assert summary["declarations"] == 500 + len(declarations)
    assert summary["base"]["declarations"] == 1500
    assert summary["base"]["overlapping_rows_dropped"] == 1000
    history, _ = read_declarations(out)
    assert history["declaration_id"].is_unique
    by_id = history.set_index("declaration_id")
    assert by_id.index[:500].str.startswith("B-").all()  # the base comes first
    assert by_id.loc[base_frame.loc[inspected[0], "declaration_id"], "selection_reason"] == (
        "rule:legacy-7"
    )
    assert bool(by_id.loc[base_frame.loc[row, "declaration_id"], "inspected"])
    stored_only = declarations["declaration_id"].iloc[2000]
    assert by_id.loc[stored_only, "hs_code"] == declarations["hs_code"].iloc[2000]


def test_export_on_a_base_that_disagrees_with_the_store_is_refused(
    scored_store, tmp_path: Path
) -> None:
    from features.intake.io import write_declarations

    db, declarations, _ = scored_store
    base_frame = declarations.head(100).copy()
    base_frame.loc[7, "declared_value"] = 123456.0
    base = tmp_path / "base.parquet"
    write_declarations(base_frame, base)
    out = tmp_path / "next.parquet"
    run = _export_on(db, base, out)
    message = str(run.exception)
    assert run.exit_code != 0 and not out.exists()
    assert f"{declarations['declaration_id'].iloc[7]} in --base" in message
    assert "declared_value" in message and "--since" in message
    run = _export_on(db, out, out)
    assert run.exit_code != 0 and "no such file" in run.output


def test_export_on_a_base_refuses_it_as_out_and_other_extras(scored_store, tmp_path: Path) -> None:
    from features.intake.contract import Contract, ExtraColumn
    from features.intake.io import write_declarations

    db, declarations, _ = scored_store
    base = tmp_path / "base.parquet"
    write_declarations(declarations.head(10), base)
    run = _export_on(db, base, base)
    assert run.exit_code != 0 and "is --out" in run.output
    other = tmp_path / "other.parquet"
    frame = declarations.head(10).assign(incoterm="DDP")
    write_declarations(frame, other, Contract((ExtraColumn("incoterm", "categorical"),)))
    run = _export_on(db, base, tmp_path / "next.parquet", "--contract-from", str(other))
    assert run.exit_code != 0 and "declare other extras" in run.output


def test_a_history_whose_results_mark_was_edited_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.intake.contract import ContractError
    from features.intake.io import read_results_seq

    path = tmp_path / "h.parquet"
    t = pa.table({"declaration_id": ["D1"]})
    pq.write_table(t.replace_schema_metadata({b"parcelrisk.results_seq": b"12x"}), path)
    with pytest.raises(ContractError, match="not the seq history export wrote"):
        read_results_seq(path)
    pq.write_table(t.replace_schema_metadata({b"parcelrisk.results_seq": b"12"}), path)
    assert read_results_seq(path) == 12


def test_results_stored_days_after_their_inspection_are_said_with_how_late(
    scored_store, tmp_path: Path, caplog
) -> None:
    """Probe 23: a result sent days after its inspected_at (a lab report, a weekly file) was not
    counted by the decisions made meanwhile. The export places it where the service could
    count it (result_known_at) and says how many and how late: the fixture scored every
    declaration before any result came back, so each result is known from the newest
    declaration, days after most inspections."""
    import logging

    from serving.main import app
    from serving.outcomes import ScoredRow, StoredResult, late_results

    db, declarations, _ = scored_store
    out = tmp_path / "history.parquet"
    with caplog.at_level(logging.WARNING):
        run = CliRunner().invoke(app, ["history", "export", "--db", str(db), "--out", str(out)])
    assert run.exit_code == 0, run.output
    late = json.loads(run.stdout)["results_stored_late"]
    inspected = declarations[declarations["inspected"].astype(bool)]
    newest = declarations["declared_at"].max()
    days = (newest - inspected["inspected_at"]) / pd.Timedelta(days=1)
    assert late["of"] == len(inspected) and late["results"] == int((days > 1).sum()) > 0
    assert late["max_days_late"] == round(float(days.max()), 1)
    # scored in July, declared in January: a replay, said so, with the way to count results
    # from their inspection (a live store's warning asks for a prompt results feed instead)
    assert late["replay"] is True
    assert "(a replay, a backfill" in caplog.text and "`history join`" in caplog.text
    history, _ = read_declarations(out)  # labels stay at inspected_at; features count from known
    by_id = history.set_index("declaration_id")
    source = declarations.set_index("declaration_id").loc[by_id.index]
    assert by_id["inspected_at"].equals(source["inspected_at"])
    known = by_id.loc[inspected["declaration_id"], "result_known_at"]
    later = (newest > inspected["inspected_at"]).to_numpy()
    assert (known[later] == newest).all() and known[~later].isna().all()

    day = 86_400 * 1_000_000
    row = ScoredRow("{}", False, "green", StoredResult(10 * day, True, None, None))
    assert late_results([row], [10 * day + day // 2]) is None
    assert late_results([row], [None]) is None
    assert late_results([row], [17 * day])["max_days_late"] == 7.0
    assert late_results([row], [17 * day])["replay"] is False  # no scoring time read
    live = ScoredRow('{"declared_at": "2026-03-10T10:00:00Z"}', False, "green", row.result,
                     "2026-03-10T14:00:00+00:00")  # fmt: skip
    assert late_results([live], [17 * day])["replay"] is False
