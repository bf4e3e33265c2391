"""The notebooks read an analyst's own outputs when the environment names them
(``models.workspace``), and the sandbox only when it names none.

The path resolution is tested on tiny directories; one notebook (01, the cheapest: no model)
runs on a small generated history's features, with no sandbox built.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.contract import OUTCOME_COLUMNS
from models.sandbox import NOTEBOOK_DIR_ENV, REPO_PARAMS
from models.workspace import (
    DECLARATIONS_ENV,
    FEATURES_ENV,
    OUTPUT_ENVS,
    PARAMS_ENV,
    STORE_ENV,
    TRACKING_ENV,
    TRUTH_ENV,
    open_workspace,
    workspace_from_env,
)
from tests.test_notebooks import ROOT, printed_text, run_notebook

pytestmark = pytest.mark.xdist_group("notebooks")


def features_dir(root: Path, declarations: str | None) -> Path:
    """A directory shaped like `features build` output (only what resolution looks at)."""
    out = root / "features"
    out.mkdir(parents=True)
    (out / "features.parquet").write_bytes(b"")
    (out / "source.json").write_text(json.dumps({"declarations": declarations, "gate": "passed"}))
    return out


def test_no_variable_means_the_sandbox() -> None:
    assert workspace_from_env({}) is None
    # params alone names nothing to read
    assert workspace_from_env({PARAMS_ENV: str(REPO_PARAMS)}) is None


def test_a_features_dir_brings_the_declarations_it_was_built_from(tmp_path: Path) -> None:
    declarations = tmp_path / "declarations.parquet"
    declarations.write_bytes(b"")
    features = features_dir(tmp_path, str(declarations))
    workspace = workspace_from_env({FEATURES_ENV: str(features)})
    assert workspace is not None and workspace.sandbox is None
    assert (workspace.features, workspace.declarations) == (features, declarations)
    assert workspace.params == REPO_PARAMS
    assert workspace.ground_truth is workspace.tracking_uri is workspace.store is None


def test_a_relative_declarations_path_is_read_beside_the_params(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "declarations.parquet").write_bytes(b"")
    params = tmp_path / "params.yaml"
    params.write_text("")
    features = features_dir(tmp_path / "out", "raw/declarations.parquet")
    workspace = workspace_from_env({FEATURES_ENV: str(features), PARAMS_ENV: str(params)})
    assert workspace is not None
    assert workspace.declarations == tmp_path / "raw" / "declarations.parquet"


@pytest.mark.parametrize("variable", [*OUTPUT_ENVS, TRUTH_ENV, PARAMS_ENV])
def test_a_named_path_that_is_missing_is_one_line_naming_it(tmp_path: Path, variable: str) -> None:
    environ = {STORE_ENV: str(tmp_path), variable: str(tmp_path / "nope")}  # any: not the sandbox
    if variable == TRACKING_ENV:
        environ[variable] = f"sqlite:///{tmp_path / 'nope.db'}"
    with pytest.raises(ParcelriskError, match=f"^{variable}=.*nope") as caught:
        workspace_from_env(environ)
    assert "\n" not in str(caught.value)


def test_a_directory_without_features_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParcelriskError, match=f"{FEATURES_ENV}=.*no features.parquet"):
        workspace_from_env({FEATURES_ENV: str(tmp_path)})


def test_declarations_moved_since_the_build_say_which_variable_to_set(tmp_path: Path) -> None:
    features = features_dir(tmp_path, str(tmp_path / "gone.parquet"))
    with pytest.raises(
        ParcelriskError, match=f"gone.parquet, which is not found: set {DECLARATIONS_ENV}"
    ):
        workspace_from_env({FEATURES_ENV: str(features)})


def test_what_a_notebook_needs_and_was_not_named_is_refused_by_its_variable(
    tmp_path: Path,
) -> None:
    workspace = workspace_from_env({STORE_ENV: str(tmp_path)})
    assert workspace is not None
    workspace.require("store")
    with pytest.raises(ParcelriskError, match=f"needs {TRACKING_ENV} .*: set it"):
        workspace.require("store", "tracking_uri")


def test_a_notebook_dir_holding_other_outputs_is_not_made_a_sandbox(tmp_path: Path) -> None:
    (tmp_path / "features").mkdir()
    with pytest.raises(
        ParcelriskError, match=f"{NOTEBOOK_DIR_ENV}=.* holds features but no sandbox"
    ):
        open_workspace({NOTEBOOK_DIR_ENV: str(tmp_path)})
    assert [p.name for p in tmp_path.iterdir()] == ["features"]


@pytest.fixture(scope="module")
def own_features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated history's features, built as an analyst would (the CLI)."""
    from typer.testing import CliRunner

    from serving.main import app

    root = tmp_path_factory.mktemp("own")
    raw, out = root / "raw", root / "features"
    generate = ["--parcels", "3000", "--days", "20", "--seed", "3", "--out", str(raw)]
    build = ["--declarations", str(raw / "declarations.parquet"), "--out", str(out)]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # params.yaml names the watchlist relative to the repository
        for args in (["generate", *generate], ["features", "build", *build]):
            result = CliRunner().invoke(app, [*args, "--quiet"])
            assert result.exit_code == 0, result.output
    return out


def test_notebook_01_reports_on_the_features_it_is_pointed_at(
    own_features: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat

    untouched = tmp_path / "notebook-dir"
    untouched.mkdir()
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(untouched))
    monkeypatch.setenv(FEATURES_ENV, str(own_features))
    for variable in (DECLARATIONS_ENV, TRACKING_ENV, STORE_ENV, TRUTH_ENV, PARAMS_ENV):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(ROOT / "notebooks" / "01_declarations.ipynb", as_version=4)
    run_notebook(notebook, tmp_path)
    printed = printed_text(notebook)
    assert "reading your outputs" in printed
    assert "3,000 declarations, 2026-01-01 to 2026-01-20" in printed
    assert "no ground truth in this data" in printed
    assert list(untouched.iterdir()) == []  # no sandbox built there, nor anywhere it was told
    shown = shown_text(notebook)
    assert "hit rate, random" in shown and "hit rate, rule:risky_hs" in shown  # each its own
    assert "rule selections" not in shown
    assert "revenue_eur" in shown and "no revenue data" not in shown


def shown_text(notebook) -> str:
    """What an executed ``notebook`` printed and displayed as text (tables, series)."""
    return printed_text(notebook) + "".join(
        out.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        for out in cell.get("outputs", [])
    )


def only_random_quota(history: pd.DataFrame) -> pd.DataFrame:
    return history.assign(
        selection_reason=history["selection_reason"].mask(history["inspected"], "random")
    )


def no_random_quota(history: pd.DataFrame) -> pd.DataFrame:
    # the officers' picks of an administration without an exploration quota
    reason = history["selection_reason"].replace({"random": "targeted"})
    return history.assign(selection_reason=reason)


def no_revenue_column(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns="revenue_recovered")


def some_revenue_missing(history: pd.DataFrame) -> pd.DataFrame:
    offences = history.index[history["illicit"].fillna(False).astype(bool)]
    return history.assign(
        revenue_recovered=history["revenue_recovered"].mask(history.index.isin(offences[::2]))
    )


def no_outcome_columns(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=[c for c in OUTCOME_COLUMNS if c in history.columns])


HISTORIES_LACKING = [
    (
        only_random_quota,
        ["every inspection here is the random quota", "hit rate, random"],
        ["hit rate, rule:"],
    ),
    (
        no_random_quota,
        ["no 'random' inspections in this history", "hit rate, targeted", "hit rate, rule:"],
        ["hit rate, random"],
    ),
    (
        no_revenue_column,
        [
            "no revenue data: revenue_recovered is empty for all",
            "no revenue data: the revenue recovered by offence type is left out",
            "hit rate, random",
        ],
        ["revenue_eur", "revenue_per"],
    ),
    (
        some_revenue_missing,
        ["revenue_recovered is empty for", "the revenue figures cover the others", "revenue_eur"],
        ["no revenue data"],
    ),
    (
        no_outcome_columns,
        ["no parcel of this history was inspected", "no inspections: no weekly hit rates"],
        ["hit rate, random", "revenue_eur"],
    ),
]


@pytest.mark.parametrize(
    ("history_of", "said", "unsaid"),
    HISTORIES_LACKING,
    ids=[history_of.__name__ for history_of, *_ in HISTORIES_LACKING],
)
def test_notebook_01_says_what_a_history_lacks(
    own_features: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    history_of,
    said: list[str],
    unsaid: list[str],
) -> None:
    import nbformat

    source = json.loads((own_features / "source.json").read_text())["declarations"]
    declarations = tmp_path / "declarations.parquet"
    history_of(pd.read_parquet(source)).to_parquet(declarations)
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(tmp_path / "notebook-dir"))
    monkeypatch.setenv(DECLARATIONS_ENV, str(declarations))
    for variable in (FEATURES_ENV, TRACKING_ENV, STORE_ENV, TRUTH_ENV, PARAMS_ENV):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(ROOT / "notebooks" / "01_declarations.ipynb", as_version=4)
    run_notebook(notebook, tmp_path)
    shown = shown_text(notebook)
    assert [s for s in said if s not in shown] == []
    assert [s for s in unsaid if s in shown] == []
