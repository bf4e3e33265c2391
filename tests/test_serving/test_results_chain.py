"""Inspection results are chained as decisions are: an edited, deleted or slipped-in result
(which would retrain the next model and move the hit rates the live state serves) is named by
`parcelrisk audit verify`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.audit.verify import verify_results
from serving.main import app
from serving.outcomes import store_outcomes
from serving.store import open_outcome_store, open_store
from tests.test_serving.conftest import execute_sql
from tests.test_serving.test_store import _record

KEY = b"c" * 40
NOW = pd.Timestamp("2026-06-01", tz="UTC")


@pytest.fixture(autouse=True)
def _audit_key(monkeypatch) -> None:
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())


def _decided(location: str, n: int = 6) -> None:
    store = open_store(location)
    records = []
    for i in range(n):
        text = json.dumps(
            {"declaration_id": f"D{i}", "declared_at": f"2026-05-0{1 + i}T10:00:00.000000Z"}
        )
        records.append(dataclasses.replace(_record(i), declaration_json=text, lane="red"))  # fmt: skip
    store.record(records)
    store.close()


def _results(ids: list[int], illicit: bool = True) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "declaration_id": f"D{i}",
                "inspected_at": f"2026-05-{10 + i}T09:00:00Z",
                "illicit": illicit,
                "revenue_recovered": 12.5 * i if illicit else None,
            }
            for i in ids
        ]
    )


def _store_results(location: str, ids: list[int], illicit: bool = True) -> None:
    outcomes = open_outcome_store(location)
    try:
        store_outcomes(outcomes, _results(ids, illicit), source="t", now=NOW)
    finally:
        outcomes.close()


def _verify(location: str) -> dict:
    outcomes = open_outcome_store(location, read_only=True)
    try:
        return verify_results(outcomes, KEY)
    finally:
        outcomes.close()


def test_results_stored_in_several_batches_verify(location) -> None:
    _decided(location)
    _store_results(location, [0, 1])
    _store_results(location, [2], illicit=False)
    _store_results(location, [3, 4, 5])
    report = _verify(location)
    assert report["intact"] and report["checked"] == 6 and report["head"].startswith("6:")


@pytest.mark.parametrize(
    ("statement", "kind", "seq"),
    [
        ("UPDATE outcomes SET illicit = 0 WHERE declaration_id = 'D3'", "altered", 4),
        ("UPDATE outcomes SET revenue_recovered = 9999 WHERE seq = 2", "altered", 2),
        ("DELETE FROM outcomes WHERE seq = 3", "deleted", 3),
        ("UPDATE outcomes SET mac = NULL WHERE seq = 5", "altered", 5),
    ],
)
def test_a_changed_result_is_named(location, statement, kind, seq) -> None:
    _decided(location)
    _store_results(location, [0, 1, 2])
    _store_results(location, [3, 4, 5])
    execute_sql(location, statement)
    problem = _verify(location)["problem"]
    assert problem is not None and (problem["kind"], problem["seq"]) == (kind, seq), problem


def test_results_from_two_handles_extend_one_chain(location) -> None:
    """Two workers (two handles) storing in turn: each reads the last link inside its write."""
    _decided(location)
    first, second = open_outcome_store(location), open_outcome_store(location)
    try:
        for i in range(6):
            store_outcomes(first if i % 2 else second, _results([i]), source="t", now=NOW)
    finally:
        first.close()
        second.close()
    report = _verify(location)
    assert report["intact"] and report["checked"] == 6


def _legacy_results(path: str) -> None:
    """An outcomes table as an earlier version wrote it: no chain columns."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "CREATE TABLE outcomes (seq INTEGER PRIMARY KEY AUTOINCREMENT, declaration_id TEXT "
            "UNIQUE NOT NULL, inspected_at TEXT NOT NULL, illicit INTEGER NOT NULL, "
            "offence_type TEXT, revenue_recovered REAL, recorded_at TEXT NOT NULL, "
            "source TEXT NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO outcomes (declaration_id, inspected_at, illicit, offence_type, "
            "revenue_recovered, recorded_at, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    f"D{i}",
                    f"2026-05-1{i}T09:00:00.000000Z",
                    1,
                    None,
                    5.0,
                    "2026-05-20T00:00:00.000000Z",
                    "old",
                )
                for i in range(3)
            ],
        )
    conn.close()


def test_results_from_before_the_chain_are_said_unverified_then_chained(tmp_path) -> None:
    location = str(tmp_path / "audit.db")
    _decided(location)
    _legacy_results(location)
    report = _verify(location)
    assert report["intact"] is None and report["unchained"] == 3
    runner = CliRunner()
    note = runner.invoke(app, ["audit", "verify", "--db", location])
    assert note.exit_code == 0 and "3 inspection results were stored before" in note.output
    _store_results(location, [3, 4])  # a writer's open chains the old ones, then these follow
    report = _verify(location)
    assert report["intact"] and report["checked"] == 5
    execute_sql(location, "UPDATE outcomes SET illicit = 0 WHERE seq = 1")
    assert _verify(location)["problem"]["seq"] == 1


def test_audit_verify_names_an_edited_result_and_exits_1(tmp_path) -> None:
    location = str(tmp_path / "audit.db")
    _decided(location)
    _store_results(location, [0, 1, 2])
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--db", location])
    assert ok.exit_code == 0 and "intact: 3 inspection results" in ok.output
    assert json.loads(ok.stdout)["results"]["intact"] is True
    execute_sql(location, "UPDATE outcomes SET illicit = 0 WHERE declaration_id = 'D1'")
    broken = runner.invoke(app, ["audit", "verify", "--db", location])
    assert broken.exit_code == 1
    assert "NOT INTACT: altered at result seq 2 (declaration D1)" in broken.output
    assert json.loads(broken.stdout)["intact"] is True  # the decisions are untouched


def test_the_html_export_states_the_results_walk(tmp_path, capsys) -> None:
    from tests.test_serving.conftest import run_cli

    location = str(tmp_path / "audit.db")
    _decided(location)
    _store_results(location, [0, 1, 2])
    out = tmp_path / "report.html"
    period = ("--from", "2026-01-01", "--to", "2030-01-01", "--db", location)
    code, _, err = run_cli(capsys, "audit", "export", *period, "--format", "html", "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert "3 inspection results intact" in out.read_text()
    execute_sql(location, "UPDATE outcomes SET illicit = 0 WHERE seq = 2")
    code, _, err = run_cli(capsys, "audit", "export", *period, "--format", "html", "--out", str(out))  # fmt: skip
    # written for a person to investigate, but the exit says the store is not intact
    assert code == 1 and "FAILED: altered at result seq 2 (declaration D1)" in out.read_text()
    assert "NOT INTACT: altered at result seq 2" in err


def test_a_filed_results_head_proves_a_rewrite_by_a_key_holder(tmp_path, monkeypatch) -> None:
    """Someone holding the audit key can rewrite the results and remake every MAC; a head
    filed elsewhere (`audit head --results`) still shows it, as it does for decisions."""
    from serving.audit.chain import chain_results

    location = str(tmp_path / "audit.db")
    _decided(location)
    _store_results(location, [0, 1, 2])
    runner = CliRunner()
    filed = runner.invoke(app, ["audit", "head", "--results", "--db", location])
    assert filed.exit_code == 0 and filed.stdout.strip().startswith("3:"), filed.output
    head = filed.stdout.strip()
    ok = runner.invoke(app, ["audit", "verify", "--db", location, "--results-head", head])
    assert ok.exit_code == 0 and f"filed results head {head} proven" in ok.output
    # the insider: D1 found clean, the chain remade with the key from there on
    conn = sqlite3.connect(location)
    rows = conn.execute(
        "SELECT seq, recorded_at, declaration_id, inspected_at, illicit, offence_type, "
        "revenue_recovered, source FROM outcomes ORDER BY seq"
    ).fetchall()
    rows[1] = (*rows[1][:4], 0, None, None, rows[1][7])
    links = chain_results(KEY, None, rows[0][1], [r[2:] for r in rows])
    with conn:
        for r, (seq, prev, mac) in zip(rows, links, strict=True):
            conn.execute(
                "UPDATE outcomes SET illicit = ?, offence_type = ?, revenue_recovered = ?, "
                "prev_mac = ?, mac = ? WHERE seq = ?",
                (r[4], r[5], r[6], prev, mac, seq),
            )
    conn.close()
    assert _verify(location)["intact"]  # the rewrite verifies on its own
    broken = runner.invoke(app, ["audit", "verify", "--db", location, "--results-head", head])
    assert broken.exit_code == 1 and "NOT INTACT: rewritten at result seq 3" in broken.output
    bad = runner.invoke(app, ["audit", "verify", "--db", location, "--results-head", "x"])
    assert bad.exit_code != 0 and "--results-head" in str(bad.exception)  # main() prints it


def test_a_removed_mac_is_never_chained_again_by_a_writer(location) -> None:
    """Probe (2026-12): someone without the key edits a result, deletes another and removes
    a MAC; the next writer's open (the service, `outcomes ingest`) must not chain the rows
    again, which would make `audit verify` call the edited record intact."""
    _decided(location)
    _store_results(location, [0, 1, 2, 3])
    execute_sql(location, "UPDATE outcomes SET illicit = 0, revenue_recovered = NULL WHERE seq = 1")
    execute_sql(location, "DELETE FROM outcomes WHERE seq = 4")
    execute_sql(location, "UPDATE outcomes SET mac = NULL WHERE seq = 1")
    assert _verify(location)["problem"]["seq"] == 1
    _store_results(location, [4, 5])  # a writer opens the store and records more
    _assert_broken_at(location, 1)


def test_results_whose_macs_were_all_removed_are_a_break_not_unverified(location) -> None:
    _decided(location)
    _store_results(location, [0, 1, 2])
    execute_sql(location, "UPDATE outcomes SET mac = NULL")
    _assert_broken_at(location, 1)
    _store_results(location, [3])  # recording goes on after the removed MAC; the break stays
    _assert_broken_at(location, 1)


def _assert_broken_at(location: str, seq: int) -> None:
    report = _verify(location)
    assert report["intact"] is False and report["problem"]["seq"] == seq, report


def test_a_store_from_before_the_chain_is_chained_when_it_gets_the_columns(location) -> None:
    """On both backends: the columns and the chaining come in one transaction."""
    _decided(location)
    _store_results(location, [0, 1, 2])
    execute_sql(location, "ALTER TABLE outcomes DROP COLUMN mac")
    execute_sql(location, "ALTER TABLE outcomes DROP COLUMN prev_mac")
    report = _verify(location)
    assert report["intact"] is None and report["unchained"] == 3
    _store_results(location, [3])
    report = _verify(location)
    assert report["intact"] and report["checked"] == 4, report


def _decided_zero_padded(location: str, n: int) -> None:
    """Decisions of declarations 000515428, 000515429, ... (ids a spreadsheet strips)."""
    store = open_store(location)
    store.record(
        [
            dataclasses.replace(
                _record(i),
                declaration_id=f"{515428 + i:09d}",
                declaration_json=json.dumps(
                    {"declaration_id": f"{515428 + i:09d}", "declared_at": "2026-05-01T10:00:00Z"}
                ),
            )
            for i in range(n)
        ]
    )
    store.close()


def test_result_ids_that_lost_their_leading_zeros_are_said_to_have(location) -> None:
    """A results file that wrote ids as numbers (515428 for 000515428) is refused as unknown
    ids, and the refusal says the store holds them zero-padded; ids no padding finds are not
    given the hint."""
    from serving.outcomes import OutcomesRefused

    _decided_zero_padded(location, 3)
    results = _results([0, 1, 2]).assign(declaration_id=[str(515428 + i) for i in range(3)])
    outcomes = open_outcome_store(location)
    try:
        with pytest.raises(OutcomesRefused, match="has no decision in the store") as refused:
            store_outcomes(outcomes, results, source="t", now=NOW)
        said = str(refused.value)
        assert "The store holds '000515428' for '515428' (3 of the 3 looked up)" in said
        assert "zero_pad: 9" in said  # the mapping's way to write them back
        with pytest.raises(OutcomesRefused) as other:
            store_outcomes(outcomes, results.assign(declaration_id="999"), source="t", now=NOW)
        assert "leading zeros" not in str(other.value)
    finally:
        outcomes.close()


def test_a_results_mapping_writes_back_the_zeros_the_ids_lost(location, tmp_path) -> None:
    """``zero_pad: 9`` on declaration_id: the same file the hint above refuses is stored, the
    padding counted in the summary (an id written as a float is read as its number first); an
    id with a letter is left as written (and refused)."""
    _decided_zero_padded(location, 2)
    source = tmp_path / "results.csv"
    source.write_text(
        "DECL,DATE,HIT\n515428,2026-05-10T09:00:00Z,N\n515429.0,2026-05-10T09:00:00Z,N\n"
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "columns:\n"
        "  declaration_id: {column: DECL, zero_pad: 9}\n"
        "  inspected_at: DATE\n"
        "  illicit: {column: HIT, values: {Y: true, N: false}}\n"
    )
    args = ["outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", location]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output[run.output.index("{") :])
    assert summary["stored"] == 2 and summary["identifier_zeros_restored"] == {"declaration_id": 2}
    assert summary["float_written_values_read"] == {"declaration_id": 1}  # 515429.0, a float
    source.write_text("DECL,DATE,HIT\nX515428,2026-05-10T09:00:00Z,N\n")
    run = CliRunner().invoke(app, args)
    assert run.exit_code != 0 and "X515428" in run.output + str(run.exception)


def test_history_export_refuses_a_store_whose_chains_are_broken(tmp_path) -> None:
    """It exported a forged label and left out the result of a deleted decision, exit 0, where
    `audit archive` refuses the same store (probe)."""
    location = str(tmp_path / "audit.db")
    _decided(location)
    _store_results(location, [0, 1, 2])
    out = tmp_path / "next.parquet"
    args = ["history", "export", "--db", location, "--out", str(out)]
    execute_sql(location, "UPDATE outcomes SET illicit = 0 WHERE declaration_id = 'D1'")
    forged = CliRunner().invoke(app, args)
    assert forged.exit_code != 0 and not out.exists()
    assert "the results chain is broken (altered at result seq 2" in str(forged.exception)
    execute_sql(location, "DELETE FROM decisions WHERE seq = 3")
    deleted = CliRunner().invoke(app, args)
    assert "the decisions chain is broken (deleted at seq 3" in str(deleted.exception)


@pytest.mark.parametrize(
    ("statement", "removed"),
    [
        ("DELETE FROM outcomes WHERE seq = 3", "result 3 was removed"),  # a correction undone
        ("DELETE FROM outcomes", "results 1..3 were removed"),
        ("DROP TABLE outcomes", "results 1..3 were removed"),
    ],
)
def test_results_a_signed_decision_knew_cannot_be_removed_unseen(
    tmp_path, capsys, statement, removed
) -> None:
    """A results chain cut at its end verifies on its own: the decisions' MAC'd
    ``known_results_seq`` vouches for the results they were made knowing (probe 12: the last
    result deleted, or every result, or the table, passed verify, and the history export took
    the store)."""
    from tests.test_serving.conftest import run_cli

    location = str(tmp_path / "audit.db")
    _decided(location)
    _store_results(location, [0, 1, 2])
    store = open_store(location)
    later = dataclasses.replace(_record(6), decision_id="dec-later", known_results_seq=3)
    store.record([later])
    store.close()
    code, _, err = run_cli(capsys, "audit", "verify", "--db", location)
    assert code == 0, err
    execute_sql(location, statement)
    code, out, err = run_cli(capsys, "audit", "verify", "--db", location)
    assert code == 1
    assert "NOT INTACT: truncated" in err and "decision dec-later" in err and removed in err
    assert json.loads(out)["results"]["intact"] is False
    assert json.loads(out)["intact"] is True  # the decisions themselves are untouched
    next_history = tmp_path / "next.parquet"
    code, _, err = run_cli(capsys, "history", "export", "--db", location, "--out", str(next_history))  # fmt: skip
    assert code != 0 and "the results chain is broken (truncated" in err
    assert not next_history.exists()
    code, _, err = run_cli(capsys, "audit", "head", "--results", "--db", location)
    assert code == 1


def test_the_auditor_page_marks_a_result_edited_in_the_store(location) -> None:
    """Shown as genuine beside the decision's "integrity: intact" (probe): each result's MAC
    is checked where the page lists it."""
    from types import SimpleNamespace

    from serving.auditor.pages import _checked_results

    _decided(location)
    _store_results(location, [0, 1])
    execute_sql(location, "UPDATE outcomes SET illicit = 0 WHERE declaration_id = 'D1'")
    service = SimpleNamespace(
        store=open_store(location), outcome_store=open_outcome_store(location, read_only=True)
    )
    try:
        assert [r["intact"] for r in _checked_results(service, "D0")] == [True]
        (edited,) = _checked_results(service, "D1")
        assert edited["intact"] is False and edited["illicit"] is False
    finally:
        service.outcome_store.close()
        service.store.close()
