"""A stored inspection result is corrected, never edited: the correction (with why) is a new,
chained row that becomes the declaration's current result, on SQLite and on PostgreSQL. History
export, the analysts' reads and an auditor's `show` see the current one; the old one stays as
it was and `audit verify` still vouches for both. A store from before corrections takes them
after its first writer's open, its chain intact."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from features.intake.io import read_declarations
from serving.outcomes import MAX_CORRECTION_CHARS, OutcomesRefused, store_outcomes
from serving.store import open_outcome_store
from tests.test_serving.conftest import (
    INSPECTOR_KEY,
    SCORER_KEY,
    execute_sql,
    make_declarations,
    query_sql,
    run_cli,
    stub_service_client,
)
from tests.test_serving.test_results_chain import KEY, _decided, _verify
from tests.test_serving.test_store import _record

NOW = pd.Timestamp("2026-06-01", tz="UTC")


@pytest.fixture(autouse=True)
def _audit_key(monkeypatch) -> None:
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())


def _result(i: int, **changes) -> dict:
    return {
        "declaration_id": f"D{i}",
        "inspected_at": f"2026-05-1{i}T09:00:00Z",
        "illicit": True,
        "offence_type": "undervaluation",
        "revenue_recovered": 40.0,
        **changes,
    }


def _post(location: str, *rows: dict, source: str = "t") -> dict:
    outcomes = open_outcome_store(location)
    try:
        return store_outcomes(outcomes, pd.DataFrame(list(rows)), source=source, now=NOW)
    finally:
        outcomes.close()


def _read(location: str, method: str, *args):
    outcomes = open_outcome_store(location, read_only=True)
    try:
        return getattr(outcomes, method)(*args)
    finally:
        outcomes.close()


APPEAL = "appeal upheld 2026-05-20: goods declared at their true value"
CLEARED = {"illicit": False, "offence_type": None, "revenue_recovered": None, "correction": APPEAL}


def test_a_correction_becomes_the_current_result_and_the_old_one_stays(location) -> None:
    _decided(location, 3)
    assert _post(location, _result(0, selection_reason="random"), _result(1)) == {
        "stored": 2,
        "unchanged": 0,
    }
    counts = _post(location, _result(0, **CLEARED), source="file:appeals.csv")
    assert counts == {"stored": 1, "unchanged": 0, "corrected": 1}
    # sent again (a retry after a timeout): the current result already says so
    assert _post(location, _result(0, **CLEARED)) == {"stored": 0, "unchanged": 1}

    current = _read(location, "scored_history")
    by_id = {json.loads(r.declaration_json)["declaration_id"]: r.result for r in current}
    assert by_id["D0"].illicit is False and by_id["D0"].revenue_recovered is None
    assert by_id["D0"].correction == APPEAL
    # why it was inspected does not change with what was found: kept from the first result
    assert by_id["D0"].selection_reason == "random"
    assert by_id["D1"].illicit is True and by_id["D2"] is None

    history = _read(location, "result_history", "D0")
    assert [(h["illicit"], h["correction"], h["source"]) for h in history] == [
        (True, None, "t"),
        (False, APPEAL, "file:appeals.csv"),
    ]
    assert history[0]["revenue_recovered"] == 40.0  # the old result, as it was stored
    report = _verify(location)
    assert report["intact"] and report["checked"] == 3, report


def test_a_differing_result_without_a_correction_is_refused_naming_how(location) -> None:
    _decided(location, 3)
    _post(location, _result(0))
    with pytest.raises(OutcomesRefused) as refused:
        _post(location, _result(0, revenue_recovered=55.0))
    (problem,) = refused.value.problems
    assert problem.rule == "result.conflict"
    assert "send this one with a correction saying why" in problem.msg
    assert _read(location, "count") == 1


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        (_result(1, correction="keyed on the wrong parcel"), "correction.nothing_stored"),
        (_result(0, correction="x" * (MAX_CORRECTION_CHARS + 1)), "correction.length"),
    ],
)
def test_a_correction_of_nothing_or_too_long_is_refused_and_nothing_stored(
    location, row, rule
) -> None:
    _decided(location, 3)
    _post(location, _result(0, revenue_recovered=10.0))
    with pytest.raises(OutcomesRefused) as refused:
        _post(location, _result(2), row)  # all or nothing: D2's result is not stored either
    assert [(p.row, p.rule, p.field) for p in refused.value.problems] == [(1, rule, "correction")]
    assert _read(location, "count") == 1


def test_a_blank_correction_is_no_correction(location) -> None:
    _decided(location, 3)
    _post(location, _result(0))
    with pytest.raises(OutcomesRefused, match="a different result is already stored"):
        _post(location, _result(0, illicit=False, offence_type=None, revenue_recovered=None,
                                correction="   "))  # fmt: skip


def test_the_live_state_reads_a_correction_with_the_result_it_replaces(location) -> None:
    _decided(location, 3)
    _post(location, _result(0), _result(1))
    _post(location, _result(0, inspected_at="2026-05-12T09:00:00Z", **CLEARED))
    events = _read(location, "results_since", 0)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].replaces is None and events[1].replaces is None
    fix = events[2]
    assert (fix.illicit, fix.revenue_recovered) == (False, None)
    assert fix.replaces is not None
    assert (fix.replaces.seq, fix.replaces.illicit, fix.replaces.revenue_recovered) == (
        1,
        True,
        40.0,
    )
    assert fix.replaces.inspected_at_us == pd.Timestamp("2026-05-10T09:00Z").value // 1000
    # a replay from a cutoff after every inspection still gets the correction: whether the
    # result it replaces was counted is the live state's to say
    late = pd.Timestamp("2026-05-30", tz="UTC").value // 1000
    assert [e.seq for e in _read(location, "results_since", 0, late)] == [3]


def test_an_edited_correction_breaks_the_chain(location) -> None:
    _decided(location, 3)
    _post(location, _result(0))
    _post(location, _result(0, **CLEARED))
    execute_sql(location, "UPDATE outcomes SET correction = 'nothing happened' WHERE seq = 2")
    problem = _verify(location)["problem"]
    assert problem is not None and (problem["kind"], problem["seq"]) == ("altered", 2), problem


def test_the_analysts_reads_count_the_current_result_once(location, tmp_path) -> None:
    from serving.auditor.disparity import read_lane_counts
    from serving.monitor.data import read_period

    _decided(location, 3)
    _post(location, _result(0), _result(1))
    _post(location, _result(0, **CLEARED))
    counts = read_lane_counts(location)
    assert sum(c.inspected for c in counts) == 2
    assert sum(c.illicit for c in counts) == 1
    period = read_period(location, "2026-05-01", "2026-06-01")
    assert len(period) == 3 and int(period["has_result"].sum()) == 2
    assert int(period["illicit"].fillna(0).astype(int).sum()) == 1


def _old_sqlite_table(path: str) -> None:
    """The results table as stores made it before corrections: UNIQUE ids, no column."""
    for statement in (
        "CREATE TABLE old_outcomes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "declaration_id TEXT UNIQUE NOT NULL, inspected_at TEXT NOT NULL, illicit INTEGER "
        "NOT NULL, offence_type TEXT, revenue_recovered REAL, recorded_at TEXT NOT NULL, "
        "source TEXT NOT NULL, prev_mac BLOB, mac BLOB, selection_reason TEXT)",
        "INSERT INTO old_outcomes SELECT seq, declaration_id, inspected_at, illicit, "
        "offence_type, revenue_recovered, recorded_at, source, prev_mac, mac, selection_reason "
        "FROM outcomes",
        "DROP TABLE outcomes",
        "ALTER TABLE old_outcomes RENAME TO outcomes",
    ):
        execute_sql(path, statement)


def test_a_store_from_before_corrections_takes_them_with_its_chain_intact(location) -> None:
    _decided(location, 3)
    _post(location, _result(0), _result(1, selection_reason="random"))
    if location.startswith("postgresql"):
        execute_sql(location, "ALTER TABLE outcomes DROP COLUMN correction")
        execute_sql(location, "DROP INDEX outcomes_declaration_seq")
        execute_sql(
            location, "ALTER TABLE outcomes ADD CONSTRAINT legacy_id UNIQUE (declaration_id)"
        )
    else:
        _old_sqlite_table(location)
    # read-only, as an auditor reads it before any writer opened it: nothing changes
    assert _verify(location)["intact"]
    assert len(_read(location, "result_history", "D0")) == 1
    with pytest.raises(OutcomesRefused):  # the first writer's open makes room; the check holds
        _post(location, _result(0, revenue_recovered=1.0))
    assert _post(location, _result(0, revenue_recovered=1.0, correction="keying error")) == {
        "stored": 1,
        "unchanged": 0,
        "corrected": 1,
    }
    report = _verify(location)
    assert report["intact"] and report["checked"] == 3, report
    if not location.startswith("postgresql"):
        (sql,) = query_sql(location, "SELECT sql FROM sqlite_master WHERE name = 'outcomes'")
        assert "UNIQUE" not in sql[0].upper()


# --- the edges: `history export`, `outcomes ingest --correction`, POST /outcomes, `audit show`


def _exported(capsys, location: str, out) -> pd.DataFrame:
    code, _, err = run_cli(capsys, "history", "export", "--db", location, "--out", str(out))
    assert code == 0, err
    history, _ = read_declarations(out, with_outcomes=True)
    return history.set_index("declaration_id")


def test_ingest_with_correction_and_history_export_give_the_corrected_label(
    capsys, tmp_path
) -> None:
    location = str(tmp_path / "audit.db")
    _decided(location, 3)
    _post(location, _result(0), _result(1))
    appeals = tmp_path / "appeals.csv"
    pd.DataFrame([_result(0, illicit=False, offence_type=None, revenue_recovered=None)]).to_csv(
        appeals, index=False
    )
    code, _, err = run_cli(capsys, "outcomes", "ingest", str(appeals), "--db", location)
    assert code != 0 and "with a correction saying why" in err  # no traceback, nothing stored
    assert "Traceback" not in err
    code, out, err = run_cli(
        capsys, "outcomes", "ingest", str(appeals), "--db", location, "--correction", APPEAL
    )
    assert code == 0, err
    assert json.loads(out)["corrected"] == 1
    history = _exported(capsys, location, tmp_path / "history.parquet")
    assert not bool(history.loc["D0", "illicit"]) and bool(history.loc["D1", "illicit"])
    assert bool(history.loc["D0", "inspected"])
    code, _, err = run_cli(
        capsys, "outcomes", "ingest", str(appeals), "--db", location, "--correction", " "
    )
    assert code != 0 and "--correction: say why" in err


def test_post_outcomes_takes_a_correction_and_records_who_sent_it(stub_runtime, tmp_path):
    with stub_service_client(tmp_path, stub_runtime, "serve:\n  max_batch: 50\n") as client:
        declarations = make_declarations(2, seed=5, prefix="FIX")
        r = client.post(
            "/score", json={"declarations": declarations}, headers={"X-API-Key": SCORER_KEY}
        )
        assert r.status_code == 200, r.text
        first = {
            "declaration_id": declarations[0]["declaration_id"],
            "inspected_at": "2026-05-02T08:00:00Z",
            "illicit": True,
            "offence_type": "undervaluation",
            "revenue_recovered": 30.0,
        }
        headers = {"X-API-Key": INSPECTOR_KEY}
        stored = client.post("/outcomes", json={"outcomes": [first]}, headers=headers)
        assert stored.json() == {"stored": 1, "unchanged": 0}, stored.text
        fixed = {**first, "revenue_recovered": 45.0}
        conflict = client.post("/outcomes", json={"outcomes": [fixed]}, headers=headers)
        assert conflict.status_code == 409, conflict.text
        fixed["correction"] = "laboratory report: duty on the second item too"
        corrected = client.post("/outcomes", json={"outcomes": [fixed]}, headers=headers)
        assert corrected.json() == {"stored": 1, "unchanged": 0, "corrected": 1}, corrected.text
    history = _read(str(tmp_path / "audit.db"), "result_history", first["declaration_id"])
    assert [h["revenue_recovered"] for h in history] == [30.0, 45.0]
    # the key's id, never the key
    assert history[1]["source"].startswith("api:inspector:")
    assert INSPECTOR_KEY not in history[1]["source"]


class _NoModels:
    """``RecordedModels`` without a tracking store: every model is said unavailable (``show``
    prints the rest; the explanation is tested with a real store in test_audit_review)."""

    tracking_uri = "sqlite:///nowhere.db"

    def __init__(self, tracking_uri) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None: ...

    def get(self, name, version, *recorded):
        from features.errors import ParcelriskError

        raise ParcelriskError(f"model {name} v{version}: not in this test's registry")

    def run_of(self, name, version):
        return "run-of-the-registry"


def test_audit_show_lists_what_a_correction_replaced(capsys, tmp_path, monkeypatch) -> None:
    import serving.audit.models

    monkeypatch.setattr(serving.audit.models, "RecordedModels", _NoModels)
    location = str(tmp_path / "audit.db")
    _decided(location, 3)
    _post(location, _result(0))
    _post(location, _result(0, **CLEARED), source="file:appeals.csv")
    show = ("audit", "show", _record(0).decision_id, "--db", location)
    code, out, err = run_cli(capsys, *show)
    assert code == 0, err
    assert "inspection    clean at 2026-05-10T09:00:00.000000Z, offence -, recovered -" in out
    # the model does not load, but the run the registry names is said (probe 12: "run None")
    assert "run run-of-the-registry" in out
    assert "cut-offs      t1: not available (the model does not load)" in out
    assert f"by file:appeals.csv: {APPEAL} (was illicit at 2026-05-10T09:00:00" in out
    assert "nan" not in out.lower()
    code, out, err = run_cli(capsys, *show, "--json")
    assert code == 0, err

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    # strict JSON (RFC 8259): the clean result's empty offence and revenue are null, not NaN
    body = json.loads(out, parse_constant=refuse)
    assert body["inspection"]["correction"] == APPEAL
    assert body["inspection"]["revenue_recovered"] is None
    assert body["inspection"]["offence_type"] is None
    assert [h["illicit"] for h in body["result_history"]] == [True, False]


def test_export_on_a_base_takes_the_stores_correction_over_the_bases_result(
    capsys, tmp_path
) -> None:
    """The base (the history the champion was trained on) holds the result as first stored;
    the store has corrected it since: the correction is newer and says why, so it wins, counted
    in the summary, where two different results would otherwise refuse the export."""
    location = str(tmp_path / "audit.db")
    _decided(location, 3)
    _post(location, _result(0, selection_reason="random"), _result(1))
    base = tmp_path / "base.parquet"
    _exported(capsys, location, base)  # the champion's history: D0 found illicit
    _post(location, _result(0, **CLEARED))
    out = tmp_path / "next.parquet"
    code, stdout, err = run_cli(
        capsys, "history", "export", "--db", location, "--out", str(out), "--base", str(base)
    )
    assert code == 0, err
    assert json.loads(stdout)["base"]["results_corrected_in_the_store"] == 1
    # on a base exported after the correction there is nothing left to correct (probe 10:
    # counted again, it read as a change)
    again = tmp_path / "again.parquet"
    code, stdout, err = run_cli(
        capsys, "history", "export", "--db", location, "--out", str(again), "--base", str(out)
    )
    assert code == 0, err
    assert "results_corrected_in_the_store" not in json.loads(stdout)["base"]
    history, _ = read_declarations(out, with_outcomes=True)
    by_id = history.set_index("declaration_id")
    assert not bool(by_id.loc["D0", "illicit"]) and bool(by_id.loc["D0", "inspected"])
    assert by_id.loc["D0", "selection_reason"] == "random"
    assert bool(by_id.loc["D1", "illicit"]) and len(history) == 3


def test_a_mapped_results_file_carries_its_own_correction_column(capsys, tmp_path) -> None:
    """A row's own ``correction`` wins; ``--correction`` gives the rows that leave it blank
    theirs. The column is not a contract field: carried past the mapping as the file has it."""
    location = str(tmp_path / "audit.db")
    _decided(location, 3)
    _post(location, _result(0), _result(1))
    mapping = tmp_path / "results.yaml"
    mapping.write_text(
        "delimiter: ';'\n"
        "columns:\n"
        "  declaration_id: DECL\n"
        "  inspected_at: DATE\n"
        "  illicit: {column: RESULT, values: {POS: true, NEG: false}}\n"
    )
    appeals = tmp_path / "appeals.csv"
    appeals.write_text(
        "DECL;DATE;RESULT;correction\n"
        "D0;2026-05-10T09:00:00Z;NEG;appeal upheld\n"
        "D1;2026-05-11T09:00:00Z;NEG;\n"
    )
    args = ["outcomes", "ingest", str(appeals), "--db", location, "--mapping", str(mapping)]
    code, out, err = run_cli(capsys, *args, "--correction", "laboratory report")
    assert code == 0, err
    assert json.loads(out)["corrected"] == 2
    assert "correction" not in json.loads(out).get("ignored_columns", [])
    fixes = {i: _read(location, "result_history", i)[-1]["correction"] for i in ("D0", "D1")}
    assert fixes == {"D0": "appeal upheld", "D1": "laboratory report"}


def test_results_are_read_and_checked_without_holding_the_stores_write_lock(
    location, monkeypatch
) -> None:
    """A result posted held the decision store's write lock through ~20 ms of pandas work:
    inspection systems posting results one at a time starved /score, whose decisions wait
    for that lock (probe: 3,078 -> 140 requests in 12 s). Another writer now gets the lock
    while the results are read; the comparison with what is stored and the insert still run
    in one transaction (a correction still needs one)."""
    import serving.outcomes as outcomes_module

    _decided(location, 3)
    checked = outcomes_module._checked_fields
    others_wrote: list[bool] = []

    def while_reading(*args, **kwargs):
        store = open_outcome_store(location)  # another process's writer, the decisions' own
        try:
            with store.write():
                others_wrote.append(True)
        finally:
            store.close()
        return checked(*args, **kwargs)

    monkeypatch.setattr(outcomes_module, "_checked_fields", while_reading)
    assert _post(location, _result(0))["stored"] == 1
    assert others_wrote == [True]
    with pytest.raises(OutcomesRefused, match="a different result is already stored"):
        _post(location, _result(0, illicit=False, offence_type=None, revenue_recovered=None))
    assert _post(location, _result(0, **CLEARED))["corrected"] == 1


def test_a_declaration_decided_while_its_result_is_read_is_checked_again(
    location, monkeypatch
) -> None:
    """The results are read outside the lock, against the declarations' times read before:
    one decided in between (another worker) is checked again under the lock, so a result
    recorded before its declaration is still refused, not stored."""
    import dataclasses

    import serving.outcomes as outcomes_module
    from serving.store import open_store

    _decided(location, 3)  # D0-D2; D3 comes while the result is read
    checked = outcomes_module._checked_fields
    calls: list[int] = []

    def while_reading(*args, **kwargs):
        if not calls:
            store = open_store(location)
            text = json.dumps({"declaration_id": "D3", "declared_at": "2026-05-04T10:00:00Z"})
            store.record([dataclasses.replace(_record(3), declaration_json=text, lane="red")])
            store.close()
        calls.append(1)
        return checked(*args, **kwargs)

    monkeypatch.setattr(outcomes_module, "_checked_fields", while_reading)
    with pytest.raises(OutcomesRefused, match="before declared_at"):
        _post(location, _result(3, inspected_at="2026-05-02T09:00:00Z"))
    assert len(calls) == 2  # read again under the lock
    assert _read(location, "count") == 0


def test_post_outcomes_skips_and_names_parcels_never_decided_when_asked(stub_runtime, tmp_path):
    """A parcel sent to the clearance system's fallback lane (after a 504) was inspected
    without a decision: its result refused its whole batch (probe 31). With skip_unknown the
    others are stored and it is named."""
    with stub_service_client(tmp_path, stub_runtime, "serve:\n  max_batch: 50\n") as client:
        (declaration,) = make_declarations(1, seed=6, prefix="FALLBACK")
        r = client.post(
            "/score", json={"declarations": [declaration]}, headers={"X-API-Key": SCORER_KEY}
        )
        assert r.status_code == 200, r.text
        decided = {
            "declaration_id": declaration["declaration_id"],
            "inspected_at": "2026-05-02T08:00:00Z",
            "illicit": False,
        }
        fallback = {**decided, "declaration_id": "NEVER-SCORED-1"}
        headers = {"X-API-Key": INSPECTOR_KEY}
        refused = client.post("/outcomes", json={"outcomes": [decided, fallback]}, headers=headers)
        assert refused.status_code == 400, refused.text  # as before, without the flag
        stored = client.post(
            "/outcomes",
            json={"outcomes": [decided, fallback], "skip_unknown": True},
            headers=headers,
        )
        assert stored.status_code == 200, stored.text
        assert stored.json() == {
            "stored": 1, "unchanged": 0, "skipped_unknown": 1,
            "skipped_unknown_ids": ["NEVER-SCORED-1"],
        }  # fmt: skip
        again = client.post(
            "/outcomes", json={"outcomes": [fallback], "skip_unknown": True}, headers=headers
        )
        assert again.json() == {
            "stored": 0, "unchanged": 0, "skipped_unknown": 1,
            "skipped_unknown_ids": ["NEVER-SCORED-1"],
        }  # fmt: skip
