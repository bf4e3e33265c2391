"""The validate stage's outputs are reproducible: the same file under the same rules, the same bytes.

DVC hashes ``data/reports/validation`` and auditors compare runs, so the record, the page and
the Great Expectations suite and result carry no run time, random id or temporary path.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.intake.io import read_declarations, write_declarations
from features.intake.validation import validate_file
from tests.test_features.test_validation import LIMITS

# two clocks a day apart: both accept the history, neither may show in the outputs
CLOCKS = (datetime(2026, 6, 1, 9, tzinfo=UTC), datetime(2026, 6, 2, 17, 3, 11, tzinfo=UTC))


@pytest.fixture(scope="module")
def histories(tmp_path_factory) -> dict[str, Path]:
    """A small seeded synthetic history, and the same with a fault and a warning."""
    from features.synthetic import generate_to_dir

    root = tmp_path_factory.mktemp("determinism")
    generate_to_dir(parcels=1_500, days=15, seed=11, out=root, start="2026-03-01")
    clean = root / "declarations.parquet"
    history, contract = read_declarations(clean, with_outcomes=True)
    history.loc[3, "gross_weight_kg"] = 3_000.0  # a warning: examples in the record and page
    history.loc[5, "declared_value"] = -1.0  # a fault: the report of a refused file
    faulty = root / "faulty.parquet"
    write_declarations(history, faulty, contract)
    return {"clean": clean, "faulty": faulty}


def _files(report_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(report_dir)): path.read_bytes()
        for path in sorted(report_dir.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("kind", ["clean", "faulty"])
def test_two_runs_write_byte_identical_reports(histories, tmp_path: Path, kind: str) -> None:
    first, second = (
        validate_file(histories[kind], LIMITS, report_dir=tmp_path / run, now=clock)
        for run, clock in zip(("a", "b"), CLOCKS, strict=True)
    )
    assert first.success is (kind == "clean") and first.cross_check["disagreements"] == []
    assert first.checked_at != second.checked_at  # the clock moved; the outputs must not
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == [
        "great_expectations/expectation_suite.json",
        "great_expectations/validation_result.json",
        "index.html",
        "validation.json",
    ]
    assert {name: a[name] == b[name] for name in a} == dict.fromkeys(a, True)


def test_cli_prints_the_check_time_it_keeps_out_of_the_report(histories, tmp_path: Path) -> None:
    from serving.main import app

    source = str(histories["clean"])
    runs = [
        CliRunner().invoke(app, ["validate", source, "--report", str(tmp_path / run), "-q"])
        for run in ("a", "b")
    ]
    for run in runs:
        assert run.exit_code == 0, run.output
        (line,) = [x for x in run.output.splitlines() if x.startswith("checked at ")]
        checked = datetime.fromisoformat(line.removeprefix("checked at "))
        assert abs(datetime.now(UTC) - checked) < timedelta(minutes=5)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert "checked at" not in (tmp_path / "a" / "index.html").read_text(encoding="utf-8")


def test_features_summary_holds_no_duration(tmp_path) -> None:
    """features_summary.json is a DVC metric: a duration in it changed dvc.lock on every run
    of the same inputs; the duration is printed (the returned summary) instead."""
    import json

    from features.params import Settings
    from features.pipeline.build import build_to_dir
    from features.synthetic import generate_to_dir

    generate_to_dir(parcels=600, days=20, seed=3, out=tmp_path / "raw", start="2026-01-01")
    summaries, files = [], []
    for _ in range(2):
        summaries.append(
            build_to_dir(
                declarations_path=tmp_path / "raw" / "declarations.parquet",
                out=tmp_path / "processed",
                settings=Settings(),
            )
        )
        files.append((tmp_path / "processed" / "features_summary.json").read_bytes())
    assert "seconds" in summaries[0] and "seconds" not in json.loads(files[0])
    assert files[0] == files[1]
