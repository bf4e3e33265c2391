"""A decision records the model that made it, beyond its registry name and version: the MLflow
run and the SHA-256 of its bundle.json, under the decision's MAC (probe 12: a rebuilt registry
named another run for "v1", and `audit show` explained the decision with it, unsaid).

Stores written before these fields keep verifying as they are, read-only copies included."""

from __future__ import annotations

import dataclasses
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.audit.archive import archive_before
from serving.audit.chain import decision_mac_input
from serving.audit.models import LoadedModel, not_the_model
from serving.audit.verify import verify_store
from serving.decision import ADDED_FIELDS, STORED_FIELDS
from serving.sqlite_store import SqliteDecisionStore
from tests.test_serving.test_audit_archive import _days_store
from tests.test_serving.test_store import STORES, _record

KEY = b"k" * 40
RUN, BUNDLE = "a1b2c3d4e5f6", "9f" * 32


def _decided(i: int):
    """``_record(i)`` as a model with a run and a bundle digest decides it now."""
    return dataclasses.replace(_record(i), model_run_id=RUN, model_bundle_sha256=BUNDLE)


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    opened = STORES[request.param](request, tmp_path)
    yield opened
    opened.close()


def _edit(store, statement: str) -> None:
    """What someone with write access does behind the service's back, on either store."""
    if isinstance(store, SqliteDecisionStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute(statement)
        return
    with store.engine.begin() as conn:
        conn.exec_driver_sql(statement)


def test_the_model_that_decided_is_stored_and_covered_by_the_mac(store) -> None:
    store.record([_decided(0), _decided(1), _decided(2)])
    record, intact = store.get("dec1")
    assert intact and (record.model_run_id, record.model_bundle_sha256) == (RUN, BUNDLE)
    item = record.stored_item(["a", "b"], intact)  # the /decision body
    assert item["model"] == {"name": "parcel-risk", "version": "3", "run_id": RUN,
                             "bundle_sha256": BUNDLE}  # fmt: skip
    assert verify_store(store).intact
    # pointing a decision at another run, or removing the run it named, breaks its MAC
    _edit(store, "UPDATE decisions SET model_run_id = 'another-run' WHERE seq = 2")
    problem = verify_store(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("altered", 2)
    _edit(store, f"UPDATE decisions SET model_run_id = '{RUN}' WHERE seq = 2")
    assert verify_store(store).intact
    _edit(store, "UPDATE decisions SET model_run_id = '', model_bundle_sha256 = '' WHERE seq = 3")
    problem = verify_store(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("altered", 3)


def test_an_old_decision_gains_no_run_by_an_edit(store) -> None:
    """A decision recorded before the fields (empty) cannot be given a run afterwards."""
    store.record([_record(0), _record(1)])
    assert verify_store(store).intact
    _edit(store, f"UPDATE decisions SET model_run_id = '{RUN}' WHERE seq = 1")
    problem = verify_store(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("altered", 1)


def test_empty_added_fields_are_left_out_of_the_mac_and_only_they() -> None:
    values = _record(0).stored_values()
    assert len(values) == len(STORED_FIELDS)
    assert list(decision_mac_input(values)) == list(values[: -len(ADDED_FIELDS)])
    decided = _decided(0).stored_values()
    # no warning codes, no pseudonym key id
    assert list(decision_mac_input(decided)) == list(decided[:-2])
    keyed = dataclasses.replace(_decided(0), pseudonym_key_id="9e9d5cd759d0f96c").stored_values()
    assert list(decision_mac_input(keyed)) == list(keyed)  # the empty codes before it stay
    # a run without a digest keeps the run: only trailing empties go
    half = dataclasses.replace(_record(0), model_run_id=RUN).stored_values()
    assert list(decision_mac_input(half)) == list(half[: -len(ADDED_FIELDS) + 1])


def _drop_added_columns(path) -> None:
    """The file as the store wrote it before ``ADDED_FIELDS`` existed."""
    with sqlite3.connect(path) as conn:
        for name in ADDED_FIELDS:
            conn.execute(f"ALTER TABLE decisions DROP COLUMN {name}")


def test_a_sqlite_store_from_before_the_fields_verifies_read_only_and_is_extended(
    tmp_path,
) -> None:
    path = tmp_path / "audit.db"
    old = SqliteDecisionStore(path, key=KEY)
    old.record([_record(i) for i in range(4)])
    head = verify_store(old).head
    old.close()
    _drop_added_columns(path)
    before = path.read_bytes()
    # an auditor's read-only copy: read through a view, the file never written
    copy = SqliteDecisionStore(path, key=KEY, read_only=True)
    report = verify_store(copy, head)
    assert report.intact and report.checked == 4
    record, intact = copy.get("dec2")
    assert intact and record == _record(2) and record.model_run_id == ""
    assert [r.decision_id for r in copy.find(limit=10)] == [f"dec{i}" for i in range(4)]
    copy.close()
    assert path.read_bytes() == before
    # a writer adds the columns, empty in the old rows, whose MACs still hold
    store = SqliteDecisionStore(path, key=KEY)
    store.record([_decided(4)])
    report = verify_store(store, head)
    assert report.intact and report.checked == 5
    assert store.get("dec4")[0].model_run_id == RUN and store.get("dec1")[0].model_run_id == ""
    store.close()
    again = SqliteDecisionStore(path, key=KEY)  # a second writer finds them there
    assert verify_store(again).intact
    again.close()


def test_a_postgresql_store_from_before_the_fields_is_extended(tmp_path, postgres_url) -> None:
    from serving.postgres_store import PostgresDecisionStore

    old = PostgresDecisionStore(postgres_url, key=KEY)
    old.record([_record(i) for i in range(3)])
    with old.engine.begin() as conn:
        for name in ADDED_FIELDS:
            conn.exec_driver_sql(f"ALTER TABLE decisions DROP COLUMN {name}")
    old.close()
    store = PostgresDecisionStore(postgres_url, key=KEY)
    store.record([_decided(3)])
    report = verify_store(store)
    assert report.intact and report.checked == 4
    assert store.get("dec3")[0].model_run_id == RUN and store.get("dec0")[0].model_run_id == ""
    store.close()


def test_a_day_archived_before_the_fields_still_verifies(tmp_path) -> None:
    store = _days_store(tmp_path)
    head = verify_store(store).head
    archive_before(store, "2026-05-03T00:00:00.000000Z")
    for day in sorted((tmp_path / "audit.db.archive").glob("day=*/*.parquet")):
        table = pq.read_table(day)
        pq.write_table(table.drop_columns(list(ADDED_FIELDS)), day, compression="zstd")
        assert set(ADDED_FIELDS).isdisjoint(pq.read_schema(day).names)
    report = verify_store(store, head)
    assert report.intact and report.checked == 15
    record, intact = store.get("dec3")  # archived
    assert intact and record == _record(3)
    store.close()


def _loaded(run_id: str, bundle: str) -> LoadedModel:
    return LoadedModel(name="parcel-risk", version="3", run_id=run_id, model=None,  # type: ignore[arg-type]
                       state_dir=None, bundle_sha256=bundle)  # type: ignore[arg-type]  # fmt: skip


def test_the_registry_naming_another_model_is_said() -> None:
    decided = _decided(0)
    assert not_the_model(decided, _loaded(RUN, BUNDLE)) is None
    problem = not_the_model(decided, _loaded("rebuilt-run", BUNDLE))
    assert problem is not None
    assert (
        f"made by run {RUN}" in problem
        and "the registry's parcel-risk v3 is run rebuilt-run" in problem
    )
    problem = not_the_model(decided, _loaded(RUN, "00" * 32))
    assert problem is not None and "not the model that decided" in problem
    # a decision from before the fields: its name and version are all it says
    assert not_the_model(_record(0), _loaded("any-run", "00" * 32)) is None


def test_an_archive_table_without_the_columns_reads_them_empty(tmp_path) -> None:
    """The archive reader itself (``archived_rows``): no column, empty values."""
    from serving.sqlite_store import archived_rows

    store = _days_store(tmp_path, days=("2026-05-01", "2026-05-02"), per_day=2)
    archive_before(store, "2026-05-02T00:00:00.000000Z")
    (day,) = sorted((tmp_path / "audit.db.archive").glob("day=*/*.parquet"))
    table = pq.read_table(day).drop_columns(list(ADDED_FIELDS))
    pq.write_table(pa.table(table), day)
    rows = list(archived_rows(day))
    assert len(rows) == 2 and all(row.values[-2:] == ["", ""] for row in rows)
    store.close()


def test_a_store_a_newer_release_wrote_is_refused_by_name_not_called_altered(store) -> None:
    """A rollback: a newer release added (and signed) a decision field this one does not know.
    Opening the store says so and names the field, for writers and readers alike, instead of
    calling intact decisions altered or extending a chain it cannot check (probe 15 #04)."""
    from serving.decision import StoreFromNewerRelease
    from serving.store import open_store

    store.record([_decided(0), _decided(1)])
    _edit(store, "ALTER TABLE decisions ADD COLUMN office_note TEXT NOT NULL DEFAULT 'x'")
    where = f"sqlite:///{store.path}" if isinstance(store, SqliteDecisionStore) else store.source
    refused = r"written by a newer parcelrisk release.*\(office_note\).*restore the backup"
    with pytest.raises(StoreFromNewerRelease, match=refused):
        open_store(where)
    if isinstance(store, SqliteDecisionStore):  # the auditor's read-only handle too
        with pytest.raises(StoreFromNewerRelease, match=refused):
            SqliteDecisionStore(store.path, read_only=True)
        with sqlite3.connect(store.path) as conn:  # and nothing was written meanwhile
            assert conn.execute("SELECT count(*) FROM decisions").fetchone() == (2,)


def test_the_cli_names_a_store_from_a_newer_release_in_one_line(tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "audit.db"
    SqliteDecisionStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE decisions ADD COLUMN office_note TEXT NOT NULL DEFAULT ''")
    done = subprocess.run(
        [sys.executable, "-m", "serving.main", "audit", "verify", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "written by a newer parcelrisk release" in done.stderr
    assert "Traceback" not in done.stderr and "NOT INTACT" not in done.stdout + done.stderr


def test_results_a_newer_release_wrote_are_refused_by_name_too(store) -> None:
    """The inspection results are chained too: a field a newer release added to them is refused
    the same way, by the writer's and the reader's open alike."""
    from serving.decision import StoreFromNewerRelease
    from serving.store import open_outcome_store, open_store

    where = f"sqlite:///{store.path}" if isinstance(store, SqliteDecisionStore) else store.source
    open_outcome_store(where, store).close()  # the results table, as this release makes it
    _edit(store, "ALTER TABLE outcomes ADD COLUMN appeal_ref TEXT")
    refused = r"newer parcelrisk release: its results have fields .*\(appeal_ref\)"
    with pytest.raises(StoreFromNewerRelease, match=refused):
        if isinstance(store, SqliteDecisionStore):
            open_outcome_store(where, store)
        else:
            open_store(where)
    if isinstance(store, SqliteDecisionStore):
        with pytest.raises(StoreFromNewerRelease, match=refused):
            open_outcome_store(where, read_only=True)
