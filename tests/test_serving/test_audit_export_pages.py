"""``audit export`` reads a period page by page (one page of records in memory, whatever the
period): the file it writes is the same as one rendering of every decision at once, to the
byte, for CSV and HTML, and the period's counts and hit rates add up across pages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serving.audit import review_cli
from serving.audit.report import decision_rows, period_summary, read_outcomes, summary_of_tally
from serving.audit.report import tally as tally_of
from serving.decision import DecisionRecord, features_for_storage
from serving.outcome_store import SqliteOutcomeStore
from serving.outcomes import store_outcomes
from serving.sqlite_store import SqliteDecisionStore
from tests.test_serving.conftest import run_cli

N = 47  # pages of 5: nine full pages and a short one


def _records(n: int) -> list[DecisionRecord]:
    rng = np.random.default_rng(3)
    rows = features_for_storage(rng.normal(size=(n, 6)))
    lanes = ["red", "yellow", "green"]
    return [
        DecisionRecord(
            decision_id=f"{i:032x}",
            scored_at="2026-06-01T10:00:00.000000+00:00",
            declaration_id=f"D{i}",
            declaration_json=json.dumps(
                {
                    "declaration_id": f"D{i}",
                    "declared_at": "2026-06-01T09:00:00Z",
                    "description": "<b>&",
                }
            ),
            features=rows[i],
            manifest_fingerprint="f" * 16,
            model_name="parcel-risk",
            model_version=str(1 + i % 2),
            thresholds_version="t" * 12,
            lane_policy="{}",
            raw_score=float(rng.normal()),
            risk=float(rng.random()),
            expected_revenue=float(rng.random() * 50),
            lane=lanes[i % 3],
            exploration=i % 7 == 0,
            reasons=[{"feature": "f", "text": f"reason <{i}>", "contribution": 0.3}],
            warnings=[],
            request_id=f"req-{i}",
            api_key_id="0123456789abcdef",
            known_seq=i,
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    db = tmp_path_factory.mktemp("export-pages") / "audit.db"
    store, results = SqliteDecisionStore(db), SqliteOutcomeStore(db)
    try:
        store.record(_records(N))
        inspected = [f"D{i}" for i in range(0, N, 4)]
        store_outcomes(
            results,
            pd.DataFrame(
                {
                    "declaration_id": inspected,
                    "inspected_at": ["2026-06-02T10:00:00Z"] * len(inspected),
                    "illicit": ["true", "false", "false"] * 4,
                    "offence_type": ["undervaluation", "", ""] * 4,
                    "revenue_recovered": ["25", "", ""] * 4,
                }
            ),
            source="test",
        )
    finally:
        results.close()
        store.close()
    return db


PERIOD = ["--from", "2000-01-01", "--to", "2100-01-01"]


@pytest.mark.parametrize("fmt", ["csv", "html"])
def test_a_paged_export_is_the_same_file_as_a_whole_one(
    store_path, capsys, monkeypatch, tmp_path, fmt
) -> None:
    whole, paged = tmp_path / f"whole.{fmt}", tmp_path / f"paged.{fmt}"
    args = ["audit", "export", *PERIOD, "--format", fmt, "--db", str(store_path)]
    assert run_cli(capsys, *args, "--out", str(whole))[0] == 0
    monkeypatch.setattr(review_cli, "_PAGE", 5)
    assert run_cli(capsys, *args, "--out", str(paged))[0] == 0
    assert paged.read_bytes() == whole.read_bytes()
    text = paged.read_text()
    if fmt == "csv":
        rows = pd.read_csv(paged, keep_default_na=False)
        assert len(rows) == N and rows["seq"].tolist() == list(range(1, N + 1))
        assert (rows["outcome"] != "").sum() == 12
    else:
        decisions = text.split(f"Decisions ({N})</h2>")[1]
        assert decisions.count("<tr><td>") == N
        assert "<b>" not in text and "reason &lt;46&gt;" in text


def test_export_to_stdout_is_the_same_as_to_a_file(store_path, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(review_cli, "_PAGE", 5)
    out = tmp_path / "r.csv"
    args = ["audit", "export", *PERIOD, "--format", "csv", "--db", str(store_path)]
    assert run_cli(capsys, *args, "--out", str(out))[0] == 0
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and stdout == out.read_text()


def test_an_empty_period_still_has_its_header(store_path, capsys, tmp_path) -> None:
    out = tmp_path / "none.csv"
    period = ["--from", "2001-01-01", "--to", "2001-01-02"]
    args = ["audit", "export", *period, "--format", "csv", "--db", str(store_path)]
    assert run_cli(capsys, *args, "--out", str(out))[0] == 0
    assert out.read_text().splitlines()[0].startswith("seq,decision_id,declaration_id")
    html = tmp_path / "none.html"
    args = ["audit", "export", *period, "--format", "html", "--db", str(store_path)]
    assert run_cli(capsys, *args, "--out", str(html))[0] == 0
    assert "Decisions (0)</h2><p>none</p>" in html.read_text()


def test_the_tallies_of_pages_add_up_to_the_period(store_path) -> None:
    store = SqliteDecisionStore(store_path)
    try:
        records = review_cli._find_all(store, None)
        rows = decision_rows(records, read_outcomes(store, [r.declaration_id for r in records]))
    finally:
        store.close()
    pages = [rows.iloc[i : i + 5] for i in range(0, len(rows), 5)]
    added = summary_of_tally(pd.concat([tally_of(page) for page in pages]))
    whole = period_summary(rows)
    for name, frame in whole.items():
        pd.testing.assert_frame_equal(
            added[name].reset_index(drop=True), frame.reset_index(drop=True), check_dtype=False
        )
    assert whole["counts"].set_index("model_version").loc["all", "all"] == N
    lanes = whole["hit_rate_by_lane"].set_index("lane")
    assert lanes["inspected"].sum() == 12 and lanes["illicit"].sum() == 4


def test_an_export_of_a_tampered_store_marks_the_rows_and_exits_1(
    store_path, capsys, tmp_path
) -> None:
    """A decision edited behind the service (yellow -> green) was exported unmarked, counted
    as green, exit 0 (probe 12): each row now says what the chain's walk found of it, a row the
    chain does not vouch for is left out of the counts, and the exit says the store is broken."""
    import shutil
    import sqlite3

    db = tmp_path / "audit.db"
    shutil.copy(store_path, db)
    intact_csv = tmp_path / "intact.csv"
    args = ["audit", "export", *PERIOD, "--format", "csv", "--db", str(db)]
    assert run_cli(capsys, *args, "--out", str(intact_csv))[0] == 0
    assert set(pd.read_csv(intact_csv)["chain"]) == {"intact"}
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE decisions SET lane = 'green' WHERE seq = 11")
    out = tmp_path / "x.csv"
    code, _, err = run_cli(capsys, *args, "--out", str(out))
    assert code == 1 and "NOT INTACT: altered at seq 11" in err
    chain = pd.read_csv(out).set_index("seq")["chain"]
    assert chain[10] == "intact" and chain[11] == "NOT INTACT: altered"
    assert chain[12] == "not verified: the chain breaks at seq 11"
    html = tmp_path / "x.html"
    html_args = ["audit", "export", *PERIOD, "--format", "html", "--db", str(db)]
    code, _, _ = run_cli(capsys, *html_args, "--out", str(html))
    page = html.read_text()
    assert code == 1 and "NOT INTACT: altered" in page
    assert f"{N - 10} decision(s) the chain does not vouch for" in page
