"""features build --engine dask: the pandas engine's features and entity state, from partitions.

One LocalCluster of two worker processes serves the module (reached by its address, as
``--scheduler`` reaches a cluster). Histories are split into partitions of a few hundred to
a few thousand rows, so every shuffle moves rows between workers and every merge is exercised.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.errors import ParcelriskError
from features.families import FAMILIES
from features.intake.contract import Contract
from features.intake.io import write_declarations
from features.params import FeatureParams, Settings
from features.pipeline import dask_engine
from features.pipeline.build import build_to_dir
from features.pipeline.family import Family
from features.synthetic import SyntheticParams, generate
from serving.main import app

pytestmark = pytest.mark.xdist_group("dask")  # one cluster per module, not per test worker


@pytest.fixture(scope="module")
def scheduler() -> str:
    with dask_engine.dask_client(None) as client:
        yield client.scheduler.address


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    declarations, _ = generate(SyntheticParams(seed=5, parcels=6_000, days=60))
    return declarations


def _build_both(
    declarations: pd.DataFrame,
    root: Path,
    scheduler: str,
    *,
    as_of: str | None = None,
    partition_rows: int = 700,
    contract: Contract | None = None,
) -> tuple[Path, Path, dict, dict]:
    path = root / "declarations.parquet"
    write_declarations(declarations, path, contract)
    settings = Settings()
    common = {"declarations_path": path, "settings": settings, "as_of": as_of}
    pandas_summary = build_to_dir(out=root / "pandas", **common)
    dask_summary = build_to_dir(
        out=root / "dask",
        engine="dask",
        scheduler=scheduler,
        partition_rows=partition_rows,
        **common,
    )
    return root / "pandas", root / "dask", pandas_summary, dask_summary


def _assert_same_features(pandas_dir: Path, dask_dir: Path) -> None:
    a = pd.read_parquet(pandas_dir / "features.parquet")
    b = pd.read_parquet(dask_dir / "features.parquet")
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for name in a.columns:
        x, y = a[name], b[name]
        if x.dtype.kind == "f" and not re.search(r"_n_|_n$|n_inspected|n_illicit", name):
            ok = np.isclose(x.to_numpy(), y.to_numpy(), rtol=0, atol=1e-9, equal_nan=True)
            assert ok.all(), f"{name}: {(~ok).sum()} rows differ"
        else:  # ids, labels, reason context and counts: exactly
            pd.testing.assert_series_equal(x, y, check_exact=True)
    manifest_a = json.loads((pandas_dir / "feature_manifest.json").read_text())
    manifest_b = json.loads((dask_dir / "feature_manifest.json").read_text())
    assert manifest_a == manifest_b


def test_the_dask_engine_builds_the_pandas_features_and_entity_state(
    history: pd.DataFrame, tmp_path: Path, scheduler: str
) -> None:
    pandas_dir, dask_dir, pandas_summary, dask_summary = _build_both(history, tmp_path, scheduler)
    assert dask_summary["engine"] == "dask" and dask_summary["partitions"] >= 8
    assert dask_summary["rows"] == pandas_summary["rows"] == len(history)
    _assert_same_features(pandas_dir, dask_dir)
    # the entity state: the same files, byte for byte (its fingerprint hashes every file)
    assert dask_summary["entity_state_fingerprint"] == pandas_summary["entity_state_fingerprint"]
    assert dask_summary["entity_state_cutoff"] == pandas_summary["entity_state_cutoff"]
    # with the results recorded after the last declaration, carried for the live state
    later = int((history["inspected_at"] > history["declared_at"].max()).sum())
    assert dask_summary["entity_state_pending_results"] == later > 0
    assert pandas_summary["entity_state_pending_results"] == later
    assert (dask_dir / "entity_state" / "recent_ids.npy").exists()  # compared below too
    for kind in ("valuation_evidence_declared", "text_evidence_declared", "text_evidence_results"):
        assert (dask_dir / "entity_state" / f"{kind}.parquet").exists()  # the live refits'
    for path in sorted((pandas_dir / "entity_state").iterdir()):
        assert path.read_bytes() == (dask_dir / "entity_state" / path.name).read_bytes(), path.name
    assert not list(dask_dir.glob("dask-features-*")), "the work directory is removed"


def test_an_export_with_gaps_as_known_at_an_instant(
    history: pd.DataFrame, tmp_path: Path, scheduler: str
) -> None:
    """Missing identifiers and HS codes, no item text, quantity or revenue, a currency
    without a rate, an instant shared by many parcels, results known days after their
    inspected_at (result_known_at), built as known mid-history: still the same (parcels
    without an HS code made the engines' split-order counts differ, probe 25)."""
    rng = np.random.default_rng(3)
    gaps = history.drop(columns=["description", "quantity", "revenue_recovered"]).copy()
    late = gaps["inspected_at"].notna().to_numpy() & (rng.random(len(gaps)) < 0.3)
    gaps["result_known_at"] = gaps["inspected_at"].where(late) + pd.Timedelta(days=6)
    for column, share in (
        ("seller_id", 0.1),
        ("consignee_id", 0.05),
        ("platform_id", 0.02),
        ("hs_code", 0.05),
    ):
        gaps.loc[rng.random(len(gaps)) < share, column] = None
    gaps.loc[rng.random(len(gaps)) < 0.01, "currency"] = "XXX"
    gaps.loc[gaps.index[100:400], "declared_at"] = gaps["declared_at"].iloc[100]
    pandas_dir, dask_dir, pandas_summary, dask_summary = _build_both(
        gaps, tmp_path, scheduler, as_of="2026-02-10", partition_rows=400
    )
    assert "text" not in dask_summary["groups"]
    assert dask_summary["rows"] == pandas_summary["rows"] < len(gaps)
    left_out = (gaps["declared_at"] >= pd.Timestamp("2026-02-10", tz="UTC")).sum()
    assert dask_summary["declarations_after_as_of"] == left_out > 0
    assert pandas_summary["declarations_after_as_of"] == left_out
    _assert_same_features(pandas_dir, dask_dir)
    assert dask_summary["entity_state_fingerprint"] == pandas_summary["entity_state_fingerprint"]
    # as known at --as-of: the results recorded after it are not known yet, none carried
    assert dask_summary["entity_state_pending_results"] == 0
    assert pandas_summary["entity_state_pending_results"] == 0


def test_the_cli_builds_on_a_cluster_and_refuses_what_it_cannot(
    history: pd.DataFrame, tmp_path: Path, scheduler: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "declarations.parquet"
    write_declarations(history.head(1500), path)
    out = tmp_path / "features"

    def run(*args: str) -> tuple[int, str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            result = CliRunner().invoke(app, list(args), catch_exceptions=True)
        exc = result.exception
        if isinstance(exc, ParcelriskError):
            return 2, f"error: {exc}"
        assert exc is None or isinstance(exc, SystemExit), f"{args}: {exc!r}"
        return result.exit_code, result.output

    build = ["features", "build", "--declarations", str(path), "--out", str(out)]
    code, output = run(*build, "--engine", "dask", "--scheduler", scheduler, "--quiet")
    assert code == 0, output
    summary = json.loads((out / "features_summary.json").read_text())
    assert summary["engine"] == "dask" and summary["rows"] == 1500
    assert "Traceback" not in output and "distributed" not in output  # Dask's notices kept out

    code, output = run(*build, "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9", "-q")
    assert code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in output
    code, output = run(*build, "--engine", "spark", "-q")
    assert code == 2 and "unknown engine 'spark'" in output
    code, output = run(*build, "--scheduler", scheduler, "-q")
    assert code == 2 and "--scheduler needs --engine dask" in output
    code, output = run(*build, "--partition-rows", "100", "-q")
    assert code == 2 and "--partition-rows needs --engine dask" in output
    csv = tmp_path / "declarations.csv"
    history.head(50).to_csv(csv, index=False)
    code, output = run("features", "build", "--declarations", str(csv), "--out", str(out),
                       "--engine", "dask", "--scheduler", scheduler, "--no-validate", "-q")  # fmt: skip
    assert code == 2 and "--engine dask reads a contract Parquet file" in output
    # the gate reads the file a chunk at a time, as the cluster does, and still refuses faults
    faulty = tmp_path / "faulty.parquet"
    broken = history.head(300).copy()
    broken.loc[broken.index[250], "declaration_id"] = broken["declaration_id"].iloc[3]
    write_declarations(broken, faulty)
    code, output = run("features", "build", "--declarations", str(faulty), "--out", str(out),
                       "--engine", "dask", "--scheduler", scheduler, "-q")  # fmt: skip
    assert code == 2 and "fails the validation gate" in output
    assert "declaration_id.unique" in output and "row 251" in output
    assert json.loads((out / "features_summary.json").read_text()) == summary  # untouched


def test_a_family_that_does_not_say_how_to_split_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Undeclared(Family):
        name = "undeclared"

        def specs(self, ctx):
            return FAMILIES[0].specs(ctx)

    monkeypatch.setattr(dask_engine, "active_families", lambda ctx: [Undeclared()])
    with pytest.raises(dask_engine.DaskEngineError, match="'undeclared' does not say how"):
        dask_engine._plan(Contract(), FeatureParams(), ("declared_value",), {})


def test_every_family_says_how_the_dask_engine_computes_it() -> None:
    for family in FAMILIES:
        assert family.distribution in ("rows", "keys", "aggregates"), family.name
