"""Commands that work on models already registered (promote, score) never create a tracking
store: a mistyped path is named in one line and no empty MLflow database is left behind."""

from __future__ import annotations

import pandas as pd
import pytest

from features.intake.contract import coerce_declarations
from features.intake.io import write_declarations
from tests.test_serving.conftest import make_declarations, run_cli


@pytest.fixture
def declarations_file(tmp_path):
    path = tmp_path / "new.parquet"
    frame = coerce_declarations(pd.DataFrame(make_declarations(3, seed=1)), with_outcomes=False)
    write_declarations(frame, path)
    return path


@pytest.mark.parametrize("command", ["promote", "score"])
def test_a_missing_tracking_store_is_named_not_created(
    command, capsys, tmp_path, declarations_file
) -> None:
    missing = tmp_path / "typo.db"
    uri = f"sqlite:///{missing}"
    args = {
        "promote": ["promote", "--tracking-uri", uri],
        "score": [
            "score", str(declarations_file), "--out", str(tmp_path / "s.parquet"),
            "--tracking-uri", uri,
        ],
    }[command]  # fmt: skip
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "Traceback" not in err, err
    assert f"{uri} does not exist" in err and len(err.strip().splitlines()) == 1, err
    assert not missing.exists()


def test_a_file_that_is_not_a_tracking_store_is_named(capsys, tmp_path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("an analyst's notes\n")
    code, _, err = run_cli(capsys, "promote", "--tracking-uri", f"sqlite:///{notes}")
    assert code == 2 and "file is not a database" in err and "Traceback" not in err
    assert notes.read_text() == "an analyst's notes\n"
