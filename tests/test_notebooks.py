"""The analysts' notebooks run top to bottom, and are stored without outputs.

Each ``notebooks/*.ipynb`` is one test (``pytest --durations`` shows its time), executed with
nbclient on this interpreter's python kernel in a temporary working directory, against one
sandbox (``models.sandbox``) built once for the module and found through
``$PARCELRISK_NOTEBOOK_DIR``. The sandbox directory is shared by the xdist workers of a run
and ``build_sandbox`` locks it, so it is built once per run whichever workers the notebooks
land on (``xdist_group`` alone does not ensure that: with pytest 9.2 and pytest-xdist 3.8,
``--dist loadgroup`` does not group, as xdist renames ``item._nodeid`` and pytest 9 reads
``item._id``).

The sandbox's live period (``serving.live_period``: its traffic scored through the worker's path,
with the results of the inspected parcels) is tested here too, on the same sandbox: it is built
once, and the notebooks 03 and 04 read it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features.errors import ParcelriskError
from models.sandbox import NOTEBOOK_DIR_ENV, RECIPE_FILE, Sandbox, build_sandbox, notebook_dir
from scripts.check_notebooks import main, notebook_problems, strip_notebook
from serving.live_period import SCORED_FILE, inspection_results, score_live_period

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # a cell stuck this long is a hang, not a slow machine

pytestmark = pytest.mark.xdist_group("notebooks")


def run_notebook(notebook, cwd: Path) -> None:
    """Execute ``notebook`` (an nbformat node) in ``cwd``; a failing cell raises its error."""
    from nbclient import NotebookClient

    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",  # jupyter_client starts it with sys.executable: this venv
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()


def printed_text(notebook) -> str:
    """Everything an executed ``notebook``'s cells printed, in order."""
    return "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )


def code_notebook(*sources: str):
    import nbformat

    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Sandbox:
    base = tmp_path_factory.getbasetemp()
    # xdist workers' temp dirs share a parent that belongs to this run (pytest-xdist's recipe
    # for a resource built once per session); a run without xdist uses its own base
    shared = base.parent if worker_id != "master" else base
    sandbox = build_sandbox(shared / "notebook-sandbox")
    score_live_period(sandbox)  # here, so that no notebook's time includes it
    return sandbox


def when(column):
    """A column of the store's ISO-8601 times as UTC timestamps."""
    import pandas as pd

    return pd.to_datetime(column, utc=True, format="ISO8601")


def read_store(db: Path, sql: str):
    import sqlite3

    import pandas as pd

    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        return pd.read_sql_query(sql, conn)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(
    path: Path, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(sandbox.root))
    # the kernel's own inline backend, as in Jupyter (the Makefile exports Agg)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        run_notebook(nbformat.read(path, as_version=4), tmp_path)
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)


def test_a_failing_cell_fails_with_its_error(tmp_path: Path) -> None:
    from nbclient.exceptions import CellExecutionError

    notebook = code_notebook("x = 1", "raise ValueError('no such column: hs7')")
    with pytest.raises(CellExecutionError, match="no such column: hs7"):
        run_notebook(notebook, tmp_path)


def test_notebooks_are_stored_without_outputs() -> None:
    assert NOTEBOOKS, "no notebooks found in notebooks/"
    assert [p for path in NOTEBOOKS for p in notebook_problems(path)] == []


def test_the_check_names_the_notebook_and_cell_with_outputs(tmp_path: Path) -> None:
    import nbformat

    notebook = code_notebook("1 + 1", "2 + 2")
    notebook.cells[1].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "4"})]
    notebook.cells[1].execution_count = 3
    path = tmp_path / "report.ipynb"
    nbformat.write(notebook, path)
    assert notebook_problems(path) == [
        f"{path}: cell 2 holds 1 output(s)",
        f"{path}: cell 2 has an execution count",
    ]
    assert strip_notebook(path)
    assert notebook_problems(path) == []
    assert not strip_notebook(path)  # nothing left to strip: the file is not rewritten


def test_the_check_exits_1_and_says_how_to_strip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import nbformat

    notebook = code_notebook("1 + 1")
    notebook.cells[0].execution_count = 1
    nbformat.write(notebook, tmp_path / "a.ipynb")
    assert main([str(tmp_path / "a.ipynb")]) == 1
    assert "make strip-notebooks" in capsys.readouterr().err
    assert main(["--strip", str(tmp_path / "a.ipynb")]) == 0
    assert main([str(tmp_path / "a.ipynb")]) == 0


def test_the_check_refuses_a_broken_notebook(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [')
    [problem] = notebook_problems(path)
    assert problem.startswith(f"{path}: not a valid notebook")


def test_the_sandbox_is_reused_not_rebuilt(sandbox: Sandbox) -> None:
    from models.registry import registry_client

    again = build_sandbox(sandbox.root)
    assert again == sandbox
    client = registry_client(sandbox.tracking_uri)
    assert len(client.search_model_versions(f"name='{sandbox.model_name}'")) == 2
    assert sandbox.challenger is not None and sandbox.challenger != sandbox.champion


def test_a_sandbox_built_otherwise_is_refused(tmp_path: Path) -> None:
    (tmp_path / RECIPE_FILE).write_text(json.dumps({"parcels": 99}))
    with pytest.raises(ParcelriskError, match=r"built with other settings \(.*parcels"):
        build_sandbox(tmp_path)


def test_a_missing_params_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ParcelriskError, match=r"params file not found: .*nope\.yaml"):
        build_sandbox(tmp_path / "sandbox", params=tmp_path / "nope.yaml")


def test_the_notebook_dir_comes_from_the_environment(tmp_path: Path) -> None:
    assert notebook_dir({NOTEBOOK_DIR_ENV: str(tmp_path)}) == tmp_path
    assert notebook_dir({}) == ROOT / "notebooks" / ".sandbox"


def test_the_live_period_decides_every_traffic_parcel_once(sandbox: Sandbox) -> None:
    import pandas as pd

    db = score_live_period(sandbox)
    traffic = pd.read_parquet(sandbox.traffic, columns=["declaration_id", "declared_at"])
    decided = read_store(db, "SELECT declaration_id, model_version FROM decisions")
    assert len(decided) == len(traffic)
    assert set(decided["declaration_id"]) == set(traffic["declaration_id"])
    assert set(decided["model_version"]) == {sandbox.champion}
    cut, until = pd.Timestamp(sandbox.cut), pd.Timestamp(sandbox.live_until)
    assert traffic["declared_at"].min() >= cut and traffic["declared_at"].max() < until
    assert cut < pd.Timestamp(sandbox.drift_at) < until  # the drift arrives inside the period


def test_the_live_period_posts_results_for_inspected_parcels_once_due(sandbox: Sandbox) -> None:
    import pandas as pd

    db = score_live_period(sandbox)
    decided = read_store(db, "SELECT declaration_id, lane, exploration FROM decisions")
    results = read_store(db, "SELECT declaration_id, inspected_at, recorded_at FROM outcomes")
    truth = pd.read_parquet(sandbox.traffic_truth, columns=["declaration_id", "inspected_at"])
    inspected = decided.loc[
        (decided["lane"] == "red") | decided["exploration"].astype(bool), "declaration_id"
    ]
    assert len(results) and set(results["declaration_id"]) <= set(inspected)
    # Posted at the end of the simulated day its exam reported in: after that day's traffic was
    # scored, before the next day's was (the store's times are real; the days are simulated).
    cut = pd.Timestamp(sandbox.cut)
    scored = read_store(db, "SELECT declared_at, scored_at FROM decisions")
    scored_day = (when(scored["declared_at"]) - cut) // pd.Timedelta(days=1)
    by_day = when(scored["scored_at"]).groupby(scored_day.to_numpy()).agg(["min", "max"])
    day = ((when(results["inspected_at"]) - cut) // pd.Timedelta(days=1)).to_numpy()
    recorded = when(results["recorded_at"]).to_numpy()
    assert (recorded > by_day["max"].reindex(day).to_numpy()).all()
    following = by_day["min"].reindex(day + 1)
    assert (recorded[following.notna().to_numpy()] < following.dropna().to_numpy()).all()
    # every exam that reported before the period ended came back; the later ones did not
    due = truth.loc[
        truth["declaration_id"].isin(inspected)
        & (pd.to_datetime(truth["inspected_at"], utc=True) < pd.Timestamp(sandbox.live_until)),
        "declaration_id",
    ]
    assert set(results["declaration_id"]) == set(due)
    assert len(due) < len(inspected)  # the period ends with exams still out


def test_the_live_period_is_scored_once(sandbox: Sandbox) -> None:
    db = score_live_period(sandbox)
    before = (db.stat().st_mtime_ns, (db.parent / SCORED_FILE).read_text())
    assert score_live_period(sandbox) == db
    assert (db.stat().st_mtime_ns, (db.parent / SCORED_FILE).read_text()) == before


def test_exams_report_red_and_exploration_parcels_only() -> None:
    import numpy as np
    import pandas as pd

    truth = pd.DataFrame(
        {
            "declaration_id": ["a", "b", "c", "d"],
            "illicit": [True, False, True, True],
            "offence_type": ["undervaluation", "undervaluation", "counterfeit", "prohibited"],
            "revenue_at_stake": [120.0, 80.0, 30.0, 50.0],
        }
    )
    inspected_at = pd.Series(pd.date_range("2026-03-02", periods=4, freq="h", tz="UTC"))
    exams = inspection_results(
        np.array(["red", "green", "yellow", "green"]),
        np.array([False, True, False, True]),
        truth,
        inspected_at,
    )
    assert exams["declaration_id"].tolist() == ["a", "b", "d"]  # yellow: a documentary check
    assert exams["offence_type"].isna().tolist() == [False, True, False]  # clean: no offence
    assert exams["offence_type"].iloc[[0, 2]].tolist() == ["undervaluation", "prohibited"]
    assert exams["revenue_recovered"].tolist()[0] == 120.0
    assert np.isnan(exams["revenue_recovered"].tolist()[1])  # clean: nothing recovered
    assert (exams["inspected_at"] == inspected_at.iloc[[0, 1, 3]].to_numpy()).all()


def test_a_sandbox_with_no_live_days_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParcelriskError, match=r"live_days must be at least 1.*live_days=0"):
        build_sandbox(tmp_path / "sandbox", live_days=0)
