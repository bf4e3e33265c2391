"""A result keeps the selection reason it is given (an administration's results file knows which
inspections its random quota drew), on both stores; `history export` gives it back over the
derived one; the results' chain still verifies what was stored before the reason was kept."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.intake.io import read_declarations
from serving.audit.chain import record_mac
from serving.audit.verify import verify_results
from serving.main import app
from serving.openapi import build_document
from serving.outcomes import OutcomesRefused, store_outcomes
from serving.store import open_outcome_store, open_store
from tests.test_serving.conftest import (
    INSPECTOR_KEY,
    SCORER_KEY,
    execute_sql,
    make_declarations,
    query_sql,
    run_cli,
    stub_service_client,
)
from tests.test_serving.test_store import _record

KEY = b"r" * 40
NOW = pd.Timestamp("2026-06-01", tz="UTC")
# declaration id -> (first decision's lane, exploration, reason in the results file, exported)
CASES = {
    "D0": ("green", False, "Aleatório", "random"),  # the administration's own random quota
    "D1": ("red", False, "Parametrização", "rule:CANAL_VERMELHO"),
    "D2": ("green", False, "", "manual"),  # none given: derived as before
    "D3": ("green", True, "", "random"),
}
MAPPING = (
    "delimiter: ';'\n"
    "columns:\n"
    "  declaration_id: DECL\n"
    "  inspected_at: DATE\n"
    "  illicit: {column: RESULT, values: {POS: true, NEG: false}}\n"
    "  selection_reason:\n"
    "    column: WHY\n"
    "    values: {Aleatório: random, Parametrização: 'rule:CANAL_VERMELHO'}\n"
)


@pytest.fixture(autouse=True)
def _audit_key(monkeypatch) -> None:
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())


def _decided(location: str) -> None:
    store = open_store(location)
    records = []
    for n, (declaration_id, (lane, exploration, _, _)) in enumerate(CASES.items()):
        text = json.dumps(
            {"declaration_id": declaration_id, "declared_at": f"2026-05-01T10:00:0{n}.000000Z"}
        )
        records.append(
            dataclasses.replace(
                _record(n),
                decision_id=f"dec-{declaration_id}",
                declaration_id=declaration_id,
                declaration_json=text,
                lane=lane,
                exploration=exploration,
            )
        )
    store.record(records)
    store.close()


def _results(**reasons: str | None) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "declaration_id": declaration_id,
                "inspected_at": "2026-05-02T09:00:00Z",
                "illicit": False,
                "selection_reason": reason,
            }
            for declaration_id, reason in reasons.items()
        ]
    )


def _store(location: str, frame: pd.DataFrame) -> dict[str, int]:
    outcomes = open_outcome_store(location)
    try:
        return store_outcomes(outcomes, frame, source="t", now=NOW)
    finally:
        outcomes.close()


def _exported(capsys, location: str, out) -> dict[str, str]:
    code, _, err = run_cli(capsys, "history", "export", "--db", location, "--out", str(out))
    assert code == 0, err
    history, _ = read_declarations(out, with_outcomes=True)
    inspected = history[history["inspected"].astype(bool)]
    return dict(zip(inspected["declaration_id"], inspected["selection_reason"], strict=True))


def _verify(location: str) -> dict:
    outcomes = open_outcome_store(location, read_only=True)
    try:
        return verify_results(outcomes, KEY)
    finally:
        outcomes.close()


# --- outcomes ingest, then history export ---------------------------------------------------


def test_ingested_reasons_are_exported_over_the_derived_ones(location, capsys, tmp_path) -> None:
    """The probe's case: `outcomes ingest --mapping` with the file's reasons, then `history
    export`: the administration's random selections stay `random`, its rules `rule:...`."""
    _decided(location)
    rows = "".join(f"{d};2026-05-02T09:00:00Z;NEG;{why}\n" for d, (_, _, why, _) in CASES.items())
    (tmp_path / "results.csv").write_text("DECL;DATE;RESULT;WHY\n" + rows)
    (tmp_path / "results.yaml").write_text(MAPPING)
    source, mapping = str(tmp_path / "results.csv"), str(tmp_path / "results.yaml")
    run = CliRunner().invoke(
        app, ["outcomes", "ingest", source, "--mapping", mapping, "--db", location]
    )
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["stored"] == len(CASES)
    exported = _exported(capsys, location, tmp_path / "history.parquet")
    assert exported == {d: reason for d, (_, _, _, reason) in CASES.items()}


def test_a_result_sent_without_a_reason_keeps_the_derived_one(location, capsys, tmp_path):
    _decided(location)
    _store(location, _results(D0=None, D1=None))  # no column at all, as before
    _store(location, _results(D2=None).drop(columns="selection_reason"))
    exported = _exported(capsys, location, tmp_path / "history.parquet")
    assert exported == {"D0": "manual", "D1": "model", "D2": "manual"}


# --- the contract's rules and conflicts -----------------------------------------------------


def test_the_same_reason_again_is_unchanged_another_is_a_conflict(location) -> None:
    _decided(location)
    assert _store(location, _results(D0="random")) == {"stored": 1, "unchanged": 0}
    assert _store(location, _results(D0="random")) == {"stored": 0, "unchanged": 1}
    for posted in ("targeted", None):  # another reason, or the same result without one
        with pytest.raises(OutcomesRefused) as refused:
            _store(location, _results(D0=posted))
        (problem,) = refused.value.problems
        assert (problem.field, problem.rule) == ("selection_reason", "result.conflict")


def test_a_reason_for_a_result_stored_without_one_is_a_conflict(location) -> None:
    """As for offence_type or revenue_recovered: a stored result is never amended (it is
    chained), so completing a missing reason is refused, saying why, and nothing is stored."""
    _decided(location)
    _store(location, _results(D0=None))
    with pytest.raises(OutcomesRefused) as refused:
        _store(location, _results(D0="random", D1="random"))
    (problem,) = refused.value.problems
    assert problem.rule == "result.conflict" and "stored without one" in problem.msg
    assert query_sql(location, "SELECT COUNT(*) FROM outcomes") == [(1,)]


@pytest.mark.parametrize(
    ("reason", "rule"),
    [("r" * 65, "selection_reason.length"), ("ran\x00dom", "selection_reason.type")],
)
def test_a_reason_the_contract_refuses_stores_nothing(location, reason, rule) -> None:
    _decided(location)
    with pytest.raises(OutcomesRefused) as refused:
        _store(location, _results(D0="random", D1=reason))
    assert [(p.declaration_id, p.field) for p in refused.value.problems] == [
        ("D1", "selection_reason")
    ]
    assert refused.value.problems[0].rule == rule, refused.value.problems
    assert query_sql(location, "SELECT COUNT(*) FROM outcomes") == [(0,)]


# --- the chain -------------------------------------------------------------------------------


def _old_store(location: str) -> None:
    """Results as the version before this one stored them: no selection_reason column."""
    _decided(location)
    _store(location, _results(D0=None, D1=None, D2=None))
    execute_sql(location, "ALTER TABLE outcomes DROP COLUMN selection_reason")


def test_results_stored_before_the_reason_verify_as_they_were_macd(location) -> None:
    """Their MACs cover the six values the previous version MAC'd, nothing else: a store
    written then verifies as it is, before and after a writer adds the column."""
    _old_store(location)
    rows = query_sql(
        location,
        "SELECT seq, recorded_at, prev_mac, mac, declaration_id, inspected_at, illicit, "
        "offence_type, revenue_recovered, source FROM outcomes ORDER BY seq",
    )
    for seq, recorded_at, prev, mac, *values in rows:
        assert bytes(mac) == record_mac(KEY, seq, recorded_at, bytes(prev), values)
    assert _verify(location)["intact"] is True  # read-only: the column is not there yet
    _store(location, _results(D3="random"))  # a writer's open adds the column
    assert query_sql(location, "SELECT COUNT(selection_reason) FROM outcomes") == [(1,)]
    report = _verify(location)
    assert report["intact"] is True and report["checked"] == 4, report


def test_an_edited_reason_is_named(location) -> None:
    _old_store(location)
    _store(location, _results(D3="random"))
    execute_sql(location, "UPDATE outcomes SET selection_reason = 'targeted' WHERE seq = 4")
    problem = _verify(location)["problem"]
    assert (problem["kind"], problem["seq"]) == ("altered", 4), problem


@pytest.mark.parametrize("statement", ["= NULL WHERE seq = 4", "= 'random' WHERE seq = 2"])
def test_a_reason_removed_or_added_behind_the_service_is_named(location, statement) -> None:
    """Removed from a new result, or given to an old one: either form stands for only itself."""
    _old_store(location)
    _store(location, _results(D3="random"))
    execute_sql(location, f"UPDATE outcomes SET selection_reason {statement}")
    problem = _verify(location)["problem"]
    assert problem is not None and problem["kind"] == "altered", problem


def test_audit_verify_says_an_old_store_is_intact_and_names_an_edited_reason(tmp_path) -> None:
    location = str(tmp_path / "audit.db")
    _old_store(location)
    runner = CliRunner()
    old = runner.invoke(app, ["audit", "verify", "--db", location])
    assert old.exit_code == 0 and "intact: 3 inspection results" in old.output, old.output
    _store(location, _results(D3="random"))
    execute_sql(location, "UPDATE outcomes SET selection_reason = 'rule:X' WHERE seq = 4")
    broken = runner.invoke(app, ["audit", "verify", "--db", location])
    assert broken.exit_code == 1
    assert "NOT INTACT: altered at result seq 4 (declaration D3)" in broken.output


def test_history_export_reads_an_old_store_it_does_not_write(capsys, tmp_path) -> None:
    location = str(tmp_path / "audit.db")
    _old_store(location)
    exported = _exported(capsys, location, tmp_path / "history.parquet")
    assert exported == {"D0": "manual", "D1": "model", "D2": "manual"}
    assert "selection_reason" not in {
        r[1] for r in query_sql(location, "PRAGMA table_info(outcomes)")
    }


# --- POST /outcomes ----------------------------------------------------------------------------


def test_post_outcomes_keeps_the_reason_for_history_export(stub_runtime, capsys, tmp_path):
    with stub_service_client(tmp_path, stub_runtime, "serve:\n  max_batch: 50\n") as client:
        declarations = make_declarations(3, seed=77, prefix="SEL")
        r = client.post(
            "/score", json={"declarations": declarations}, headers={"X-API-Key": SCORER_KEY}
        )
        assert r.status_code == 200, r.text
        ids = [d["declaration_id"] for d in declarations]
        results = [
            {"declaration_id": i, "inspected_at": "2026-05-02T08:00:00Z", "illicit": False}
            for i in ids
        ]
        results[0]["selection_reason"] = "random"
        results[1]["selection_reason"] = "rule:CANAL_AMARELO"
        headers = {"X-API-Key": INSPECTOR_KEY}
        too_long = [{**results[0], "selection_reason": "x" * 65}]
        refused = client.post("/outcomes", json={"outcomes": too_long}, headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["problems"][0]["loc"] == ["outcomes", 0, "selection_reason"]
        stored = client.post("/outcomes", json={"outcomes": results}, headers=headers)
        assert stored.json() == {"stored": 3, "unchanged": 0}, stored.text
        other = [{**results[0], "selection_reason": "targeted"}]
        conflict = client.post("/outcomes", json={"outcomes": other}, headers=headers)
        assert conflict.status_code == 409, conflict.text
    documented = build_document(50)["components"]["schemas"]["OutcomeResult"]["properties"]
    assert documented["selection_reason"]["maxLength"] == 64
    exported = _exported(capsys, str(tmp_path / "audit.db"), tmp_path / "history.parquet")
    assert exported[ids[0]] == "random" and exported[ids[1]] == "rule:CANAL_AMARELO"
    assert exported[ids[2]] in {"model", "manual", "random"}  # derived, as before
