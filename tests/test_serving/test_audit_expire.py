"""`parcelrisk audit expire`: archived days past their retention period are deleted with a
signed record, and `verify` says "expired", not "deleted" (probe 18 H2: a retention schedule
that deleted an archived day left the store NOT INTACT for ever). Deleted without a record,
or under a forged one, is still NOT INTACT."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from features.errors import ParcelriskError
from serving.audit.archive import archive_before
from serving.audit.expire import expire_before
from serving.audit.verify import verify_results_of, verify_store
from tests.test_serving.test_audit_archive import KEY, _days_store
from tests.test_serving.test_store import _record

MAY_2 = "2026-05-02T00:00:00.000000Z"
MAY_3 = "2026-05-03T00:00:00.000000Z"


def _archived(tmp_path, **kwargs):
    """Three days of five decisions, the first two archived."""
    store = _days_store(tmp_path, **kwargs)
    archive_before(store, MAY_3, kwargs.get("url") and tmp_path / "archive")
    return store


def _log(tmp_path) -> dict:
    return json.loads((tmp_path / "audit.db.archive" / "expired.json").read_text())


def test_an_expired_day_is_deleted_and_the_chain_still_verifies(tmp_path) -> None:
    store = _archived(tmp_path)
    summary = expire_before(store, MAY_2, "customs code art. 51: 3 years", by="dpo@site")
    assert summary["expired"] == 5 and summary["seq"] == [1, 5]
    assert summary["days"] == ["2026-05-01", "2026-05-01"] and summary["files_deleted"] == 1
    archive = tmp_path / "audit.db.archive"
    assert not (archive / "day=2026-05-01").exists() and (archive / "day=2026-05-02").is_dir()
    assert [e["day"] for e in json.loads((archive / "manifest.json").read_text())["files"]] == [
        "2026-05-02"
    ]
    (record,) = _log(tmp_path)["records"]
    assert (record["first_seq"], record["last_seq"], record["decisions"]) == (1, 5, 5)
    assert record["by"] == "dpo@site" and record["reason"] == "customs code art. 51: 3 years"
    assert record["files"][0]["file"].startswith("day=2026-05-01/") and record["files"][0]["sha256"]
    report = verify_store(store)
    assert report.intact and report.checked == 10 and report.first_seq == 6
    assert report.expired[0]["first_seq"] == 1 and report.expired[0]["reason"].startswith("customs")
    assert store.get("dec0") is None and store.get("dec5")[1]  # the next day still proven
    store.record([_record(100)])  # the chain goes on
    assert verify_store(store).intact
    store.close()


def test_an_archived_day_deleted_without_a_record_is_still_not_intact(tmp_path) -> None:
    store = _archived(tmp_path)
    expire_before(store, MAY_2, "retention")
    (tmp_path / "audit.db.archive" / "day=2026-05-02").rename(tmp_path / "gone")
    problem = verify_store(store).problem
    assert problem is not None and problem.kind == "deleted" and problem.seq == 6
    store.close()


@pytest.mark.parametrize("edit", ["reason", "range", "key"])
def test_an_edited_or_forged_expiry_record_is_not_intact(tmp_path, edit) -> None:
    from serving.audit.expiry import expiry_mac

    store = _archived(tmp_path)
    expire_before(store, MAY_2, "retention")
    path = tmp_path / "audit.db.archive" / "expired.json"
    log = json.loads(path.read_text())
    record = log["records"][0]
    if edit == "reason":
        record["reason"] = "nobody asked"
    elif edit == "range":  # claim day 2 expired too, and delete it
        record["last_seq"] = 10
        (tmp_path / "audit.db.archive" / "day=2026-05-02").rename(tmp_path / "gone")
    else:  # a well-formed record, MAC'd with another key
        record["mac"] = expiry_mac(b"x" * 40, record).hex()
    path.write_text(json.dumps(log))
    problem = verify_store(store).problem
    assert problem is not None and problem.kind == "altered" and "valid MAC" in problem.detail
    store.close()


def test_a_removed_expiry_record_is_not_intact(tmp_path) -> None:
    store = _archived(tmp_path)
    expire_before(store, MAY_2, "retention")
    (tmp_path / "audit.db.archive" / "expired.json").unlink()
    problem = verify_store(store).problem
    assert problem is not None and problem.kind == "deleted" and problem.seq == 1
    store.close()


def test_hot_decisions_before_the_date_are_archived_first(tmp_path) -> None:
    store = _days_store(tmp_path)
    with pytest.raises(ParcelriskError, match="archive them first: parcelrisk audit archive"):
        expire_before(store, MAY_2, "retention")
    archive_before(store, MAY_2)
    with pytest.raises(ParcelriskError, match="--before 2026-05-03"):
        expire_before(store, MAY_3, "retention")  # day 2 is still hot
    assert store.count() == 10 and verify_store(store).intact
    store.close()


def test_a_date_in_the_future_or_no_reason_is_refused(tmp_path) -> None:
    store = _archived(tmp_path)
    with pytest.raises(ParcelriskError, match="in the future"):
        expire_before(store, "2999-01-01T00:00:00.000000Z", "retention")
    with pytest.raises(ParcelriskError, match="--reason"):
        expire_before(store, MAY_2, "  ")
    assert len(list((tmp_path / "audit.db.archive").glob("day=*/*.parquet"))) == 2
    store.close()


def test_a_broken_chain_is_not_expired(tmp_path) -> None:
    import pyarrow.parquet as pq

    store = _archived(tmp_path)
    day = next((tmp_path / "audit.db.archive").glob("day=2026-05-01/*.parquet"))
    table = pq.read_table(day)
    lanes = table.column("lane").to_pylist()
    lanes[1] = "green"
    pq.write_table(table.set_column(table.column_names.index("lane"), "lane", [lanes]), day)
    with pytest.raises(ParcelriskError, match="expiring would hide it"):
        expire_before(store, MAY_2, "retention")
    assert day.is_file()
    store.close()


@pytest.mark.parametrize("stop", ["before the files", "before the manifest"])
def test_an_expiry_stopped_half_way_verifies_and_a_rerun_finishes_it(
    tmp_path, monkeypatch, stop
) -> None:
    """The record is written first: at every step after it `verify` tells expired from
    tampered, and a re-run deletes what is left."""
    import serving.audit.expire as expire

    store = _archived(tmp_path)
    archive = tmp_path / "audit.db.archive"
    crash = RuntimeError("killed")
    if stop == "before the files":
        monkeypatch.setattr(expire, "_carry_out", lambda *a: (_ for _ in ()).throw(crash))
    else:
        monkeypatch.setattr(expire.os, "replace", _fail_on(expire.os.replace, "manifest", crash))
    with pytest.raises(RuntimeError):
        expire_before(store, MAY_2, "retention")
    monkeypatch.undo()
    report = verify_store(store)
    assert report.intact and report.expired and report.checked == 10
    on_disk = (archive / "day=2026-05-01").exists()
    assert on_disk == (stop == "before the files")
    assert bool(report.expiry_pending) == on_disk
    summary = expire_before(store, MAY_2, "retention")
    assert summary["expired"] == 0 and len(_log(tmp_path)["records"]) == 1
    assert not (archive / "day=2026-05-01").exists()
    assert len(json.loads((archive / "manifest.json").read_text())["files"]) == 1
    report = verify_store(store)
    assert report.intact and not report.expiry_pending
    store.close()


def _fail_on(replace, name: str, error: Exception):
    def replacing(src, dst):
        if name in str(dst):
            raise error
        return replace(src, dst)

    return replacing


def test_an_expired_file_still_on_disk_but_not_the_one_recorded_is_not_intact(
    tmp_path, monkeypatch
) -> None:
    """A record claiming a range whose files still exist: intact (an expiry to finish) only
    while they are the files it names."""
    import serving.audit.expire as expire

    store = _archived(tmp_path)
    monkeypatch.setattr(expire, "_carry_out", lambda *a: (_ for _ in ()).throw(RuntimeError()))
    with pytest.raises(RuntimeError):
        expire_before(store, MAY_2, "retention")
    monkeypatch.undo()
    day = next((tmp_path / "audit.db.archive").glob("day=2026-05-01/*.parquet"))
    day.write_bytes(day.read_bytes() + b"\0")
    problem = verify_store(store).problem
    assert problem is not None and problem.kind == "altered" and "sha256" in problem.detail
    with pytest.raises(ParcelriskError, match="broken"):
        expire_before(store, MAY_2, "retention")
    assert day.is_file()
    store.close()


def test_a_filed_head_in_the_expired_range_is_said_not_failed(tmp_path) -> None:
    store = _days_store(tmp_path, days=("2026-05-01",), per_day=3)
    old_head = verify_store(store).head  # seq 3 of 5 on 1 May
    store.close()
    days = ("2026-05-01", "2026-05-02", "2026-05-03")
    store = _days_store(tmp_path, days=days, per_day=2, make=lambda i: _record(100 + i))
    archive_before(store, MAY_3)
    expire_before(store, MAY_2, "retention")
    report = verify_store(store, old_head)
    assert report.intact and report.head_expired == old_head and report.head_checked is None
    later = verify_store(store).head
    assert verify_store(store, later).head_checked == later
    store.close()


def test_every_archived_day_expired_still_verifies_and_archives_on(tmp_path) -> None:
    store = _archived(tmp_path)
    summary = expire_before(store, MAY_3, "retention")
    assert summary["seq"] == [1, 10] and summary["files_deleted"] == 2
    report = verify_store(store)
    assert report.intact and report.checked == 5 and report.first_seq == 11
    archive_before(store, "2026-05-04T00:00:00.000000Z")  # the last hot day
    report = verify_store(store)
    assert report.intact and report.checked == 5 and store.count() == 0
    assert expire_before(store, "2026-05-04T00:00:00.000000Z", "retention")["expired"] == 5
    log = _log(tmp_path)["records"]
    assert [(r["first_seq"], r["last_seq"]) for r in log] == [(1, 10), (11, 15)]
    report = verify_store(store)
    assert report.intact and report.checked == 0 and len(report.expired) == 2
    store.close()


def _declared(i: int):
    import dataclasses

    text = json.dumps({"declaration_id": f"D{i}", "declared_at": "2026-05-01T10:00:00Z"})
    return dataclasses.replace(_record(i), declaration_json=text)


def _results(tmp_path, ids: list[str]):
    from serving.outcome_store import SqliteOutcomeStore
    from serving.outcomes import store_outcomes

    results = SqliteOutcomeStore(tmp_path / "audit.db", key=KEY)
    inspected = pd.DataFrame(
        {
            "declaration_id": ids,
            "inspected_at": ["2026-05-05T09:00:00Z"] * len(ids),
            "illicit": [True] * len(ids),
            "revenue_recovered": [10.0] * len(ids),
        }
    )
    store_outcomes(results, inspected, source="t", now=pd.Timestamp("2026-06-01", tz="UTC"))
    return results


def _result_ids(results) -> list[tuple[int, str]]:
    return [(row.seq, row.decision_id) for row in results.chain_rows()]


def test_the_results_of_expired_declarations_go_with_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _days_store(tmp_path, make=_declared)
    results = _results(tmp_path, ["D1", "D7", "D2", "D12"])  # days 1, 2, 1, 3
    archive_before(store, MAY_3)  # results arrive before their days are archived
    summary = expire_before(store, MAY_2, "retention")
    assert summary["results_deleted"] == 2 and summary["results_held"] == []
    assert _result_ids(results) == [(2, "D7"), (4, "D12")]
    record = _log(tmp_path)["records"][0]["results"]
    assert record["count"] == 2 and [(r["first_seq"], r["last_seq"]) for r in record["runs"]] == [
        (1, 1),
        (3, 3),
    ]
    decisions = verify_store(store)
    checked = verify_results_of(store, decisions=decisions)
    assert decisions.intact and checked["intact"] and checked["checked"] == 2
    results.close()
    store.close()


def test_the_last_result_is_held_back_then_expired_later(tmp_path, monkeypatch) -> None:
    """The next result is chained after the last one stored: deleting it would hand its seq
    to the next. Held, named in the record, deleted by the next expiry."""
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _days_store(tmp_path, make=_declared)
    results = _results(tmp_path, ["D7", "D1"])  # results arrive before their days are archived
    archive_before(store, MAY_3)
    summary = expire_before(store, MAY_2, "retention")
    assert summary["results_deleted"] == 0 and summary["results_held"] == [2]
    decisions = verify_store(store)
    assert verify_results_of(store, decisions=decisions)["intact"]
    results.close()
    results = _results(tmp_path, ["D12"])
    expire_before(store, MAY_3, "retention")
    assert _result_ids(results) == [(3, "D12")]
    decisions = verify_store(store)
    checked = verify_results_of(store, decisions=decisions)
    assert decisions.intact and checked["intact"] and checked["checked"] == 1
    results.close()
    store.close()


def test_a_result_deleted_without_an_expiry_is_still_found(tmp_path, monkeypatch) -> None:
    import sqlite3

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _days_store(tmp_path, make=_declared)
    results = _results(tmp_path, ["D1", "D7", "D12"])
    archive_before(store, MAY_3)
    expire_before(store, MAY_2, "retention")
    results.close()
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        conn.execute("DELETE FROM outcomes WHERE seq = 2")  # D7: its day is kept
    checked = verify_results_of(store, decisions=verify_store(store))
    assert checked["problem"] is not None and checked["problem"]["kind"] == "deleted"
    store.close()


def test_readers_say_a_decision_expired_instead_of_not_found(tmp_path, capsys, monkeypatch):
    from tests.test_serving.conftest import run_cli

    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    store = _archived(tmp_path)
    store.close()
    db = str(tmp_path / "audit.db")
    code, out, err = run_cli(
        capsys, "audit", "expire", "--before", "2026-05-02", "--reason", "3 years", "--db", db
    )
    assert code == 0, err
    assert json.loads(out)["expired"] == 5
    code, _, err = run_cli(capsys, "audit", "verify", "--db", db)
    assert code == 0 and "expired: decisions seq 1..5 (2026-05-01 to 2026-05-01)" in err
    assert "reason: 3 years" in err
    code, _, err = run_cli(capsys, "audit", "show", "dec0", "--db", db)
    assert code == 2 and "expired on" in err and "deleted" in err
    period = ("--from", "2026-05-01", "--to", "2026-05-04", "--db", db)
    code, out, err = run_cli(capsys, "audit", "list", *period, "--format", "json")
    assert code == 0 and len(json.loads(out)) == 10 and "expired on" in err
    code, out, err = run_cli(capsys, "audit", "export", *period, "--format", "csv")
    assert code == 0 and "expired on" in err and "dec0," not in out
    code, _, err = run_cli(capsys, "audit", "list", "--from", "2026-05-03", "--to", "2026-05-04",
                           "--db", db)  # fmt: skip
    assert code == 0 and "expired" not in err
    code, _, err = run_cli(capsys, "audit", "expire", "--before", "2026-05-04", "--reason", "x",
                           "--db", db)  # fmt: skip
    assert code == 2 and "archive them first" in err and len(err.strip().splitlines()) == 1


def test_a_postgresql_store_expires_its_archived_days(tmp_path, postgres_url) -> None:
    store = _archived(tmp_path, url=postgres_url)
    summary = expire_before(store, MAY_2, "retention")
    assert summary["expired"] == 5 and summary["files_deleted"] == 1
    assert (tmp_path / "archive" / "expired.json").is_file()
    report = verify_store(store)
    assert report.intact and report.checked == 10 and report.expired
    assert store.get("dec0") is None and store.get("dec6")[1]
    store.close()
