"""An archive that cannot be read (moved, deleted, not mounted, a day file lost or damaged) is
said by every review path, never read as "no decision" (probe 30: `audit list` answered "no
decisions in that period" and `audit show` "not in the store" for 10,687 archived decisions,
and a damaged day file gave `show`, `export` and `history export` a Python traceback)."""

from __future__ import annotations

import shutil

import pytest

from serving.audit.archive import archive_before
from serving.sqlite_store import ArchiveUnavailable
from tests.test_serving.conftest import run_cli
from tests.test_serving.test_audit_archive import KEY, _days_store

PERIOD = ("--from", "2026-05-01", "--to", "2026-05-04")


@pytest.fixture
def archived(tmp_path, monkeypatch):
    """15 decisions over 3 days, the first two days (dec0..dec9) archived."""
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _days_store(tmp_path)
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    store.close()
    from models.registry import registry_client

    registry_client(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # `show` reads one
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path / "audit.db", tmp_path / "audit.db.archive"


def _review(capsys, db) -> dict[str, tuple[int, str, str]]:
    commands = {
        "list": ("audit", "list", *PERIOD, "--db", str(db)),
        "show": ("audit", "show", "dec3", "--db", str(db)),
        "export": ("audit", "export", *PERIOD, "--db", str(db), "--format", "csv"),
    }
    return {name: run_cli(capsys, *args) for name, args in commands.items()}


def test_a_missing_archive_is_said_by_list_show_and_export(archived, capsys):
    db, folder = archived
    assert all(code == 0 for code, _, _ in _review(capsys, db).values())
    shutil.rmtree(folder)  # moved to cold storage, a volume not mounted
    for name, (code, out, err) in _review(capsys, db).items():
        assert code == 2, (name, out, err)
        assert "were archived to" in err and "moved, deleted or is not mounted" in err, name
        assert "no decisions in that period" not in err and "not in" not in err
        assert "Traceback" not in err


def test_a_damaged_or_lost_day_file_is_one_line_naming_it(archived, capsys):
    db, folder = archived
    day = sorted(folder.glob("day=*/*.parquet"))[0]
    day.write_bytes(day.read_bytes()[: len(day.read_bytes()) // 2])
    for name, (code, _, err) in _review(capsys, db).items():
        assert code == 2, name
        assert f"{day.name} cannot be read" in err and "Traceback" not in err, name
    day.unlink()  # lost, the manifest still listing it
    code, _, err = run_cli(capsys, "audit", "show", "dec3", "--db", str(db))
    assert code == 2 and "archived day file(s)" in err and "are missing" in err


def test_the_store_lookup_raises_rather_than_answer_not_found(archived):
    from serving.sqlite_store import SqliteDecisionStore

    db, folder = archived
    store = SqliteDecisionStore(db, key=KEY)
    try:
        assert store.get("dec12") is not None  # in the hot store: no archive needed
        assert store.get("dec3")[0].decision_id == "dec3"
        shutil.rmtree(folder)
        with pytest.raises(ArchiveUnavailable, match="were archived to"):
            store.get("dec3")
        with pytest.raises(ArchiveUnavailable):
            store.get("never-recorded")  # the archive might hold it: unknown, not absent
    finally:
        store.close()


def test_the_service_answers_503_naming_the_archive_not_404():
    """An auditor's /decision of an archived decision whose archive cannot be read: 503 with
    the reason, not "not found"."""
    import json
    from types import SimpleNamespace

    from serving.service import _stored_decision

    def unavailable(decision_id):
        raise ArchiveUnavailable("the decisions up to seq 10 were archived to /a, where ...")

    service = SimpleNamespace(review_store=SimpleNamespace(get=unavailable))
    response = _stored_decision(service, "dec3")
    assert response.status_code == 503
    body = json.loads(response.body)
    assert body["code"] == "decision.archive_unavailable"
    assert "were archived to /a" in body["error"]


def test_verify_without_a_filed_head_says_what_it_cannot_see(tmp_path, monkeypatch, capsys):
    """An older backup put in a store's place is a shorter intact chain: "intact" alone read
    as "nothing removed" (probe 30); the verdict says what only a filed head can prove."""
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    _days_store(tmp_path).close()
    db = str(tmp_path / "audit.db")
    code, _, err = run_cli(capsys, "audit", "verify", "--db", db)
    assert code == 0 and "intact: 15 decisions" in err
    assert "without --head, decisions removed from its end" in err
    code, head, _ = run_cli(capsys, "audit", "head", "--db", db)
    code, _, err = run_cli(capsys, "audit", "verify", "--db", db, "--head", head.strip())
    assert code == 0 and "filed head" in err and "without --head" not in err


def test_archive_refuses_days_a_running_worker_may_not_have_read(tmp_path, monkeypatch, capsys):
    """A cut in the future or within the last day could move decisions a worker has not read
    yet; it would never count them (probe 30): refused in one line, nothing archived."""
    from datetime import UTC, datetime, timedelta

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    _days_store(tmp_path).close()
    db = str(tmp_path / "audit.db")
    today = datetime.now(UTC).date()
    hours_ago = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if hours_ago[:10] == today.isoformat():  # a time of yesterday's date, less than a day old
        hours_ago = (datetime.now(UTC) - timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for before in (today.isoformat(), (today + timedelta(days=30)).isoformat(), hours_ago):
        code, _, err = run_cli(capsys, "audit", "archive", "--db", db, "--before", before)
        assert code == 2 and "at least 1 day(s) old" in err and "Traceback" not in err
        assert not (tmp_path / "audit.db.archive").exists()
    yesterday = (today - timedelta(days=1)).isoformat()
    code, _, err = run_cli(capsys, "audit", "archive", "--db", db, "--before", yesterday)
    assert code == 0, err  # the days of May, long read
