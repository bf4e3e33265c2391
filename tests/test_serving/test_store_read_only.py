"""Review never writes the store: `audit verify/head/list/show/export` and `history export`
open a SQLite store read-only, so an auditor can verify a copy on write-once media, and
reading the live store changes nothing in it."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.errors import ParcelriskError
from serving.main import app
from serving.outcome_store import SqliteOutcomeStore
from serving.sqlite_store import SqliteDecisionStore, StoreUnavailable, connect_read_only
from tests.test_serving.test_store import _record

KEY = b"r" * 40
REVIEWS = (
    ["audit", "verify"],
    ["audit", "head"],
    ["audit", "list", "--from", "2026-01-01", "--to", "2030-01-01"],
    ["audit", "export", "--from", "2026-01-01", "--to", "2030-01-01", "--format", "csv"],
    ["audit", "show", "dec3"],
)


def _closed_store(path: Path, n: int = 7) -> Path:
    store = SqliteDecisionStore(path, key=KEY)
    for start in range(0, n, 3):
        store.record([_record(i) for i in range(start, min(n, start + 3))])
    store.close()
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_review_commands_leave_the_store_file_as_it_was(tmp_path, monkeypatch) -> None:
    from models.registry import create_sqlite_store

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    # `show` looks the decision's model up in a registry (here an empty one: "not in the
    # registry", shown, exit 0); without its own it read ./mlflow.db, there only when an
    # earlier test or `make demo` had made it
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    create_sqlite_store(tracking)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    review = tmp_path / "review"
    review.mkdir()
    db = review / "audit.db"
    shutil.copyfile(_closed_store(tmp_path / "live.db"), db)  # the file alone, as handed over
    before = _digest(db)
    runner = CliRunner()
    for command in REVIEWS:
        result = runner.invoke(app, [*command, "--db", str(db)])
        assert result.exit_code == 0, (command, result.output)
    out = tmp_path / "history.parquet"  # elsewhere: the review directory holds the store only
    result = runner.invoke(app, ["history", "export", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert _digest(db) == before
    # no lock files, no checkpointer's: what SQLite itself keeps beside a WAL file at most
    extra = {p.name for p in review.iterdir()} - {"audit.db"}
    assert extra <= {"audit.db-wal", "audit.db-shm"}, extra


def test_a_read_only_handle_reads_the_live_store_and_refuses_to_write(tmp_path) -> None:
    writer = SqliteDecisionStore(tmp_path / "audit.db", key=KEY)
    writer.record([_record(i) for i in range(3)])
    reader = SqliteDecisionStore(tmp_path / "audit.db", key=KEY, read_only=True)
    try:
        assert reader.count() == 3 and reader.head() == writer.head()
        writer.record([_record(3)])  # committed after the reader opened: seen at its next read
        assert reader.count() == 4 and reader.get("dec3") is not None
        with pytest.raises(ParcelriskError, match="read-only"):
            reader.record([_record(9)])
        with pytest.raises(ParcelriskError, match="read-only"):
            reader.mark_undelivered(["dec1"], "test")
    finally:
        reader.close()
        writer.close()
    assert SqliteDecisionStore(tmp_path / "audit.db", key=KEY).count() == 4


def test_read_only_opens_name_what_is_wrong(tmp_path) -> None:
    with pytest.raises(StoreUnavailable, match="no such file"):
        SqliteDecisionStore(tmp_path / "missing.db", key=KEY, read_only=True)
    assert not (tmp_path / "missing.db").exists()
    notes = tmp_path / "notes.db"
    notes.write_text("not a database, an auditor's notes\n" * 50)
    with pytest.raises(StoreUnavailable, match="cannot be read"):
        SqliteDecisionStore(notes, key=KEY, read_only=True)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreUnavailable, match="not a decision store"):
        SqliteDecisionStore(other, key=KEY, read_only=True)


def test_results_read_only_from_a_store_that_never_took_one(tmp_path) -> None:
    db = _closed_store(tmp_path / "audit.db")
    results = SqliteOutcomeStore(db, read_only=True)
    try:
        assert results.count() == 0  # an empty table in memory, nothing made in the file
    finally:
        results.close()
    conn = connect_read_only(db)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "outcomes" not in tables


def _read_only_mount_works(directory: Path) -> bool:
    probe = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory}",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


def _verify_on_read_only_mount(
    directory: Path, db: Path, command: tuple[str, ...] = ("audit", "verify"), **env: str
) -> subprocess.CompletedProcess[str]:
    """`parcelrisk COMMAND --db DB` (`audit verify` by default) in a private mount namespace
    where ``directory`` is mounted read-only over itself (write-once media, as far as SQLite
    can tell)."""
    # the checkout's own code (cwd), as the parcelrisk command runs it
    cli = "import sys; from serving.main import main; sys.argv[0] = 'parcelrisk'; main()"
    mounted = (
        f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory} && "
        f'exec {sys.executable} -c "{cli}" {" ".join(command)} --db {db}'
    )
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", mounted],
        capture_output=True,
        text=True,
        env={**os.environ, "PARCELRISK_AUDIT_KEY": KEY.decode(), **env},
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )


@pytest.fixture
def worm(tmp_path) -> Path:
    directory = tmp_path / "worm"
    directory.mkdir()
    if not shutil.which("unshare") or not _read_only_mount_works(directory):
        pytest.skip("this machine allows no private read-only bind mount (unshare, root)")
    return directory


def test_a_copy_on_read_only_media_verifies(tmp_path, worm) -> None:
    """The store and nothing beside it on a read-only mount: SQLite cannot make its WAL index
    there, so the copy is read as the immutable file it is."""
    shutil.copyfile(_closed_store(tmp_path / "live.db"), worm / "audit.db")  # the file alone
    run = _verify_on_read_only_mount(worm, worm / "audit.db")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "intact: 7 decisions" in run.stderr and "Traceback" not in run.stderr


def test_every_review_reads_a_copy_on_read_only_media(tmp_path, worm) -> None:
    """`audit list`, `show` and `export` read the results beside the decisions with a
    connection of their own, opened `mode=ro`, which needs the WAL index SQLite cannot make
    on read-only media: they failed there with a traceback (probe 27), `verify` did not."""
    from dataclasses import replace

    import pandas as pd

    from models.registry import create_sqlite_store
    from serving.outcomes import store_outcomes

    live = tmp_path / "live.db"
    declared = '{"declaration_id": "D%d", "declared_at": "2026-05-01T09:00:00.000000Z"}'
    store = SqliteDecisionStore(live, key=KEY)
    store.record([replace(_record(i), declaration_json=declared % i) for i in range(7)])
    store.close()
    results = SqliteOutcomeStore(live, key=KEY)
    try:
        given = {"declaration_id": "D3", "inspected_at": "2026-05-03T09:00:00Z", "illicit": True}
        assert store_outcomes(results, pd.DataFrame([given]), source="lab")["stored"] == 1
    finally:
        results.close()
    shutil.copyfile(live, worm / "audit.db")  # the file alone: its log checkpointed on close
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    create_sqlite_store(tracking)
    for command in REVIEWS:
        run = _verify_on_read_only_mount(
            worm, worm / "audit.db", tuple(command), MLFLOW_TRACKING_URI=tracking
        )
        assert run.returncode == 0 and "Traceback" not in run.stderr, (command, run.stderr[-2000:])
    shown = _verify_on_read_only_mount(
        worm, worm / "audit.db", ("audit", "show", "dec3"), MLFLOW_TRACKING_URI=tracking
    )
    assert "illicit" in shown.stdout, shown.stdout  # its result, read from the copy


def test_a_copy_with_its_log_on_read_only_media_is_refused_in_one_line(tmp_path, worm) -> None:
    """A copy taken while the service wrote holds commits in its log: reading the file alone
    would miss them, so it is refused, saying what to do."""
    writer = SqliteDecisionStore(tmp_path / "live.db", key=KEY)
    try:
        writer.record([_record(i) for i in range(3)])  # still open: the commits are in the log
        shutil.copyfile(tmp_path / "live.db", worm / "audit.db")
        shutil.copyfile(tmp_path / "live.db-wal", worm / "audit.db-wal")
    finally:
        writer.close()
    assert (worm / "audit.db-wal").stat().st_size > 0
    run = _verify_on_read_only_mount(worm, worm / "audit.db")
    assert run.returncode != 0
    assert "write-ahead log" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_a_store_on_a_read_only_file_system_says_so(tmp_path, worm) -> None:
    """`serve` (a writer) on a store on read-only media said only "unable to open database
    file (SQLITE_CANTOPEN)" (probe 27): an operator looked for a missing file."""
    shutil.copyfile(_closed_store(tmp_path / "live.db"), worm / "audit.db")
    code = (
        "from pathlib import Path; from serving.sqlite_store import SqliteDecisionStore\n"
        "try:\n"
        f"    SqliteDecisionStore(Path('{worm / 'audit.db'}'))\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    mounted = (
        f"mount --bind {worm} {worm} && mount -o remount,bind,ro {worm} && "
        f'exec {sys.executable} -c "{code}"'
    )
    run = subprocess.run(
        ["unshare", "-m", "sh", "-c", mounted],
        capture_output=True,
        text=True,
        env={**os.environ, "PARCELRISK_AUDIT_KEY": KEY.decode()},
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert "cannot be opened" in run.stdout, (run.stdout, run.stderr[-2000:])
    assert "is on a read-only file system" in run.stdout, run.stdout
