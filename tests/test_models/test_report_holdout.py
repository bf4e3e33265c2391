"""Notebook 02 (the model report) compares champion and challenger on the parcels the gate
compares them on: from the later of their test starts, which neither was fitted or calibrated
on (``Workspace.compared_holdout``).

Probe 13: a challenger retrained on later history was scored on the champion's test period,
most of it the challenger's own training and calibration periods; the report showed it better
calibrated than the gate measured it (0.031 against 0.068) and said the recomputed figures
matched the recorded ones.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.pipeline.build import FEATURES_FILE
from models.cli import run_training
from models.promotion import compare_versions
from models.registry import registry_client
from models.sandbox import NOTEBOOK_DIR_ENV, Sandbox, build_sandbox
from models.workspace import (
    CHALLENGER_ENV,
    DECLARATIONS_ENV,
    FEATURES_ENV,
    MIN_COMPARED_PARCELS,
    PARAMS_ENV,
    STORE_ENV,
    TRACKING_ENV,
    TRUTH_ENV,
    ComparedHoldout,
    Workspace,
    recorded_test_period,
    sandbox_workspace,
)
from tests.test_models.conftest import make_frames, make_manifest, write_features_dir
from tests.test_notebooks import ROOT, printed_text, run_notebook

pytestmark = pytest.mark.xdist_group("notebooks")

# The challenger's split: its calibration period starts inside the champion's test period (the
# sandbox's champion splits 0.6 / 0.2 / 0.2), as a retrain on newer history's does.
LATER_SPLIT = {"train": 0.7, "validation": 0.15, "test": 0.15}


@pytest.fixture(scope="module")
def later_challenger(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    """A small sandbox's champion, and as version 2 a challenger whose test period starts later."""
    sandbox = build_sandbox(
        tmp_path_factory.mktemp("report") / "sandbox",
        parcels=12_000,
        days=40,
        live_days=1,
        challenger=False,
    )
    settings = sandbox.settings()
    later = settings.model_copy(
        update={"train": settings.train.model_copy(update={"split": LATER_SPLIT})}
    )
    trained = run_training(
        sandbox.features,
        ground_truth_path=sandbox.ground_truth,
        settings=later,
        tracking_uri=sandbox.tracking_uri,
        metrics_out=None,
    )
    assert str(trained["version"]) == "2" and sandbox.champion == "1"
    return sandbox


def test_a_later_challenger_is_compared_only_after_both_test_starts(
    later_challenger: Sandbox,
) -> None:
    workspace = sandbox_workspace(later_challenger)
    versions = workspace.versions()
    assert versions == {"champion": "1", "challenger": "2"}
    models = {role: workspace.load_model(version) for role, version in versions.items()}
    starts = {role: recorded_test_period(model)[0] for role, model in models.items()}
    assert starts["challenger"] > starts["champion"]

    compared = workspace.compared_holdout(models)

    declared = pd.read_parquet(later_challenger.features / FEATURES_FILE)["declared_at"]
    assert compared.start == starts["challenger"]
    assert (compared.frame["declared_at"] >= starts["challenger"]).all()
    assert len(compared.frame) == (declared >= starts["challenger"]).sum()
    # the champion's test period, which the report used to score both on, is larger
    assert len(compared.frame) < (declared >= starts["champion"]).sum()
    assert "truth_illicit" in compared.frame.columns
    gate = compare_versions(
        registry_client(later_challenger.tracking_uri),
        workspace.settings().promote,
        champion=versions["champion"],
        version=versions["challenger"],
        features_dir=workspace.features,
        ground_truth_path=workspace.ground_truth,
    )
    assert gate.parcels == len(compared.frame)
    assert compared.is_recorded_period("challenger")
    assert not compared.is_recorded_period("champion")


def test_the_report_shows_the_gates_figures_and_says_where_they_differ_from_the_recorded(
    later_challenger: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat

    sandbox = later_challenger
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(tmp_path / "no-sandbox"))
    monkeypatch.setenv(FEATURES_ENV, str(sandbox.features))
    monkeypatch.setenv(TRACKING_ENV, sandbox.tracking_uri)
    monkeypatch.setenv(PARAMS_ENV, str(sandbox.params))
    monkeypatch.setenv(TRUTH_ENV, str(sandbox.ground_truth))
    monkeypatch.setenv(CHALLENGER_ENV, "2")
    for variable in (DECLARATIONS_ENV, STORE_ENV, "MPLBACKEND"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    notebook = nbformat.read(ROOT / "notebooks" / "02_model_report.ipynb", as_version=4)

    run_notebook(notebook, tmp_path)

    printed = printed_text(notebook)
    assert "two different test periods: side by side only, not a comparison" in printed
    assert "neither version was fitted or calibrated on them" in printed
    # the champion's run recorded its figures on its own, earlier test period: no match claimed
    assert "champion: the gate's figures; its run recorded its figures on other parcels" in printed
    matched = "challenger: the gate's figures; its own test period, and the recorded figures match"
    assert matched in printed
    assert "recomputed figures match" not in printed
    [section_one] = [c for c in notebook.cells if c.source.startswith("run_metrics = ")]
    shown = "".join(o.get("data", {}).get("text/plain", "") for o in section_one.outputs)
    assert "challenger - champion" not in shown


def _split(test_start: str) -> dict[str, str]:
    return {
        "start": "2026-01-01T00:00:00+00:00",
        "validation_start": "2026-01-10T00:00:00+00:00",
        "test_start": test_start,
        "end": "2026-01-30T23:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("challenger_start", "left"),
    [("2026-01-30T12:00:00+00:00", "parcel"), ("2026-02-15T00:00:00+00:00", "0 parcel(s)")],
    ids=["too-few", "none"],
)
def test_too_few_parcels_after_both_test_starts_are_refused_naming_both(
    tmp_path: Path, challenger_start: str, left: str
) -> None:
    frame, _, manifest = make_frames(n=3_000, days=31, seed=4)
    features = write_features_dir(tmp_path / "features", frame, manifest)
    workspace = Workspace(
        origin="test",
        params=ROOT / "params.yaml",
        features=features,
        declarations=None,
        ground_truth=None,
        traffic_truth=None,
        tracking_uri=None,
        store=None,
    )
    models = {
        "champion": SimpleNamespace(metadata={"split": _split("2026-01-20T00:00:00+00:00")}),
        "challenger": SimpleNamespace(metadata={"split": _split(challenger_start)}),
    }
    with pytest.raises(ParcelriskError) as refused:
        workspace.compared_holdout(models)
    said = str(refused.value)
    assert left in said and f"fewer than {MIN_COMPARED_PARCELS}" in said
    assert "champion 2026-01-20" in said and f"challenger {challenger_start[:10]}" in said
    assert "views below are not drawn" in said


def test_rows_are_read_in_each_models_category_levels() -> None:
    frame = pd.DataFrame({"channel": [0.0, 1.0, 2.0, -1.0]})
    built = make_manifest().categories  # postal, express, courier
    compared = ComparedHoldout(frame, pd.Timestamp("2026-01-01", tz="UTC"), {}, built)
    model = SimpleNamespace(manifest=SimpleNamespace(categories={"channel": ("courier", "postal")}))
    assert compared.rows_for(model)["channel"].tolist() == [1.0, -1.0, 0.0, -1.0]
    same = SimpleNamespace(manifest=SimpleNamespace(categories=built))
    assert compared.rows_for(same) is frame
