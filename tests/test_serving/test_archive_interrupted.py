"""`parcelrisk audit archive` stopped at any point (a kill, a power cut) and run again, as an
operator would: the re-run finishes the job, the chain verifies, every decision is held exactly
once (archived or hot) and no file is listed twice (probe 21: killed between its manifest and
its cut, a re-run listed the same day file twice and `verify` said NOT INTACT, "inserted at
seq 1"). A file the interrupted run listed that is gone or edited is refused by name, and
nothing is changed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import serving.audit.verify as verify_module
from features.errors import ParcelriskError
from serving.audit.archive import archive_before
from serving.audit.verify import verify_store
from serving.postgres_store import PostgresDecisionStore
from serving.sqlite_store import SqliteDecisionStore, read_archive_manifest
from tests.test_serving.conftest import run_cli
from tests.test_serving.test_audit_archive import KEY, _days_store

MAY_2 = "2026-05-02T00:00:00.000000Z"
MAY_3 = "2026-05-03T00:00:00.000000Z"


class Killed(BaseException):
    """The process ending where it stands: no `except Exception` sees it, no cleanup runs
    beyond what a kill -9 leaves on disk."""


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch) -> None:
    # verify waits up to 30 s for the cut of an archive whose manifest is ahead (one being
    # made): a killed one never makes it
    monkeypatch.setattr(verify_module, "_ARCHIVE_SETTLE_S", 0.0)


def _kill_at_cut(monkeypatch, store_class=SqliteDecisionStore) -> None:
    """The probe's window: the manifest replaced, the store not cut."""

    def killed(self, *args, **kwargs) -> None:
        raise Killed

    monkeypatch.setattr(store_class, "cut_chain", killed)


def _accounted(store, archive: Path) -> list[int]:
    """Every seq the archive's listed files and the hot store hold, in that order; the
    manifest never lists a file twice and every day file on disk is listed."""
    files = [e["file"] for e in read_archive_manifest(archive)["files"]]
    assert len(files) == len(set(files)), files
    assert sorted(files) == sorted(str(p.relative_to(archive)) for p in archive.rglob("*.parquet"))
    assert not list(archive.rglob("*.tmp"))
    seqs = [s for f in files for s in pq.read_table(archive / f).column("seq").to_pylist()]
    return seqs + [row.seq for row in store.chain_rows()]


def test_an_archive_killed_after_its_manifest_is_completed_by_the_next_run(
    tmp_path, capsys, monkeypatch
) -> None:
    store = _days_store(tmp_path)
    head = verify_store(store).head
    archive = tmp_path / "audit.db.archive"
    with monkeypatch.context() as m, pytest.raises(Killed):
        _kill_at_cut(m)
        archive_before(store, MAY_3)
    # the probe's state: two day files listed up to seq 10, the store whole and uncut
    assert read_archive_manifest(archive)["cut_seq"] == 10
    assert store.count() == 15 and store.chain_start()[2] is None
    assert verify_store(store).intact
    store.close()

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    db = str(tmp_path / "audit.db")
    code, out, err = run_cli(capsys, "audit", "archive", "--db", db, "--before", "2026-05-03")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["archived"] == 10 and summary["days"] == ["2026-05-01", "2026-05-02"]
    said = summary["interrupted"]
    assert said.startswith("completing an interrupted archive: ") and "\n" not in said
    assert "listed seq 1..10 (2 files) past the store's cut" in said

    store = SqliteDecisionStore(tmp_path / "audit.db", key=KEY)
    report = verify_store(store, head)
    assert report.intact and report.checked == 15 and report.head == head
    assert _accounted(store, archive) == list(range(1, 16))
    assert store.count() == 5 and store.chain_start()[0] == 10
    again = archive_before(store, MAY_3)  # nothing left to do, nothing to say
    assert again["archived"] == 0 and "interrupted" not in again
    store.close()


def test_a_second_archive_killed_after_its_manifest_is_completed_by_the_next_run(
    tmp_path,
) -> None:
    """Beyond a first cut the interrupted manifest breaks the walk (its files overlap the hot
    rows): the re-run rolls it back before it verifies, or it would refuse the store."""
    store = _days_store(tmp_path)
    archive = tmp_path / "audit.db.archive"
    archive_before(store, MAY_2)
    with pytest.MonkeyPatch.context() as m, pytest.raises(Killed):
        _kill_at_cut(m)
        archive_before(store, MAY_3)
    assert store.chain_start()[0] == 5 and read_archive_manifest(archive)["cut_seq"] == 10
    assert not verify_store(store).intact  # until the archive is finished

    summary = archive_before(store, MAY_3)
    assert summary["archived"] == 5 and summary["days"] == ["2026-05-02"]
    assert "listed seq 6..10 (1 files)" in summary["interrupted"]
    report = verify_store(store)
    assert report.intact and report.checked == 15
    assert _accounted(store, archive) == list(range(1, 16))
    manifest = read_archive_manifest(archive)
    assert (manifest["cut_seq"], store.chain_start()[0]) == (10, 10)
    store.close()


def test_a_rerun_with_an_earlier_date_archives_only_what_it_asks(tmp_path) -> None:
    """Rolled back, not finished: the store stays the record until a cut is made, so the
    re-run archives up to the date it is given, not the date of the run that was killed."""
    store = _days_store(tmp_path)
    archive = tmp_path / "audit.db.archive"
    with pytest.MonkeyPatch.context() as m, pytest.raises(Killed):
        _kill_at_cut(m)
        archive_before(store, MAY_3)
    summary = archive_before(store, MAY_2)
    assert summary["archived"] == 5 and summary["days"] == ["2026-05-01"]
    assert "interrupted" in summary
    assert not (archive / "day=2026-05-02").exists()  # the killed run's second day is gone
    assert verify_store(store).intact and store.count() == 10
    assert _accounted(store, archive) == list(range(1, 16))
    store.close()


def _half_written_day(m) -> None:
    real = pq.write_table
    calls: list[Path] = []

    def killed(table, where, **kwargs) -> None:
        calls.append(Path(where))
        if len(calls) == 2:
            Path(where).write_bytes(b"PAR1 half")
            raise Killed
        real(table, where, **kwargs)

    m.setattr(pq, "write_table", killed)


def _manifest_not_yet_replaced(m) -> None:
    import os

    real = os.replace

    def killed(src, dst, *args, **kwargs) -> None:
        if Path(dst).name == "manifest.json":
            raise Killed  # its .tmp written, the manifest itself not replaced
        real(src, dst, *args, **kwargs)

    m.setattr(os, "replace", killed)


def _after_the_cut(m) -> None:
    real = SqliteDecisionStore.cut_chain

    def killed(self, *args, **kwargs) -> None:
        real(self, *args, **kwargs)
        raise Killed

    m.setattr(SqliteDecisionStore, "cut_chain", killed)


@pytest.mark.parametrize(
    ("kill", "interrupted"),
    [
        (_half_written_day, False),
        (_manifest_not_yet_replaced, False),
        (_kill_at_cut, True),
        (_after_the_cut, False),
    ],
    ids=["writing-a-day", "before-the-manifest", "before-the-cut", "after-the-cut"],
)
def test_an_archive_killed_anywhere_is_finished_by_running_it_again(
    tmp_path, kill: Callable[..., None], interrupted: bool
) -> None:
    store = _days_store(tmp_path)
    head = verify_store(store).head
    archive = tmp_path / "audit.db.archive"
    with pytest.MonkeyPatch.context() as m, pytest.raises(Killed):
        kill(m)
        archive_before(store, MAY_3)
    summary = archive_before(store, MAY_3)
    assert ("interrupted" in summary) is interrupted
    report = verify_store(store, head)
    assert report.intact and report.checked == 15
    assert _accounted(store, archive) == list(range(1, 16))
    assert store.count() == 5 and store.chain_start()[0] == 10
    store.close()


@pytest.mark.parametrize("damage", ["edited", "removed"])
def test_a_file_of_the_interrupted_run_gone_or_edited_is_refused_by_name(
    tmp_path, damage: str
) -> None:
    """Its entry is never dropped unseen: one line names the file, nothing changes, and once
    the file is back the re-run completes."""
    store = _days_store(tmp_path)
    archive = tmp_path / "audit.db.archive"
    with pytest.MonkeyPatch.context() as m, pytest.raises(Killed):
        _kill_at_cut(m)
        archive_before(store, MAY_3)
    day = next((archive / "day=2026-05-02").glob("*.parquet"))
    kept = day.read_bytes()
    if damage == "edited":
        table = pq.read_table(day)
        lanes = table.column("lane").to_pylist()
        lanes[0] = "green"
        pq.write_table(table.set_column(table.column_names.index("lane"), "lane", [lanes]), day)
    else:
        day.unlink()
    manifest = (archive / "manifest.json").read_text()
    with pytest.raises(ParcelriskError) as refused:
        archive_before(store, MAY_3)
    said = str(refused.value)
    assert "\n" not in said and said.startswith(f"{day} (seq 6..10), listed in manifest.json")
    assert ("its sha256 differs" if damage == "edited" else "is missing") in said
    assert "nothing was changed and the store still holds those decisions" in said
    assert (archive / "manifest.json").read_text() == manifest
    assert store.count() == 15 and store.chain_start()[2] is None
    assert next((archive / "day=2026-05-01").glob("*.parquet")).is_file()

    day.write_bytes(kept)  # restored: the re-run completes
    assert archive_before(store, MAY_3)["archived"] == 10
    assert verify_store(store).intact and _accounted(store, archive) == list(range(1, 16))
    store.close()


def test_a_store_edited_after_the_kill_is_refused_naming_the_file(tmp_path) -> None:
    """The file is the one listed, but the store's rows no longer match it: one of the two was
    edited, and the re-run neither rolls back nor archives."""
    store = _days_store(tmp_path)
    archive = tmp_path / "audit.db.archive"
    with pytest.MonkeyPatch.context() as m, pytest.raises(Killed):
        _kill_at_cut(m)
        archive_before(store, MAY_3)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE decisions SET lane = 'green' WHERE seq = 3")
    conn.close()
    manifest = (archive / "manifest.json").read_text()
    day = next((archive / "day=2026-05-01").glob("*.parquet"))
    with pytest.raises(
        ParcelriskError, match=r"differs from the store's decisions seq 1\.\.5"
    ) as e:
        archive_before(store, MAY_3)
    assert str(e.value).startswith(f"{day} (seq 1..5)") and "\n" not in str(e.value)
    assert (archive / "manifest.json").read_text() == manifest and day.is_file()
    assert store.count() == 15
    store.close()


def test_an_archive_whose_cut_was_removed_is_never_rolled_back(tmp_path) -> None:
    """A manifest past the store's cut whose decisions the store no longer holds is not an
    interrupted archive but a removed cut: refused, the archived days kept."""
    store = _days_store(tmp_path)
    archive = tmp_path / "audit.db.archive"
    archive_before(store, MAY_3)
    store.close()
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        conn.execute("DELETE FROM chain_cuts")
    conn.close()
    store = SqliteDecisionStore(tmp_path / "audit.db", key=KEY)
    manifest = (archive / "manifest.json").read_text()
    day = next((archive / "day=2026-05-01").glob("*.parquet"))
    with pytest.raises(ParcelriskError, match="names decisions this store does not hold") as e:
        archive_before(store, MAY_3)
    assert str(e.value).startswith(f"{day} (seq 1..5)") and "audit verify" in str(e.value)
    assert (archive / "manifest.json").read_text() == manifest
    assert len(list(archive.rglob("*.parquet"))) == 2
    store.close()


def test_a_postgresql_archive_killed_after_its_manifest_is_completed(
    tmp_path, postgres_url
) -> None:
    store = _days_store(tmp_path, url=postgres_url)
    archive = tmp_path / "archive"
    with pytest.MonkeyPatch.context() as m, pytest.raises(Killed):
        _kill_at_cut(m, PostgresDecisionStore)
        archive_before(store, MAY_3, archive)
    summary = archive_before(store, MAY_3, archive)
    assert summary["archived"] == 10 and "listed seq 1..10 (2 files)" in summary["interrupted"]
    assert verify_store(store).intact
    assert _accounted(store, archive) == list(range(1, 16))
    store.close()
