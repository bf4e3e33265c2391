"""`parcelrisk audit archive`: old days move to daily Parquet files and the chain stays provable
across the cut; a broken chain is never archived; a tampered archive is found by verify."""

from __future__ import annotations

import json
import sqlite3

import pyarrow.parquet as pq
import pytest

from features.errors import ParcelriskError
from serving.audit.archive import archive_before
from serving.audit.verify import verify_store
from serving.sqlite_store import SqliteDecisionStore
from tests.test_serving.test_store import _record

KEY = b"k" * 40


def _days_store(
    tmp_path, days=("2026-05-01", "2026-05-02", "2026-05-03"), per_day=5, url=None, make=None
):
    """A store whose decisions were answered on ``days`` (the clock set per batch): a SQLite
    file, or the PostgreSQL database at ``url``."""
    import serving.postgres_store as postgres_store
    import serving.sqlite_store as sqlite_store
    from serving.postgres_store import PostgresDecisionStore

    store = (
        SqliteDecisionStore(tmp_path / "audit.db", key=KEY)
        if url is None
        else (PostgresDecisionStore(url, key=KEY))
    )
    n = 0
    for day in days:
        original = sqlite_store._now_iso
        clock = lambda day=day: f"{day}T12:00:00.000000Z"  # noqa: E731
        sqlite_store._now_iso = postgres_store._now_iso = clock
        try:
            store.record([(make or _record)(n + i) for i in range(per_day)])
        finally:
            sqlite_store._now_iso = postgres_store._now_iso = original
        n += per_day
    return store


def test_a_postgresql_store_archives_and_still_verifies(tmp_path, postgres_url) -> None:
    """The same archive from a PostgreSQL store (named with --to: no file to put it beside):
    the days as Parquet, the cut in its chain_cuts, the whole chain proven across it."""
    store = _days_store(tmp_path, url=postgres_url)
    head_before = verify_store(store).head
    with pytest.raises(ParcelriskError, match="name the archive directory with --to"):
        archive_before(store, "2026-05-03T00:00:00.000000Z")
    summary = archive_before(store, "2026-05-03T00:00:00.000000Z", tmp_path / "archive")
    assert summary["archived"] == 10 and summary["hot_decisions_left"] == store.count() == 5
    report = verify_store(store, head_before)
    assert report.intact and report.checked == 15 and len(report.sources) == 3
    record, intact = store.get("dec3")
    assert intact and record == _record(3) and record.seq == 4
    store.record([_record(100)])  # replicas go on appending after the cut
    assert verify_store(store).intact and store.head()[0] == 16
    store.close()


def _declared_may_1st(i: int):
    """``_record(i)`` of a declaration declared on 1 May (results may be stored for it)."""
    import dataclasses

    text = json.dumps({"declaration_id": f"D{i}", "declared_at": "2026-05-01T10:00:00Z"})
    return dataclasses.replace(_record(i), declaration_json=text)


def test_old_days_move_to_daily_parquet_and_the_chain_still_verifies(tmp_path) -> None:
    store = _days_store(tmp_path)
    head_before = verify_store(store).head
    summary = archive_before(store, "2026-05-03T00:00:00.000000Z")
    assert summary["archived"] == 10 and summary["days"] == ["2026-05-01", "2026-05-02"]
    assert summary["hot_decisions_left"] == store.count() == 5
    assert summary["inspected_without_result"] == 10  # every test decision is yellow
    files = sorted((tmp_path / "audit.db.archive").glob("day=*/*.parquet"))
    assert [f.parent.name for f in files] == ["day=2026-05-01", "day=2026-05-02"]
    assert pq.read_table(files[0]).num_rows == 5
    report = verify_store(store, head_before)
    assert report.intact and report.checked == 15 and report.head == head_before
    # an archived decision is still found by id (show, /decision, the auditor's pages)
    record, intact = store.get("dec3")
    assert intact and record == _record(3) and record.seq == 4
    assert store.get("dec0")[1] and store.get("missing") is None
    assert len(report.sources) == 3  # two archived days, then the hot store
    store.record([_record(100)])  # the chain goes on after the cut
    assert verify_store(store).intact and store.head()[0] == 16
    # a second archive appends its days; the whole chain still verifies
    archive_before(store, "2026-05-04T00:00:00.000000Z")
    assert store.count() == 1 and verify_store(store).checked == 16


def test_an_archived_decision_never_delivered_still_says_so(tmp_path) -> None:
    """The marks went with their archived decisions: a decision whose answer was lost read
    "answered" once archived (probe)."""
    store = _days_store(tmp_path)
    store.mark_undelivered(["dec3"], "timeout")
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    assert store.get("dec3")[1]  # archived, found, intact
    assert store.delivery("dec3")["reason"] == "timeout"
    store.close()


def test_a_tampered_or_missing_archive_day_is_found(tmp_path) -> None:
    store = _days_store(tmp_path)
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    folder = tmp_path / "audit.db.archive"
    first = sorted(folder.glob("day=*/*.parquet"))[0]
    table = pq.read_table(first)
    lanes = table.column("lane").to_pylist()
    lanes[2] = "green"
    pq.write_table(table.set_column(table.column_names.index("lane"), "lane", [lanes]), first)
    problem = verify_store(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("altered", 3)
    assert store.get("dec2")[1] is False and store.get("dec1")[1] is True
    first.unlink()
    problem = verify_store(store).problem
    assert problem is not None and problem.kind == "deleted" and "missing" in problem.detail


def test_a_copy_of_the_store_verifies_its_own_archive(tmp_path) -> None:
    """An auditor copies the store and the archive beside it (write-once media, their own
    machine): verify of the copy reads the copy's archive, not the directory the cut names
    (probe 12: an edited copy verified intact against the original's archive, and a faithful
    copy away from the original was missing its archived decisions)."""
    import shutil

    store = _days_store(tmp_path / "site")
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    store.close()
    copy = tmp_path / "auditor"
    shutil.copytree(tmp_path / "site", copy)
    original_archive = tmp_path / "site" / "audit.db.archive"
    original_archive.rename(tmp_path / "moved")  # the original's archive out of reach
    copied = SqliteDecisionStore(copy / "audit.db", key=KEY, read_only=True)
    report = verify_store(copied)
    assert report.intact and report.checked == 15
    assert all(str(copy) in source for source in report.sources)
    copied.close()
    (tmp_path / "moved").rename(original_archive)
    first = sorted((copy / "audit.db.archive").glob("day=*/*.parquet"))[0]
    table = pq.read_table(first)
    lanes = table.column("lane").to_pylist()
    lanes[2] = "green"
    pq.write_table(table.set_column(table.column_names.index("lane"), "lane", [lanes]), first)
    copied = SqliteDecisionStore(copy / "audit.db", key=KEY, read_only=True)
    problem = verify_store(copied).problem
    assert problem is not None and (problem.kind, problem.seq) == ("altered", 3)
    copied.close()
    original = SqliteDecisionStore(tmp_path / "site" / "audit.db", key=KEY, read_only=True)
    assert verify_store(original).intact  # the original's own archive is untouched
    original.close()


def test_a_deleted_cut_of_a_store_whose_every_decision_is_archived_is_found(
    tmp_path, monkeypatch
) -> None:
    """With every decision archived, deleting the one cut row (no key needed) read as
    "0 decisions, intact" (probe 12). The archive beside the store names the cut it had; a
    copy of the file alone still holds results, which are stored only for decided declarations."""
    import shutil

    import pandas as pd

    from serving.audit.verify import verify_results_of
    from serving.outcome_store import SqliteOutcomeStore
    from serving.outcomes import store_outcomes

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _days_store(tmp_path, make=_declared_may_1st)
    results = SqliteOutcomeStore(tmp_path / "audit.db", key=KEY)
    store_outcomes(
        results,
        pd.DataFrame(
            {"declaration_id": ["D2"], "inspected_at": ["2026-05-05T09:00:00Z"], "illicit": [False]}
        ),
        source="t",
        now=pd.Timestamp("2026-06-01", tz="UTC"),
    )
    results.close()
    archive_before(store, "2026-05-04T00:00:00.000000Z")
    assert store.count() == 0 and verify_store(store).checked == 15
    assert verify_results_of(store, decisions=verify_store(store))["problem"] is None
    store.close()
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        conn.execute("DELETE FROM chain_cuts")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file alone holds it all
    store = SqliteDecisionStore(tmp_path / "audit.db", key=KEY, read_only=True)
    problem = verify_store(store).problem
    assert problem is not None and problem.kind == "deleted"
    assert "records no archive cut" in problem.detail
    store.close()
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tmp_path / "audit.db", alone / "audit.db")  # without its archive
    store = SqliteDecisionStore(alone / "audit.db", key=KEY, read_only=True)
    report = verify_store(store)
    assert report.intact and report.checked == 0
    results_problem = verify_results_of(store, decisions=report)["problem"]
    assert results_problem is not None and results_problem["declaration_id"] == "D2"
    assert "its decisions were removed" in results_problem["detail"]
    store.close()


def test_a_forged_cut_is_refused(tmp_path) -> None:
    store = _days_store(tmp_path)
    archive_before(store, "2026-05-02T00:00:00.000000Z")
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute("UPDATE chain_cuts SET cut_seq = 7")  # hiding two more decisions
    conn.close()
    with pytest.raises(ParcelriskError, match="not made by `parcelrisk audit archive`"):
        verify_store(store)


def test_a_broken_chain_is_not_archived(tmp_path) -> None:
    store = _days_store(tmp_path)
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute("UPDATE decisions SET lane = 'green' WHERE seq = 2")
    conn.close()
    with pytest.raises(ParcelriskError, match=r"chain is broken .*altered at seq 2"):
        archive_before(store, "2026-05-03T00:00:00.000000Z")
    assert store.count() == 15


def test_nothing_before_the_date_archives_nothing(tmp_path) -> None:
    store = _days_store(tmp_path)
    assert archive_before(store, "2026-04-01T00:00:00.000000Z")["archived"] == 0
    assert store.count() == 15 and json.dumps(verify_store(store).as_dict())


def test_a_second_archive_into_another_directory_is_refused(tmp_path) -> None:
    """verify walks the last cut's archive: days put elsewhere before would read as deleted
    (the probe archived twice with two --to and got 'NOT INTACT: deleted at seq 1')."""
    store = _days_store(tmp_path)
    archive_before(store, "2026-05-02T00:00:00.000000Z", tmp_path / "first")
    with pytest.raises(ParcelriskError, match=r"this store's archive is .*first: archive there"):
        archive_before(store, "2026-05-03T00:00:00.000000Z", tmp_path / "second")
    assert not (tmp_path / "second").exists()
    summary = archive_before(store, "2026-05-03T00:00:00.000000Z", tmp_path / "first")
    assert summary["archived"] == 5 and verify_store(store).intact
    store.close()


def test_list_and_export_read_the_archived_days_as_before_the_archive(
    tmp_path, capsys, monkeypatch
) -> None:
    """After an archive a period before the cut came back empty ('no decisions in that
    period'): list and export now read the archived days the period touches, then the hot
    store, and answer exactly as before the archive."""
    from tests.test_serving.conftest import run_cli

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _days_store(tmp_path)
    db = str(tmp_path / "audit.db")
    period = ("--from", "2026-05-01", "--to", "2026-05-04", "--db", db)
    queries = (
        ("audit", "list", *period, "--format", "json"),
        ("audit", "list", *period, "--format", "json", "--declaration-id", "D3"),
        ("audit", "list", *period, "--format", "json", "--limit", "4"),
        ("audit", "list", "--from", "2026-05-02", "--to", "2026-05-02", "--db", db, "--format", "csv"),
        ("audit", "export", *period, "--format", "csv"),
    )  # fmt: skip

    def answers() -> list[str]:
        out = []
        for args in queries:
            code, stdout, err = run_cli(capsys, *args)
            assert code == 0, (args, err)
            out.append(stdout)
        return out

    before = answers()
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    assert store.count() == 5
    store.close()
    after = answers()
    assert after == before
    listed = json.loads(after[0])
    assert len(listed) == 15 and [r["decision_id"] for r in listed[:2]] == ["dec0", "dec1"]
    assert [r["decision_id"] for r in json.loads(after[1])] == ["dec3"]
    assert len(json.loads(after[2])) == 4


def test_a_lookup_reads_the_id_column_of_each_day_and_one_day_whole(tmp_path, monkeypatch):
    """Any scorer's /explain of an unknown id reached every archived day: each was read whole
    (0.4 s a miss at 300k archived decisions). A miss now reads one column per day."""
    import pyarrow.parquet as real_pq

    store = _days_store(tmp_path)
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    reads: list[object] = []
    original = real_pq.read_table

    def recording(path, *args, **kwargs):
        reads.append(kwargs.get("columns"))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(real_pq, "read_table", recording)
    assert store.get("nope") is None
    assert reads == [["decision_id"], ["decision_id"]]  # two archived days, one column each
    reads.clear()
    record, intact = store.get("dec3")
    assert intact and record == _record(3)
    assert reads.count(None) == 1  # the day that holds it, whole
    store.close()


def test_the_log_replayed_from_a_cutoff_reads_the_archived_days_after_it(tmp_path) -> None:
    """A worker started after an archive of days past its snapshot's cutoff rebuilt its live
    state from the hot store alone: two replicas scored one declaration with 95 of 159
    features apart (probe). The replay reads archive and hot rows as one log, paged."""
    import dataclasses
    from datetime import UTC, datetime

    from serving.audit.archived import since_with_archive

    def declared(i: int):
        day = 1 + i // 5
        text = json.dumps({"declaration_id": f"D{i}", "declared_at": f"2026-05-0{day}T10:00:00Z"})
        return dataclasses.replace(_record(i), declaration_json=text)

    store = _days_store(tmp_path, make=declared)
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    cutoff = int(datetime(2026, 5, 2, tzinfo=UTC).timestamp() * 1_000_000)
    hot_only = [seq for seq, _ in store.since(0, cutoff)]
    assert hot_only == [11, 12, 13, 14, 15]
    replayed = [seq for seq, _ in since_with_archive(store, 0, cutoff)]
    assert replayed == list(range(6, 16))  # day 2 (archived) and day 3 (hot)
    pages, seq = [], 0
    while rows := since_with_archive(store, seq, cutoff, limit=4):
        pages.append([s for s, _ in rows])
        seq = rows[-1][0]
    assert pages == [[6, 7, 8, 9], [10, 11, 12, 13], [14, 15]]
    texts = dict(since_with_archive(store, 0, None))
    assert len(texts) == 15 and json.loads(texts[7])["declaration_id"] == "D6"
    store.close()


def test_results_of_archived_declarations_are_replayed_with_their_declaration(
    tmp_path, monkeypatch
) -> None:
    """Results stay in the store when their decisions' days are archived: the results log a
    worker replays (and `audit recompute` rebuilds from) joined them to the hot decisions
    alone and dropped every result of an archived day (probe 12)."""

    import pandas as pd

    from serving.outcome_store import SqliteOutcomeStore
    from serving.outcomes import store_outcomes
    from serving.scoring import results_to_replay

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _days_store(tmp_path, make=_declared_may_1st)
    results = SqliteOutcomeStore(tmp_path / "audit.db", key=KEY)
    inspected = pd.DataFrame(
        {
            "declaration_id": ["D1", "D7", "D12"],  # days 1 and 2 are archived below, 3 not
            "inspected_at": ["2026-05-05T09:00:00Z"] * 3,
            "illicit": [True, False, True],
            "revenue_recovered": [10.0, None, 5.0],
        }
    )
    store_outcomes(results, inspected, source="t", now=pd.Timestamp("2026-06-01", tz="UTC"))
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    assert [e.seq for e in results.results_since(0)] == [3]  # the hot store knows D12 alone
    events = results.results_since(0, decisions=store)
    assert [json.loads(e.declaration_json)["declaration_id"] for e in events] == [
        "D1",
        "D7",
        "D12",
    ]
    assert [e.seq for e in results_to_replay(results, 0, None, store)] == [1, 2, 3]
    results.close()
    store.close()


def test_a_second_archive_while_one_runs_is_refused_in_one_line(tmp_path) -> None:
    """Two at once chose the same cut; the second died on the store's unique cut with an
    82-line traceback (probe)."""
    import fcntl

    store = _days_store(tmp_path)
    with open(tmp_path / ".audit.db.archive.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ParcelriskError, match="another `parcelrisk audit archive` is running"):
            archive_before(store, "2026-05-03T00:00:00.000000Z")
    assert store.count() == 15
    assert archive_before(store, "2026-05-03T00:00:00.000000Z")["archived"] == 10
    assert archive_before(store, "2026-05-03T00:00:00.000000Z")["archived"] == 0
    store.close()


def test_verify_while_an_archive_cuts_the_store_finds_the_chain_intact(tmp_path) -> None:
    """The cut committed between verify's read of it and its walk of the hot rows: the rows
    moved were seen nowhere, "NOT INTACT: deleted" on an intact chain (probe)."""
    store = _days_store(tmp_path)
    other = SqliteDecisionStore(tmp_path / "audit.db", key=KEY)  # the archiving process
    walked = store.chain_rows
    archived: list[dict] = []

    def archive_meanwhile(*args, **kwargs):
        if not archived:
            archived.append(archive_before(other, "2026-05-03T00:00:00.000000Z"))
        return walked(*args, **kwargs)

    store.chain_rows = archive_meanwhile  # type: ignore[method-assign]
    report = verify_store(store)
    assert archived[0]["archived"] == 10
    assert report.intact and report.checked == 15, report.problem
    other.close()
    store.close()


def test_a_replay_whose_archive_cannot_be_read_stops_with_one_line(tmp_path) -> None:
    """A worker that cannot read the archived days must not build its state without them."""
    from serving.audit.archived import since_with_archive

    store = _days_store(tmp_path)
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    (tmp_path / "audit.db.archive" / "manifest.json").unlink()
    with pytest.raises(ParcelriskError, match=r"archived days .* cannot be read"):
        since_with_archive(store, 0, None)
    assert [s for s, _ in since_with_archive(store, 10, None)] == [11, 12, 13, 14, 15]
    store.close()


def test_verify_waits_for_an_archive_whose_manifest_is_written_then_reports_a_real_gap(
    tmp_path, monkeypatch
) -> None:
    """An archive writes its manifest before its cut: a manifest ahead of the store is waited
    for (briefly here), and still reported when the cut never comes (an archive killed)."""
    import serving.audit.verify as verify_module

    store = _days_store(tmp_path)
    archive_before(store, "2026-05-02T00:00:00.000000Z")
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    manifest_path = tmp_path / "audit.db.archive" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["cut_seq"] = 12  # a later cut written, never made
    manifest_path.write_text(json.dumps(manifest))
    assert verify_module._archive_ahead(store.chain_start())
    monkeypatch.setattr(verify_module, "_ARCHIVE_SETTLE_S", 0.3)
    assert verify_store(store).intact  # the files still end at the store's cut
    store.close()
