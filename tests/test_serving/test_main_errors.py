"""The CLI's last line of defence: errors from the setup (MLflow, a full disk) end in one line
and exit 2, never a traceback; a fault of ours still shows its traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import serving.main as main_module


def _run(monkeypatch, capsys, exc: BaseException) -> tuple[int, str]:
    def app() -> None:
        raise exc

    monkeypatch.setattr(main_module, "app", app)
    umask = os.umask(0o077)  # main() tightens the umask: the test process keeps its own
    os.umask(umask)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main_module.main()
    finally:
        os.umask(umask)
    return int(exit_info.value.code), capsys.readouterr().err


def test_an_mlflow_error_is_one_line_naming_the_store(monkeypatch, capsys) -> None:
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://team:secret@db/mlflow")
    exc = MlflowException("Invalid clause(s) in filter string: OR, '\nmore detail")
    code, err = _run(monkeypatch, capsys, exc)
    assert code == 2
    assert err.strip() == (
        "error: the MLflow tracking store postgresql://team:***@db/mlflow: "
        "Invalid clause(s) in filter string: OR, '"
    )


def test_a_tracking_database_mlflow_cannot_query_is_one_line(monkeypatch, capsys) -> None:
    """Probe 26: a tracking store missing a table gave SQL text, web links and tracebacks."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///team.db")
    in_mlflow: dict = {"__name__": "mlflow.store.tracking.fake"}  # raised inside MLflow's code
    exec("def query(exc):\n    raise exc", in_mlflow)
    orig = sqlite3.OperationalError("no such table: registered_model_aliases")
    try:
        in_mlflow["query"](OperationalError("SELECT registered_model_aliases.name", {}, orig))
    except OperationalError as raised:  # its traceback goes through MLflow's frame
        exc = raised
    code, err = _run(monkeypatch, capsys, exc)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(
        "error: the MLflow tracking store sqlite:///team.db cannot be read: no such table: "
        "registered_model_aliases"
    )
    assert "SELECT" not in err and "sqlalche.me" not in err


def test_a_full_disk_is_one_line(monkeypatch, capsys) -> None:
    code, err = _run(monkeypatch, capsys, OSError(errno.ENOSPC, "No space left on device"))
    assert code == 2 and err.strip().startswith("error: no space left on device")
    assert "Traceback" not in err


def test_a_full_disk_names_the_output_the_command_was_writing(monkeypatch, capsys) -> None:
    """Arrow's write error names no file (probe 21): the --out given says which disk filled."""
    monkeypatch.setattr(sys, "argv", ["parcelrisk", "score", "in.parquet", "--out", "/full/o.parquet"])  # fmt: skip
    exc = OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28]")
    code, err = _run(monkeypatch, capsys, exc)
    assert code == 2
    assert err.strip().startswith("error: no space left on device (writing /full/o.parquet): ")


def test_params_that_are_not_utf8_are_one_line(tmp_path) -> None:
    """A binary params.yaml gave a UnicodeDecodeError traceback (probe 21)."""
    from features.errors import ParcelriskError
    from features.params import load_settings

    bad = tmp_path / "params.yaml"
    bad.write_bytes(b"\x00\xff garbage: [\n")
    with pytest.raises(
        ParcelriskError, match=r"params.yaml: not UTF-8 text \(byte 0xff at offset 1\)"
    ):
        load_settings(bad)


def test_a_fault_of_ours_keeps_its_traceback(monkeypatch) -> None:
    monkeypatch.setattr(main_module, "app", lambda: 1 / 0)
    umask = os.umask(0o077)
    os.umask(umask)
    try:
        with pytest.raises(ZeroDivisionError):
            main_module.main()
    finally:
        os.umask(umask)


def _run_cli_under(tmp_path, umask: int, **env: str) -> tuple[int, str, Path]:
    """`parcelrisk generate` (a small history into a new directory) in a process whose
    session umask is ``umask``: its exit code, stderr and the directory it wrote."""
    out = tmp_path / "made"
    code = (
        f"import os, sys; os.umask({umask}); sys.argv = ['parcelrisk', 'generate', '--parcels', "
        f"'50', '--days', '3', '--quiet', '--out', {str(out)!r}]; "
        "from serving.main import main; main()"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return run.returncode, run.stderr, out


def _modes_made(umask: int, setting: str) -> tuple[int, int]:
    """The modes of a plain file and a directory created after ``_private_files`` under a
    session umask and a PARCELRISK_UMASK (sqlite3, open() and os.makedirs honour it)."""
    code = (
        "import os, tempfile; from serving.main import _private_files; "
        f"os.umask({umask}); _private_files(); d = tempfile.mkdtemp(); "
        "f = os.path.join(d, 'f'); open(f, 'w').close(); os.mkdir(os.path.join(d, 'd')); "
        "print(os.stat(f).st_mode & 0o777, os.stat(os.path.join(d, 'd')).st_mode & 0o777)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PARCELRISK_UMASK": setting},
        timeout=60,
        check=True,
    )
    file_mode, dir_mode = run.stdout.split()
    return int(file_mode), int(dir_mode)


def test_files_the_cli_writes_are_its_owner_s_alone_under_the_usual_umask(tmp_path) -> None:
    # probe 18: the decision store, MLflow's artifacts and the features were 0644 under 022
    code, err, out = _run_cli_under(tmp_path, 0o022)
    assert code == 0, err
    assert out.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o600}
    assert _modes_made(0o022, "077") == (0o600, 0o700)


def test_parcelrisk_umask_opens_them_to_a_group_deliberately_never_wider() -> None:
    assert _modes_made(0o022, "027") == (0o640, 0o750)
    # a session umask stricter than the setting keeps what it withholds
    assert _modes_made(0o077, "022") == (0o600, 0o700)


def test_a_umask_setting_that_is_no_octal_is_one_line(tmp_path) -> None:
    code, err, out = _run_cli_under(tmp_path, 0o022, PARCELRISK_UMASK="rw-r-----")
    assert code == 2 and not out.exists()
    assert err.strip() == (
        "error: PARCELRISK_UMASK='rw-r-----' is not an octal umask (write 077, or 027 for a group)"
    )


def test_a_model_name_that_breaks_registry_queries_is_refused(tmp_path) -> None:
    import yaml

    from features.errors import ParcelriskError
    from features.params import load_settings

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"promote": {"model_name": "risk'model"}}))
    with pytest.raises(ParcelriskError, match="is not a model name: letters, digits"):
        load_settings(path)


def test_an_error_quoting_a_hidden_character_shows_it_as_an_escape(monkeypatch, capsys) -> None:
    """Probe 22: the error refusing an id for a hidden character printed the character raw."""
    from features.errors import ParcelriskError

    exc = ParcelriskError("column 'seller_id': e.g. D7='Evil\u202eStore\uffa0'\n  next line")
    code, err = _run(monkeypatch, capsys, exc)
    assert code == 2 and "\u202e" not in err and "\uffa0" not in err
    assert "Evil\\u202eStore\\uffa0" in err and "\n  next line" in err


def test_a_full_disk_names_the_output_on_the_disk_that_filled(monkeypatch, capsys, tmp_path):
    """--out on one disk, --quarantine on a full one: the message named --out, sending the
    operator to free the wrong disk (probe 34). The output on a disk with no space is named."""
    import os
    from types import SimpleNamespace

    out, full = tmp_path / "ok" / "o.parquet", tmp_path / "full" / "rejected.csv"
    out.parent.mkdir()
    full.parent.mkdir()
    argv = ["parcelrisk", "ingest", "in.csv", "--out", str(out), "--quarantine", str(full)]
    monkeypatch.setattr(sys, "argv", argv)
    real = os.statvfs

    def statvfs(path):
        if str(path) == str(full.parent):
            return SimpleNamespace(f_bavail=0, f_frsize=4096)
        return real(path)

    monkeypatch.setattr(os, "statvfs", statvfs)
    code, err = _run(monkeypatch, capsys, OSError(errno.ENOSPC, "No space left on device"))
    assert code == 2
    assert err.strip().startswith(f"error: no space left on device (writing {full}): ")


def test_out_of_memory_reading_an_export_says_to_split_it_not_to_use_dask(monkeypatch, capsys):
    """An 8 MB gzip expanding in ingest was told `features build --engine dask` (probe 34)."""
    monkeypatch.setattr(sys, "argv", ["parcelrisk", "ingest", "bomb.csv.gz", "--out", "o.pq"])
    code, err = _run(monkeypatch, capsys, MemoryError())
    assert code == 2 and "Traceback" not in err
    assert err.strip().startswith("error: out of memory in `parcelrisk ingest bomb.csv.gz`: ")
    assert "give the export as several files" in err and "dask" not in err
