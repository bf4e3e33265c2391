"""``outcomes ingest`` on an administration's monthly results files (probe 37): a month that
corrects a few stored results beside its new ones, an empty month, results left out by
--skip-unknown named, and a result listed twice cell for cell."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.test_serving.conftest import decided_store, run_cli

HEADER = "DECL;DATE;RESULT;REMARK\n"
MAPPING = (
    "delimiter: ';'\n"
    "columns:\n"
    "  declaration_id: DECL\n"
    "  inspected_at: {column: DATE, format: '%d/%m/%Y', timezone: UTC}\n"
    "  illicit: {column: RESULT, values: {NIL: false, DUTY: true}}\n"
)
WITH_REMARKS = MAPPING + "  correction: REMARK\n"
LAB = "informe de laboratorio"


def _store(tmp_path: Path, n: int = 4) -> str:
    return decided_store(tmp_path, {f"D{i}": "2026-05-01T10:00:00.000000Z" for i in range(n)})


class Run:
    """What ``parcelrisk outcomes ingest`` answered: its exit code, stdout, stderr."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.exit_code, self.stdout, self.output = code, out, out + err


def _ingest(
    capsys, tmp_path: Path, location: str, text: str, mapping: str, *args: str, name="m.csv"
):
    source, mapping_path = tmp_path / name, tmp_path / "results.yaml"
    source.write_text(text)
    mapping_path.write_text(mapping)
    cli = ["outcomes", "ingest", str(source), "--mapping", str(mapping_path), "--db", location]
    return Run(*run_cli(capsys, *cli, *args))


def _stored(location: str) -> list[tuple]:
    with sqlite3.connect(location) as conn:
        return conn.execute(
            "SELECT declaration_id, illicit, correction FROM outcomes ORDER BY seq"
        ).fetchall()


def _july(capsys, tmp_path: Path, location: str) -> None:
    """D0 and D1 stored clean, as last month's file had them."""
    first = _ingest(
        capsys, tmp_path, location, HEADER + "D0;10/05/2026;NIL;\nD1;10/05/2026;NIL;\n", MAPPING
    )
    assert first.exit_code == 0, first.output


# --- 1. a month's file corrects a few stored results beside its new ones ---------------------


def test_a_mapped_remarks_column_corrects_its_rows_and_the_new_rows_are_stored(
    capsys, tmp_path
) -> None:
    location = _store(tmp_path)
    _july(capsys, tmp_path, location)
    month = HEADER + f"D0;10/05/2026;DUTY;{LAB}\nD1;10/05/2026;NIL;\nD2;11/05/2026;NIL;\n"
    run = _ingest(capsys, tmp_path, location, month, WITH_REMARKS)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert (summary["stored"], summary["corrected"], summary["unchanged"]) == (2, 1, 1)
    assert "REMARK" not in summary.get("ignored_columns", [])
    assert _stored(location)[2:] == [("D0", 1, LAB), ("D2", 0, None)]


def test_a_changed_result_without_its_remark_is_still_refused(capsys, tmp_path) -> None:
    location = _store(tmp_path)
    _july(capsys, tmp_path, location)
    run = _ingest(capsys, tmp_path, location, HEADER + "D0;10/05/2026;DUTY;\n", WITH_REMARKS)
    assert run.exit_code != 0
    assert "a different result is already stored for 'D0'" in run.output
    assert len(_stored(location)) == 2


def test_correction_option_is_the_reason_of_the_rows_that_differ_only(capsys, tmp_path) -> None:
    location = _store(tmp_path)
    _july(capsys, tmp_path, location)
    month = HEADER + "D0;10/05/2026;DUTY;\nD1;10/05/2026;NIL;\nD2;11/05/2026;NIL;\n"
    run = _ingest(capsys, tmp_path, location, month, MAPPING, "--correction", LAB)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert (summary["stored"], summary["corrected"], summary["unchanged"]) == (2, 1, 1)
    assert _stored(location)[2:] == [("D0", 1, LAB), ("D2", 0, None)]


def test_a_yes_no_correction_column_takes_the_reason_of_correction_option(capsys, tmp_path) -> None:
    location = _store(tmp_path)
    _july(capsys, tmp_path, location)
    flag = MAPPING + "  correction: {column: REMARK, true_values: [S], false_values: [N]}\n"
    month = HEADER + "D0;10/05/2026;DUTY;S\nD2;11/05/2026;NIL;N\n"
    refused = _ingest(capsys, tmp_path, location, month, flag)
    assert refused.exit_code != 0 and "--correction" in refused.output
    run = _ingest(capsys, tmp_path, location, month, flag, "--correction", LAB)
    assert run.exit_code == 0, run.output
    assert _stored(location)[2:] == [("D0", 1, LAB), ("D2", 0, None)]
    # a row the flag says is no correction is not made one by --correction
    unflagged = _ingest(
        capsys, tmp_path, location, HEADER + "D1;10/05/2026;DUTY;N\n", flag, "--correction", LAB
    )
    assert unflagged.exit_code != 0
    assert "a different result is already stored for 'D1'" in unflagged.output


def test_a_correction_column_must_name_a_source_column(capsys, tmp_path) -> None:
    location = _store(tmp_path)
    run = _ingest(
        capsys,
        tmp_path,
        location,
        HEADER + "D0;10/05/2026;NIL;\n",
        MAPPING + "  correction: {value: x}\n",
    )
    assert run.exit_code != 0 and "columns.correction" in run.output


# --- 2. a month without results ------------------------------------------------------------


def test_a_header_only_month_stores_nothing_says_so_and_exits_0(capsys, caplog, tmp_path):
    location = _store(tmp_path)
    run = _ingest(capsys, tmp_path, location, HEADER, MAPPING)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert (summary["stored"], summary["no_results"]) == (0, True)
    assert "no results (it has no rows): nothing stored" in caplog.text
    assert _stored(location) == []


def test_a_contract_results_file_with_its_header_alone_is_no_error(capsys, tmp_path) -> None:
    location = _store(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("declaration_id,inspected_at,illicit\n")
    code, out, err = run_cli(capsys, "outcomes", "ingest", str(empty), "--db", location)
    assert code == 0, err
    assert json.loads(out)["no_results"] is True


def test_an_empty_month_does_not_stop_the_later_months(capsys, tmp_path) -> None:
    location = _store(tmp_path)
    months = []
    for name, rows in [
        ("aug", "D0;10/05/2026;NIL;\n"),
        ("sep", ""),
        ("oct", "D1;12/05/2026;DUTY;\n"),
    ]:
        months.append(tmp_path / f"{name}.csv")
        months[-1].write_text(HEADER + rows)
    (tmp_path / "m.yaml").write_text(MAPPING)
    code, out, err = run_cli(
        capsys, "outcomes", "ingest", *map(str, months), "--mapping", str(tmp_path / "m.yaml"),
        "--db", location,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["stored"], summary["files_without_results"]) == (2, 1)
    assert [one.get("no_results", False) for one in summary["files"]] == [False, True, False]
    assert [row[0] for row in _stored(location)] == ["D0", "D1"]


def test_a_month_of_parcels_none_inspected_is_said_as_no_results(capsys, caplog, tmp_path):
    location = _store(tmp_path)
    selectivity = MAPPING + "  inspected: {column: REMARK, values: {S: true, N: false}}\n"
    run = _ingest(
        capsys, tmp_path, location, HEADER + "D0;10/05/2026;NIL;N\nD1;;NIL;N\n", selectivity
    )
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert (summary["stored"], summary["skipped_not_inspected"], summary["no_results"]) == (
        0,
        2,
        True,
    )
    assert "its 2 row(s) are of parcels not inspected" in caplog.text


# --- 3. the results --skip-unknown leaves out are named -------------------------------------

# X1 inspected before the store's first declaration (2026-05-01): a late result of the history
# before the service; X2 after it: a parcel never sent to the service
UNKNOWN = HEADER + "D0;10/05/2026;NIL;\nX1;20/04/2026;DUTY;\nX2;12/05/2026;NIL;\n"


def test_skip_unknown_names_the_ids_it_leaves_out_and_those_of_the_history(
    capsys, caplog, tmp_path
) -> None:
    location = _store(tmp_path)
    run = _ingest(capsys, tmp_path, location, UNKNOWN, MAPPING, "--skip-unknown")
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert (summary["stored"], summary["skipped_unknown"]) == (1, 2)
    assert summary["skipped_unknown_ids"] == ["X1", "X2"]
    assert summary["skipped_unknown_before_store"] == 1
    assert summary["skipped_unknown_before_store_ids"] == ["X1"]
    warned = caplog.text
    assert "2 result(s) left out by --skip-unknown" in warned and "X1, X2" in warned
    assert "1 of them (e.g. X1) were inspected before the first declaration" in warned
    assert "history join" in warned


def test_skipped_out_writes_every_result_left_out(capsys, tmp_path) -> None:
    import pandas as pd

    location = _store(tmp_path)
    out = tmp_path / "skipped.csv"
    run = _ingest(
        capsys, tmp_path, location, UNKNOWN, MAPPING, "--skip-unknown", "--skipped-out", str(out)
    )
    assert run.exit_code == 0, run.output
    written = pd.read_csv(out)
    assert written["declaration_id"].tolist() == ["X1", "X2"]
    assert written["row"].tolist() == [2, 3]
    assert written["before_store"].tolist() == [True, False]
    assert set(written["file"]) == {"m.csv"}


def test_skipped_out_guards_ids_a_spreadsheet_would_run(capsys, tmp_path) -> None:
    """An unknown id written as a formula lands in the CSV people open as text (probe 40)."""
    import pandas as pd

    location = _store(tmp_path)
    out = tmp_path / "skipped.csv"
    hostile = HEADER + '"=HYPERLINK(""http://x/"")";12/05/2026;NIL;\n+cmd|x;12/05/2026;NIL;\n'
    run = _ingest(
        capsys, tmp_path, location, hostile, MAPPING, "--skip-unknown", "--skipped-out", str(out)
    )
    assert run.exit_code == 0, run.output
    written = pd.read_csv(out, dtype=str)
    assert written["declaration_id"].tolist() == ['\'=HYPERLINK("http://x/")', "'+cmd|x"]


def test_the_ids_in_the_summary_are_bounded(capsys, tmp_path, monkeypatch) -> None:
    import serving.cli

    monkeypatch.setattr(serving.cli, "SKIPPED_IDS_SHOWN", 1)
    location = _store(tmp_path)
    run = _ingest(capsys, tmp_path, location, UNKNOWN, MAPPING, "--skip-unknown")
    summary = json.loads(run.stdout)
    assert summary["skipped_unknown"] == 2
    assert (summary["skipped_unknown_ids"], summary["skipped_unknown_ids_shown"]) == (["X1"], 1)


def test_skipped_out_without_skip_unknown_is_refused(capsys, tmp_path) -> None:
    location = _store(tmp_path)
    run = _ingest(capsys, tmp_path, location, UNKNOWN, MAPPING, "--skipped-out", "x.csv")
    assert run.exit_code != 0 and "give both" in run.output


# --- 5. a result listed twice ---------------------------------------------------------------


def test_a_result_listed_twice_cell_for_cell_is_read_once(capsys, caplog, tmp_path) -> None:
    location = _store(tmp_path)
    month = HEADER + "D0;10/05/2026;NIL;\nD1;11/05/2026;DUTY;\nD0;10/05/2026;NIL;\n"
    run = _ingest(capsys, tmp_path, location, month, MAPPING)
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert (summary["stored"], summary["repeated_results_read_once"]) == (2, 1)
    assert "1 result row(s) repeat an earlier row value for value (row 3 (D0) = row 1)" in (
        caplog.text
    )
    assert [row[0] for row in _stored(location)] == ["D0", "D1"]


def test_a_repeat_that_differs_is_refused_naming_both_rows(capsys, tmp_path) -> None:
    location = _store(tmp_path)
    month = HEADER + "D0;10/05/2026;NIL;\nD1;11/05/2026;DUTY;\nD0;10/05/2026;DUTY;\n"
    run = _ingest(capsys, tmp_path, location, month, MAPPING)
    assert run.exit_code != 0
    assert "'D0' has 2 results in this batch (rows 1, 3), which differ" in run.output
    assert _stored(location) == []
