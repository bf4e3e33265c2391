"""The corrupted-file corpus (``tests.corpus.data_faults``) through the CLI's reading paths.

Every fault goes through ``parcelrisk validate`` in-process (the console script's error
handling included) and through the gate ``parcelrisk score`` runs (declarations only); a few go
through ``features build``. Each asserts the verdict and the specific message the corpus
expects, so a file that starts to be refused for another reason, or accepted silently, fails.
The real-process run of all four commands is ``scripts/reliability/data_faults.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.errors import ParcelriskError
from features.intake.io import read_declarations
from features.intake.rules import Limits
from features.intake.validation import require_valid
from features.params import Settings
from serving.main import app
from tests.corpus.data_faults import CLEAN_ROWS, FAULTS, SEED, Fault, write_corpus

TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|^\s*[A-Z]\w*(?:Error|Exception): ", re.M
)
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
FAULT_PARAMS = [
    pytest.param(
        f,
        id=f.name,
        marks=pytest.mark.skipif(AS_ROOT and not f.as_root, reason="root reads a mode-000 file"),
    )
    for f in FAULTS
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from features.synthetic import generate_to_dir

    root = tmp_path_factory.mktemp("data_faults")
    generate_to_dir(parcels=CLEAN_ROWS, days=30, seed=SEED, out=root / "clean", start="2026-01-01")
    paths = write_corpus(root / "clean" / "declarations.parquet", root / "corpus")
    yield paths
    for path in paths.values():  # let pytest remove the mode-000 file
        if path.is_file():
            path.chmod(0o644)


def invoke(args: list[str], caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    """Run the CLI in-process as ``serving.main.main`` does: a ParcelriskError is exit 2 and
    one ``error:`` line; any other exception is a traceback. Returns (exit code, all output)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(app, args, catch_exceptions=True)
    output = result.output + "\n" + caplog.text
    exc = result.exception
    if isinstance(exc, ParcelriskError):
        return 2, output + f"\nerror: {exc}"
    if exc is not None and not isinstance(exc, SystemExit):
        raise AssertionError(f"{args}: traceback ({type(exc).__name__}: {exc})") from exc
    return result.exit_code, output


def check_answer(fault: Fault, command: str, code: int, output: str) -> None:
    expect = fault.expect(command)
    verdict = "accepted" if code == 0 else "refused"
    assert verdict == expect.verdict, f"{fault.name} / {command}: {verdict}\n{output[-2000:]}"
    assert expect.says.lower() in output.lower(), (
        f"{fault.name} / {command}: no {expect.says!r} in\n{output[-2000:]}"
    )
    assert not TRACEBACK.search(output), output[-2000:]


def test_the_corpus_covers_at_least_25_documented_faults() -> None:
    assert len(FAULTS) >= 25
    assert len({f.name for f in FAULTS}) == len(FAULTS)
    assert all(f.doc for f in FAULTS)


@pytest.mark.parametrize("fault", FAULT_PARAMS)
def test_validate_answers_each_fault(
    fault: Fault, corpus: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    code, output = invoke(["validate", str(corpus[fault.name]), "--no-cross-check", "-q"], caplog)
    check_answer(fault, "validate", code, output)
    if code == 0 and fault.rows is not None:
        assert f"OK: {fault.rows:,} rows" in output  # no row lost on the way in


@pytest.mark.parametrize("fault", FAULT_PARAMS)
def test_the_score_gate_answers_each_fault(
    fault: Fault, corpus: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """What ``parcelrisk score`` does with the file before and after the model: the gate on
    declarations, then the reader ``score_file`` uses."""
    path = corpus[fault.name]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        try:
            gate = require_valid(
                path, Limits.from_settings(Settings()), with_outcomes=False, what="score"
            )
            frame, _ = read_declarations(path, with_outcomes=False)
        except ParcelriskError as exc:
            code, output = 2, f"{caplog.text}\nerror: {exc}"
        else:
            code, output = 0, caplog.text + f"\n{len(frame)} rows, gate {gate.status}"
    check_answer(fault, "score", code, output)
    if code == 0 and fault.rows is not None:
        assert len(frame) == fault.rows


BUILT = ("no_outcome_columns", "local_dates_without_time", "directory_not_file", "duplicate_ids")


@pytest.mark.parametrize("name", BUILT)
def test_features_build_answers_a_few_faults(
    name: str,
    corpus: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fault = next(f for f in FAULTS if f.name == name)
    out = tmp_path / "features"
    args = ["features", "build", "--declarations", str(corpus[name]), "--out", str(out), "-q"]
    code, output = invoke(args, caplog)
    check_answer(fault, "features build", code, output)
    if code == 0:
        summary, _ = json.JSONDecoder().raw_decode(output[output.index("{") :])
        assert summary["rows"] == fault.rows
    else:
        assert not out.exists() or not any(out.iterdir())  # nothing half-written


# --------------------------------------------------------------------------------------------
# The fixes behind the corpus, one behaviour each
# --------------------------------------------------------------------------------------------


def test_a_history_without_outcome_columns_reads_as_nothing_inspected_yet(
    corpus: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = corpus["no_outcome_columns"]
    with caplog.at_level(logging.WARNING):
        history, _ = read_declarations(path, with_outcomes=True)
    assert len(history) == CLEAN_ROWS
    assert not history["inspected"].any()
    assert history["illicit"].isna().all() and history["revenue_recovered"].isna().all()
    assert "no outcome columns" in caplog.text
    as_is, _ = read_declarations(path)  # None: as the file has them
    assert "inspected" not in as_is.columns


def test_the_gate_record_names_ignored_columns(corpus: dict[str, Path]) -> None:
    from features.intake.validation import validate_file

    result = validate_file(
        corpus["extra_unknown_columns"], Limits.from_settings(Settings()), cross_check=False
    )
    assert result.success
    assert result.to_record()["ignored_columns"] == [
        "Unnamed: 0",
        "internal_note",
        "risk_score_legacy",
    ]


def test_utf16_text_is_read_as_such(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from features.intake.io import read_raw_declarations

    path = tmp_path / "unicode.csv"
    path.write_text("declaration_id,description\nD1,café\n", encoding="utf-16")
    with caplog.at_level(logging.WARNING):
        frame, _ = read_raw_declarations(path)
    assert frame.to_dict("records") == [{"declaration_id": "D1", "description": "café"}]
    assert "UTF-16" in caplog.text


def test_an_absurd_amount_prints_short() -> None:
    from features.intake.rules import _amount

    assert _amount(1e300) == "1e+300"
    assert _amount(123456.7) == "123,457"


def test_score_refuses_a_bad_file_before_it_loads_a_model(
    corpus: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No model in this registry: the answer is the gate's, so the gate ran first."""
    out = tmp_path / "scores.csv"
    registry = f"sqlite:///{tmp_path / 'empty.db'}"
    args = ["score", str(corpus["duplicate_ids"]), "--out", str(out), "--tracking-uri", registry]
    code, output = invoke(args, caplog)
    assert code == 2 and "declaration_id.unique" in output
    assert not out.exists() and not (tmp_path / "empty.db").exists()


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path) -> None:
    """A SIGKILLed `history join` left `.OUT.*.tmp` (GBs for a real history) that later runs
    never removed (probe); a live writer's file is left alone."""
    import os
    import subprocess

    from features.intake.io import atomic_write

    out = tmp_path / "out.parquet"
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / f".out.parquet.{dead.pid}-abc.tmp"
    orphan.write_bytes(b"x" * 10)
    live = tmp_path / f".out.parquet.{os.getppid()}-def.tmp"
    live.write_bytes(b"y")
    other = tmp_path / ".other.parquet.1-x.tmp"
    other.write_bytes(b"z")
    atomic_write(out, lambda tmp: tmp.write_text("new"))
    assert out.read_text() == "new"
    assert not orphan.exists() and live.exists() and other.exists()
