"""Inspection results: the checker, the outcomes table and `parcelrisk outcomes ingest`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.outcome_store import SqliteOutcomeStore, sqlite_path
from serving.outcomes import OutcomesRefused, store_outcomes
from tests.test_serving.conftest import stored_decision

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def decision(declaration_id: str, declared_at: str, *, exploration: bool = False, n: int = 0):
    """A stored decision whose declaration is just its id and time (what the checker reads)."""
    return stored_decision(
        {"declaration_id": declaration_id, "declared_at": declared_at},
        decision_id=f"dec-{declaration_id}-{n}",
        scored_at=f"2026-05-0{1 + n}T12:00:00.000000+00:00",
        exploration=exploration,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    """The results beside two stored decisions, in each kind of decision store."""
    from serving.store import open_outcome_store, open_store

    if request.param == "sqlite":
        location = str(tmp_path / "audit.db")
    else:
        location = request.getfixturevalue("postgres_url")
    decisions = open_store(location)
    decisions.record(
        [
            decision("D1", "2026-05-01T10:00:00.000000Z"),
            decision("D2", "2026-05-02T10:00:00.000000Z"),
        ]
    )
    decisions.close()
    outcomes = open_outcome_store(location)
    outcomes.test_location = location  # what --db names
    yield outcomes
    outcomes.close()


def _stored_rows(store) -> list[tuple]:
    query = (
        "SELECT seq, declaration_id, inspected_at, illicit, offence_type, revenue_recovered, "
        "source FROM outcomes ORDER BY seq"
    )
    if isinstance(store, SqliteOutcomeStore):
        return store._conn.execute(query).fetchall()
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query))]


def result(declaration_id: str = "D1", **changes) -> dict:
    return {
        "declaration_id": declaration_id,
        "inspected_at": "2026-05-03T09:00:00Z",
        "illicit": True,
        "offence_type": "undervaluation",
        "revenue_recovered": 12.5,
        **changes,
    }


def post(store, *results) -> dict[str, int]:
    return store_outcomes(store, pd.DataFrame(list(results)), source="test", now=NOW)


def test_results_are_stored_and_an_identical_repost_is_unchanged(store) -> None:
    cleared = result("D2", illicit=False, offence_type=None, revenue_recovered=None)
    assert post(store, result(), cleared) == {"stored": 2, "unchanged": 0}
    assert post(store, result(), cleared) == {"stored": 0, "unchanged": 2}
    assert store.count() == 2
    assert _stored_rows(store) == [
        (1, "D1", "2026-05-03T09:00:00.000000Z", 1, "undervaluation", 12.5, "test"),
        (2, "D2", "2026-05-03T09:00:00.000000Z", 0, None, None, "test"),
    ]


def test_text_values_read_like_a_file(store) -> None:
    text = result(illicit="yes", offence_type=" Undervaluation ", revenue_recovered="12.5")
    assert post(store, text) == {"stored": 1, "unchanged": 0}
    assert post(store, result()) == {"stored": 0, "unchanged": 1}


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        (result("D404"), "declaration_id.known"),
        (result(inspected_at="2026-04-30T09:00:00Z"), "inspected_at.after_declaration"),
        (result(inspected_at="2026-06-05T00:00:00Z"), "inspected_at.not_future"),
        (result(illicit=False, revenue_recovered=None), "offence_type.without_offence"),
        (result(illicit=False, offence_type=None), "revenue_recovered.without_offence"),
        (result(offence_type="smuggling"), "offence_type.code"),
        (result(revenue_recovered=-1.0), "revenue_recovered.minimum"),
        (result(illicit="maybe"), "illicit.type"),
        (result(inspected_at=None), "inspected_at.when_inspected"),
        (result(None), "declaration_id.required"),
        (result("  "), "declaration_id.required"),
    ],
)
def test_a_bad_result_refuses_the_whole_batch(store, bad, rule) -> None:
    good = result("D2")
    with pytest.raises(OutcomesRefused) as refused:
        post(store, good, bad)
    assert rule in {p.rule for p in refused.value.problems}
    assert {p.row for p in refused.value.problems} == {1}
    assert "nothing stored" in str(refused.value) and "\n" not in str(refused.value)
    assert store.count() == 0


def test_the_same_id_twice_in_a_batch_is_refused(store) -> None:
    with pytest.raises(OutcomesRefused) as refused:
        post(store, result(), result(revenue_recovered=13.0))
    assert [(p.row, p.rule) for p in refused.value.problems] == [
        (0, "declaration_id.unique"),
        (1, "declaration_id.unique"),
    ]
    assert store.count() == 0


def test_a_result_listed_twice_value_for_value_in_a_batch_is_read_once(store) -> None:
    # a client's retry loop re-sending a row within its batch: nothing new, so nothing refused
    counts = post(store, result(), result("D2"), result())
    assert counts == {"stored": 2, "unchanged": 0, "repeated_results_read_once": 1}
    assert [row[1] for row in _stored_rows(store)] == ["D1", "D2"]
    # and again, whole: every row unchanged, the repeat still read once
    counts = post(store, result(), result())
    assert counts == {"stored": 0, "unchanged": 1, "repeated_results_read_once": 1}
    assert store.count() == 2


def test_a_conflicting_second_result_is_refused_and_the_first_kept(store) -> None:
    post(store, result())
    with pytest.raises(OutcomesRefused) as refused:
        post(store, result("D2"), result(revenue_recovered=99.0))
    (problem,) = refused.value.problems
    assert (problem.row, problem.rule, problem.field) == (1, "result.conflict", "revenue_recovered")
    assert "A stored result is never edited: to replace it, send this one with a correction" in (
        problem.msg
    )
    assert store.count() == 1  # D2 not stored either


def test_results_need_their_key_columns(store) -> None:
    from features.errors import ParcelriskError

    with pytest.raises(ParcelriskError, match="illicit"):
        store_outcomes(store, pd.DataFrame([{"declaration_id": "D1"}]), source="t")


def test_only_sqlite_locations() -> None:
    from features.errors import ParcelriskError

    assert sqlite_path("sqlite:///a/b.db") == Path("a/b.db")
    with pytest.raises(ParcelriskError, match="SQLite"):
        sqlite_path("postgresql://host/db")


# --- parcelrisk outcomes ingest ---------------------------------------------------------------


def _invoke(*args: str):
    from serving.main import app

    return CliRunner().invoke(app, list(args))


def _mapped_results(tmp_path: Path, recovered: str, revenue_spec: str) -> tuple[Path, Path]:
    """A results CSV in Paris local time with D1's recovered amount, and its mapping."""
    source = tmp_path / "results.csv"
    source.write_text(
        "DECL;DATE;RESULT;KIND;RECOVERED\n"
        f"D1;03/05/2026 11:00;POS;undervaluation;{recovered}\n"
        "D2;03/05/2026 11:00;NEG;;\n"
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "columns:\n"
        "  declaration_id: DECL\n"
        "  inspected_at: {column: DATE, format: '%d/%m/%Y %H:%M', timezone: Europe/Paris}\n"
        "  illicit: {column: RESULT, values: {POS: true, NEG: false}}\n"
        "  offence_type: KIND\n"
        f"  revenue_recovered: {revenue_spec}\n"
    )
    return source, mapping


def test_ingest_a_mapped_file_through_the_same_checks(store, tmp_path: Path) -> None:
    source, mapping = _mapped_results(tmp_path, "12,5", "{column: RECOVERED, decimal: ','}")
    run = _invoke(
        "outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", store.test_location
    )
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["stored"] == 2
    # Paris summer time: 11:00 local is 09:00 UTC, as the API's result() fixture posts it
    assert post(store, result()) == {"stored": 0, "unchanged": 1}


def test_a_results_file_under_a_title_with_a_totals_row_stores_its_results(
    store, tmp_path: Path
) -> None:
    source, mapping = _mapped_results(tmp_path, "12,5", "{column: RECOVERED, decimal: ','}")
    body = source.read_text()
    source.write_text(f"Resultats des controles - mai 2026\n\n{body};;;;\nTOTAL;;;;12,5\n")
    run = _invoke(
        "outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", store.test_location
    )
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output[run.output.index("{") :])
    assert summary["stored"] == 2
    assert summary["rows_not_results_dropped"] == {"empty": 1, "totals": 1}


def test_a_results_file_names_its_rows_as_the_file_holds_them_past_an_empty_row(
    store, tmp_path: Path
) -> None:
    source, mapping = _mapped_results(tmp_path, "12,5", "{column: RECOVERED, decimal: ','}")
    header, first, second = source.read_text().splitlines()
    source.write_text(f"{header}\n;;;;\n{first}\n{second.replace('NEG', 'MAYBE')}\n")
    run = _invoke(
        "outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", store.test_location
    )
    assert run.exit_code != 0
    said = run.output + str(run.exception)
    assert "row 3 (D2): 'MAYBE'" in said  # the third data row, not the second left


def test_ingest_a_results_file_with_revenue_in_another_currency(store, tmp_path: Path) -> None:
    spec = "{column: RECOVERED, decimal: ',', currency: BRL}"
    source, mapping = _mapped_results(tmp_path, "62,5", spec)
    params = tmp_path / "params.yaml"
    params.write_text("features:\n  fx_to_base: {EUR: 1.0, BRL: 0.2}\n")
    args = ["outcomes", "ingest", str(source), "--mapping", str(mapping)]
    args += ["--db", store.test_location, "--params", str(params)]
    run = _invoke(*args)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output)
    assert summary["revenue_recovered_converted_to_eur"] == {"from": "BRL", "rows": 1}
    # 62.5 BRL x 0.2 = 12.5 EUR: the result the API's fixture posts in EUR
    assert post(store, result()) == {"stored": 0, "unchanged": 1}


def test_a_mapped_file_with_results_the_mapping_leaves_out_is_refused(
    store, tmp_path: Path
) -> None:
    """offence_type and revenue_recovered under their contract names, not mapped: the result
    was stored without them, and the full one then refused as a conflict for good."""
    from features.errors import ParcelriskError

    source = tmp_path / "results.csv"
    source.write_text(
        "DECL;DATE;RESULT;offence_type;revenue_recovered;NOTE\n"
        "D1;2026-05-03T09:00:00Z;POS;undervaluation;12.5;x\n"
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "columns:\n  declaration_id: DECL\n  inspected_at: DATE\n"
        "  illicit: {column: RESULT, values: {POS: true, NEG: false}}\n"
    )
    run = _invoke(
        "outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", store.test_location
    )
    assert isinstance(run.exception, ParcelriskError)
    assert "offence_type, revenue_recovered hold results the mapping" in str(run.exception)
    assert store.count() == 0
    mapping.write_text(
        mapping.read_text()
        + "  offence_type: offence_type\n  revenue_recovered: revenue_recovered\n"
    )
    run = _invoke(
        "outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", store.test_location
    )
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["ignored_columns"] == ["NOTE"]  # listed, as ingest lists them


def test_ingest_refuses_a_file_with_one_bad_row(store, tmp_path: Path) -> None:
    source = tmp_path / "results.csv"
    source.write_text(
        "declaration_id,inspected_at,illicit,offence_type,revenue_recovered\n"
        "D1,2026-05-03T09:00:00Z,true,undervaluation,12.5\n"
        "D404,2026-05-03T09:00:00Z,false,,\n"
    )
    run = _invoke("outcomes", "ingest", str(source), "--db", store.test_location)
    assert isinstance(run.exception, OutcomesRefused)
    assert "row 2 (D404): declaration_id: 'D404' has no decision" in str(run.exception)
    assert store.count() == 0


def test_a_results_mapping_maps_no_declaration_fields(store, tmp_path: Path) -> None:
    from features.intake.contract import ContractError

    source = tmp_path / "results.csv"
    source.write_text("DECL,HS\nD1,610910\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("columns:\n  declaration_id: DECL\n  hs_code: HS\n")
    run = _invoke(
        "outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", store.test_location
    )
    assert isinstance(run.exception, ContractError)
    assert "not: hs_code" in str(run.exception)


def test_ingest_into_a_missing_store_is_refused_without_creating_it(tmp_path: Path) -> None:
    from features.errors import ParcelriskError

    source = tmp_path / "results.csv"
    source.write_text("declaration_id,inspected_at,illicit\nD1,2026-05-03T09:00:00Z,false\n")
    run = _invoke("outcomes", "ingest", str(source), "--db", str(tmp_path / "typo.db"))
    assert isinstance(run.exception, ParcelriskError)
    assert "no decision store" in str(run.exception)
    assert not (tmp_path / "typo.db").exists()


def test_ingest_several_results_files_each_whole_in_order(store, tmp_path: Path) -> None:
    """A file of results a month: each stored whole or not at all, in the order given; a
    refused one names itself and what was stored before it, and the same command run again
    after the correction stores the rest (identical results change nothing)."""
    header = "declaration_id,inspected_at,illicit,offence_type,revenue_recovered\n"
    may = tmp_path / "may.csv"
    may.write_text(header + "D1,2026-05-03T09:00:00Z,true,undervaluation,12.5\n")
    june = tmp_path / "june.csv"
    june.write_text(header + "D2,2026-05-04T09:00:00Z,false,,\nD404,2026-05-04T09:00:00Z,false,,\n")
    args = ["outcomes", "ingest", str(may), str(june), "--db", store.test_location]
    run = _invoke(*args)
    message = str(run.exception)
    assert run.exit_code != 0 and "june.csv: " in message and "D404" in message
    assert "Nothing of june.csv is stored; stored before it: " in message
    assert "may.csv (1 stored)" in message
    assert [r[1] for r in _stored_rows(store)] == ["D1"]
    june.write_text(header + "D2,2026-05-04T09:00:00Z,false,,\n")
    run = _invoke(*args)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output)
    assert (summary["stored"], summary["unchanged"]) == (1, 1)
    assert [f["file"] for f in summary["files"]] == [str(may), str(june)]
    assert [r[1] for r in _stored_rows(store)] == ["D1", "D2"]


def test_several_results_files_are_all_read_before_any_is_stored(store, tmp_path: Path) -> None:
    may = tmp_path / "may.csv"
    may.write_text("DECL,DATE,RESULT\nD1,2026-05-03T09:00:00Z,POS\n")
    june = tmp_path / "june.csv"
    june.write_text("DECL,DATE,RESULT\nD2,2026-05-04T09:00:00Z,maybe\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "columns:\n  declaration_id: DECL\n  inspected_at: DATE\n"
        "  illicit: {column: RESULT, values: {POS: true, NEG: false}}\n"
    )
    args = ["outcomes", "ingest", str(may), str(june), "--mapping", str(mapping)]
    run = _invoke(*args, "--db", store.test_location)
    assert str(run.exception).startswith(str(june)) and "maybe" in str(run.exception)
    assert store.count() == 0  # may.csv was fine, but nothing is stored until every file reads
    run = _invoke("outcomes", "ingest", str(may), str(may), "--db", store.test_location)
    assert "given twice" in str(run.exception)


def test_results_recorded_per_goods_item_are_one_result_per_declaration(
    store, tmp_path: Path
) -> None:
    source = tmp_path / "results.csv"
    source.write_text(
        "DECL;ITEM;DATE;FOUND;KIND;DUTY\n"
        "D1;1;2026-05-03T09:00:00Z;N;;\n"
        "D1;2;2026-05-03T09:00:00Z;Y;undervaluation;12,5\n"
        "D2;1;2026-05-04T09:00:00Z;N;;\n"
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "columns:\n  declaration_id: DECL\n  inspected_at: DATE\n"
        "  illicit: {column: FOUND, values: {Y: true, N: false}}\n  offence_type: KIND\n"
        "  revenue_recovered: {column: DUTY, decimal: ',', currency: EUR}\n"
        "items:\n  illicit: any\n  revenue_recovered: sum_given\n"
    )
    args = ["outcomes", "ingest", str(source), "--mapping", str(mapping)]
    run = _invoke(*args, "--db", store.test_location)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output)
    assert summary["stored"] == 2
    assert summary["items_collapsed"] == {"item_rows": 3, "results": 2, "most_items_in_one": 2}
    rows = {r[1]: r for r in _stored_rows(store)}
    assert rows["D1"][3] and rows["D1"][4] == "undervaluation" and rows["D1"][5] == 12.5
    assert not rows["D2"][3]


def test_outcomes_ingest_under_another_audit_key_is_refused_storing_nothing(
    store, tmp_path: Path, monkeypatch
) -> None:
    """Results stored under another key made `audit verify` call the genuine chain altered,
    for good (probe): refused as serve and score --audit-db refuse, before anything is stored."""
    source, mapping = _mapped_results(tmp_path, "12,5", "{column: RECOVERED, decimal: ','}")
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", "another-audit-key-" + "9" * 40)
    run = _invoke(
        "outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", store.test_location
    )
    assert run.exit_code != 0
    assert "was not signed with the audit key in force" in str(run.exception) + run.output
    assert store.count() == 0
