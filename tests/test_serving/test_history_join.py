"""`parcelrisk history join`: declarations and inspection results exported apart, made one
history to train a first model on (before a champion and a store exist to send results to)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from features.intake.contract import OUTCOME_COLUMNS
from features.intake.io import read_contract, read_declarations, write_declarations
from tests.test_serving.conftest import run_cli


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """A generated history split as an administration exports it: its declarations, and a
    CSV of the results (contract names) of the inspected ones."""
    from features.synthetic import generate_to_dir

    root = tmp_path_factory.mktemp("join")
    generate_to_dir(parcels=3_000, days=20, seed=8, out=root, start="2026-02-01")
    history, contract = read_declarations(root / "declarations.parquet", with_outcomes=True)
    write_declarations(history.drop(columns=list(OUTCOME_COLUMNS)), root / "decl.parquet", contract)
    results = history.loc[history["inspected"].astype(bool)].copy()
    results["inspected_at"] = results["inspected_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    columns = ["declaration_id", "inspected_at", "illicit", "offence_type"]
    columns += ["revenue_recovered", "selection_reason"]
    results[columns].to_csv(root / "results.csv", index=False)
    return {"root": root, "history": history, "results": results[columns]}


def test_joined_results_give_back_the_history_they_were_taken_from(exported, capsys):
    root = exported["root"]
    code, out, err = run_cli(
        capsys, "history", "join", str(root / "decl.parquet"),
        "--results", str(root / "results.csv"), "--out", str(root / "joined.parquet"),
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["results_joined"] == len(exported["results"])
    assert summary["declarations"] == len(exported["history"])
    joined, _ = read_declarations(root / "joined.parquet", with_outcomes=True)
    original = exported["history"].set_index("declaration_id")
    joined = joined.set_index("declaration_id").loc[original.index]
    for column in OUTCOME_COLUMNS:
        pd.testing.assert_series_equal(
            joined[column], original[column], check_names=False, check_dtype=False
        )
    assert read_contract(root / "joined.parquet") == read_contract(root / "decl.parquet")
    code, _, err = run_cli(capsys, "validate", str(root / "joined.parquet"))
    assert code == 0, err


def test_results_that_cannot_join_are_refused_naming_their_rows(exported, capsys, tmp_path):
    root = exported["root"]
    results = exported["results"].head(6).copy()
    results.iloc[1, 0] = "NOT-DECLARED"
    results.iloc[3, 0] = results.iloc[2, 0]  # two results for one declaration
    results.to_csv(tmp_path / "bad.csv", index=False)
    args = ["history", "join", str(root / "decl.parquet"), "--results", str(tmp_path / "bad.csv")]
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "h.parquet"))
    assert code != 0 and "nothing joined" in err and "Traceback" not in err
    assert (
        "row 2 (NOT-DECLARED): declaration_id: 'NOT-DECLARED' is not among the declarations" in err
    )
    assert "has 2 results in this batch" in err
    assert not (tmp_path / "h.parquet").exists()
    # the unknown one left out on request; the duplicate still refused
    results.iloc[3, 0] = results.iloc[4, 0] + "-X"
    results.to_csv(tmp_path / "bad.csv", index=False)
    code, out, err = run_cli(capsys, *args, "--out", str(tmp_path / "h.parquet"), "--skip-unknown")
    assert code == 0, err
    assert json.loads(out)["results_skipped_unknown"] == 2


def test_a_history_holding_results_takes_late_ones_and_keeps_its_own(exported, capsys, tmp_path):
    """The champion's own history, to which results came back late (a lab report, an audit):
    it was refused whole ('holds results already') and `history export --base` then wrote
    those parcels as never inspected (probe 5g). Now the late ones join, the history's own
    stay, the same result again is unchanged and a different one is refused without a
    correction."""
    root, results = exported["root"], exported["results"]
    history, contract = read_declarations(root / "declarations.parquet", with_outcomes=True)
    late = results.tail(10)
    base = history.copy()
    later = base["declaration_id"].isin(late["declaration_id"]).to_numpy()
    base.loc[later, list(OUTCOME_COLUMNS)] = None
    base.loc[later, "inspected"] = False
    write_declarations(base, tmp_path / "base.parquet", contract)
    late.to_csv(tmp_path / "late.csv", index=False)
    args = ["history", "join", str(tmp_path / "base.parquet"), "--out", str(tmp_path / "h.parquet")]
    code, out, err = run_cli(capsys, *args, "--results", str(tmp_path / "late.csv"))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["results_joined"] == 10 and summary["results_unchanged"] == 0
    joined, _ = read_declarations(tmp_path / "h.parquet", with_outcomes=True)
    original = history.set_index("declaration_id")
    joined = joined.set_index("declaration_id").loc[original.index]
    for column in OUTCOME_COLUMNS:
        pd.testing.assert_series_equal(
            joined[column], original[column], check_names=False, check_dtype=False
        )
    # the history's own results sent again: unchanged; one of them changed: refused
    code, out, err = run_cli(capsys, *args, "--results", str(root / "results.csv"))
    assert code == 0 and json.loads(out)["results_unchanged"] == len(results) - 10, err
    changed = results.head(3).copy()
    changed["illicit"] = ~changed["illicit"].astype(bool)
    changed.to_csv(tmp_path / "changed.csv", index=False)
    code, _, err = run_cli(capsys, *args, "--results", str(tmp_path / "changed.csv"))
    assert code != 0 and "a different result is already stored" in err


def test_a_refusal_names_the_row_as_its_file_holds_it(exported, capsys, tmp_path):
    """Rows left out by --skip-unknown, or results read from several files, do not shift the
    row a refusal names: it is the row of the file that holds it."""
    root = exported["root"]
    results = exported["results"].head(6).copy()
    results.iloc[0, 0] = "NOT-DECLARED"  # left out by --skip-unknown
    results.iloc[4, 3] = "not-an-offence"  # data row 5 of the file
    results.to_csv(tmp_path / "a.csv", index=False)
    exported["results"].iloc[6:9].to_csv(tmp_path / "b.csv", index=False)
    args = ["history", "join", str(root / "decl.parquet"), "--out", str(tmp_path / "h.parquet")]
    code, _, err = run_cli(capsys, *args, "--results", str(tmp_path / "a.csv"), "--skip-unknown")
    assert code != 0 and "Traceback" not in err
    assert f"row 5 ({results.iloc[4, 0]}): offence_type" in err, err
    code, _, err = run_cli(
        capsys, *args, "--results", str(tmp_path / "b.csv"), "--results", str(tmp_path / "a.csv"),
    )  # fmt: skip
    assert code != 0 and "Traceback" not in err
    assert "a.csv row 1 (NOT-DECLARED)" in err and f"a.csv row 5 ({results.iloc[4, 0]})" in err, err
    assert not (tmp_path / "h.parquet").exists()


def test_results_none_of_which_names_a_declaration_are_refused_even_when_skipping(
    exported, capsys, tmp_path
):
    """Exit 0 with nothing joined made a history with no inspected parcel, which validates;
    ids that lost their leading zeros (a spreadsheet's) are said."""
    root = exported["root"]
    results = exported["results"].head(5).copy()
    results["declaration_id"] = results["declaration_id"].str.replace("D", "", regex=False)
    results["declaration_id"] = results["declaration_id"].str.lstrip("0")
    results.to_csv(tmp_path / "excel.csv", index=False)
    code, _, err = run_cli(
        capsys, "history", "join", str(root / "decl.parquet"),
        "--results", str(tmp_path / "excel.csv"), "--out", str(tmp_path / "h.parquet"),
        "--skip-unknown",
    )  # fmt: skip
    assert code != 0 and "Traceback" not in err
    assert "none of the 5 results names a declaration of the file" in err
    assert not (tmp_path / "h.parquet").exists()


def test_a_results_file_listing_every_parcel_joins_the_inspected_ones(exported, capsys, tmp_path):
    """A national results file lists every parcel with its selectivity (inspected no on the
    green lane, no result time): those rows hold no result and are left out, counted, as
    `outcomes ingest` leaves them out (they were refused as 'inspected but no result time')."""
    root, history = exported["root"], exported["history"]
    every = history[["declaration_id"]].merge(exported["results"], on="declaration_id", how="left")
    every["inspected"] = every["inspected_at"].notna().map({True: "yes", False: "no"})
    every.to_csv(tmp_path / "every.csv", index=False)
    code, out, err = run_cli(
        capsys, "history", "join", str(root / "decl.parquet"),
        "--results", str(tmp_path / "every.csv"), "--out", str(tmp_path / "joined.parquet"),
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["results_joined"] == len(exported["results"])
    assert summary["results_skipped_not_inspected"] == len(history) - len(exported["results"])
    joined, _ = read_declarations(tmp_path / "joined.parquet", with_outcomes=True)
    assert int(joined["inspected"].sum()) == len(exported["results"])


def test_a_results_file_s_entry_times_are_kept_as_result_known_at(exported, capsys, tmp_path):
    """A lab report entered days after the inspection: its entry time is the history's
    result_known_at, so features count it from then. `history join` read the column and
    wrote it empty on every row (probe 28)."""
    root = exported["root"]
    results = exported["results"].copy()
    inspected = pd.to_datetime(results["inspected_at"], utc=True)
    late = results.index[::3]
    results["result_known_at"] = None
    results.loc[late, "result_known_at"] = (inspected[late] + pd.Timedelta(days=3)).dt.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    results.to_csv(tmp_path / "results.csv", index=False)
    code, _, err = run_cli(
        capsys, "history", "join", str(root / "decl.parquet"),
        "--results", str(tmp_path / "results.csv"), "--out", str(tmp_path / "joined.parquet"),
    )  # fmt: skip
    assert code == 0, err
    joined, _ = read_declarations(tmp_path / "joined.parquet", with_outcomes=True)
    by_id = joined.set_index("declaration_id")["result_known_at"]
    ids = results["declaration_id"]
    expected = inspected[late] + pd.Timedelta(days=3)
    assert by_id.loc[ids[late]].tolist() == expected.tolist()
    assert by_id.loc[ids.drop(late)].isna().all() and by_id.notna().sum() == len(late)


def _held_history(exported, tmp_path):
    """The generated history with its results, as `history join` is given it, and its args."""
    root = exported["root"]
    history, contract = read_declarations(root / "declarations.parquet", with_outcomes=True)
    write_declarations(history, tmp_path / "base.parquet", contract)
    args = ["history", "join", str(tmp_path / "base.parquet"), "--out", str(tmp_path / "h.parquet")]
    return history, args


def _illicit_with_revenue(exported, n: int) -> pd.DataFrame:
    results = exported["results"]
    found = results["illicit"].astype(bool) & results["revenue_recovered"].notna()
    return results.loc[found].head(n).copy()


def test_a_results_mapping_s_correction_column_corrects_held_results(exported, capsys, tmp_path):
    """The results mapping `outcomes ingest` takes, its `correction:` column included, is the
    one `history join` takes: it refused the column as an unknown contract field."""
    history, args = _held_history(exported, tmp_path)
    changed = _illicit_with_revenue(exported, 3)
    changed["revenue_recovered"] = changed["revenue_recovered"] + 10.0
    changed = changed.rename(columns={"declaration_id": "DECL", "revenue_recovered": "REV"})
    changed["WHY"] = ["appeal decided", "", "lab report"]
    changed.to_csv(tmp_path / "corr.csv", index=False)
    mapping = tmp_path / "results.yaml"
    mapping.write_text(
        "columns:\n  declaration_id: DECL\n  inspected_at: inspected_at\n  illicit: illicit\n"
        "  offence_type: offence_type\n  revenue_recovered: REV\n"
        "  selection_reason: selection_reason\n  correction: WHY\n"
    )
    run = [*args, "--results", str(tmp_path / "corr.csv"), "--mapping", str(mapping)]
    code, _, err = run_cli(capsys, *run)
    # the row without a reason differs from the held result: refused, nothing written
    assert code != 0 and "a different result is already stored" in err and "Traceback" not in err
    assert f"row 2 ({changed['DECL'].iloc[1]})" in err, err
    assert not (tmp_path / "h.parquet").exists()
    # --correction gives the reason of the rows without their own
    code, out, err = run_cli(capsys, *run, "--correction", "March appeals")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["results_corrected"] == 3 and summary["results_joined"] == 3
    joined, _ = read_declarations(tmp_path / "h.parquet", with_outcomes=True)
    revenue = joined.set_index("declaration_id")["revenue_recovered"]
    assert revenue.loc[changed["DECL"]].tolist() == pytest.approx(changed["REV"].tolist())
    untouched = history.loc[~history["declaration_id"].isin(changed["DECL"])]
    pd.testing.assert_series_equal(
        revenue.loc[untouched["declaration_id"]].reset_index(drop=True),
        untouched["revenue_recovered"].reset_index(drop=True),
        check_names=False,
        check_dtype=False,
    )


def test_a_correction_flag_column_corrects_only_the_flagged_rows(exported, capsys, tmp_path):
    _, args = _held_history(exported, tmp_path)
    changed = _illicit_with_revenue(exported, 2)
    changed["revenue_recovered"] = changed["revenue_recovered"] + 5.0
    changed["FIX"] = ["S", "N"]
    changed.to_csv(tmp_path / "flag.csv", index=False)
    mapping = tmp_path / "results.yaml"
    columns = "".join(f"  {c}: {c}\n" for c in exported["results"].columns)
    mapping.write_text(
        f"columns:\n{columns}  correction: {{column: FIX, values: {{S: true, N: false}}}}\n"
    )
    run = [*args, "--results", str(tmp_path / "flag.csv"), "--mapping", str(mapping)]
    code, _, err = run_cli(capsys, *run, "--correction", "audit")
    # the unflagged row that differs stays refused, the flagged one would be taken
    assert code != 0 and f"row 2 ({changed['declaration_id'].iloc[1]})" in err, err
    changed["FIX"] = ["S", "S"]
    changed.to_csv(tmp_path / "flag.csv", index=False)
    code, out, err = run_cli(capsys, *run, "--correction", "audit")
    assert code == 0 and json.loads(out)["results_corrected"] == 2, err


def test_a_result_listed_twice_value_for_value_joins_once(exported, capsys, caplog, tmp_path):
    """A row copied within a file, or two monthly files that overlap, say nothing new: read
    once and counted, where each was refused as 'two results, which differ'."""
    root = exported["root"]
    results = exported["results"]
    pd.concat([results.head(5), results.iloc[[2]]]).to_csv(tmp_path / "a.csv", index=False)
    results.iloc[4:8].to_csv(tmp_path / "b.csv", index=False)  # row 4 is in both files
    args = ["history", "join", str(root / "decl.parquet"), "--out", str(tmp_path / "h.parquet")]
    code, out, err = run_cli(
        capsys, *args, "--results", str(tmp_path / "a.csv"), "--results", str(tmp_path / "b.csv"),
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["results_joined"] == 8 and summary["results_repeated_read_once"] == 1
    assert summary["notes"][str(tmp_path / "a.csv")]["repeated_results_read_once"] == 1
    assert "row 6 (" in caplog.text and "= row 3" in caplog.text  # the file's rows, warned
    # a repeat that differs is still refused, naming both rows
    differing = results.head(2).copy()
    differing.iloc[1] = differing.iloc[0]
    differing.iloc[1, differing.columns.get_loc("inspected_at")] = "2026-02-19T00:00:00.000000Z"
    differing.to_csv(tmp_path / "c.csv", index=False)
    code, _, err = run_cli(capsys, *args, "--results", str(tmp_path / "c.csv"))
    assert code != 0 and "has 2 results in this batch (rows 1, 2), which differ" in err, err
