"""Admission by work: a request that would wait too long behind the queue is refused at once
(429 with Retry-After), weighed by its declarations, and leaves no decision."""

from __future__ import annotations

import json
import re

import pytest

from features.errors import ParcelriskError
from features.params import ServeParams
from tests.test_serving.conftest import auth, make_declarations


@pytest.fixture
def batcher(client):
    from serving.service import _WORKER

    assert _WORKER.service is not None
    batcher = _WORKER.service.batcher
    saved = batcher.rows_per_s
    yield batcher
    batcher.rows_per_s = saved


def test_a_request_that_would_wait_too_long_is_429_with_retry_after(client, batcher, service_env):
    from serving.sqlite_store import SqliteDecisionStore

    declarations = make_declarations(40, seed=51, prefix="BUSY")
    batcher.rows_per_s = 4.0  # 40 declarations: 10 s of work at this rate, above the 5 s limit
    store = SqliteDecisionStore(service_env / "audit.db")
    try:
        before = store.count()
        r = client.post("/score", json={"declarations": declarations}, headers=auth())
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        # weighed before its body is read, by its size (~ the 40 declarations it holds)
        assert re.search(r"these ~\d+ would wait", r.json()["error"]), r.text
        assert store.count() == before  # nothing scored, nothing recorded
        # the same worker admits a request light enough for the rate
        r = client.post("/score", json={"declarations": declarations[:4]}, headers=auth())
        assert r.status_code == 200, r.text
    finally:
        store.close()


def test_a_cold_worker_admits(client, batcher):
    batcher.rows_per_s = None  # no big batch timed yet
    r = client.post(
        "/score",
        json={"declarations": make_declarations(3, seed=52, prefix="COLD")},
        headers=auth(),
    )
    assert r.status_code == 200, r.text


def test_the_queue_limit_must_leave_room_before_the_timeout():
    assert ServeParams(request_timeout_s=8).queue_wait_limit_s == 4
    with pytest.raises(ParcelriskError, match="max_queue_wait_s"):
        ServeParams.from_dict({"request_timeout_s": 3, "max_queue_wait_s": 3}, "serve")


def test_a_full_queue_refuses_before_the_body_is_parsed(client, batcher):
    batcher.rows_per_s = 1.0
    batcher._in_flight_rows = 50  # 50 s of queued work at this rate
    try:
        # not even JSON: refused before anything reads it
        r = client.post(
            "/score", content=b"{not json", headers={**auth(), "Content-Type": "application/json"}
        )
        assert r.status_code == 429, r.text
        assert "these ~1 would wait" in r.json()["error"]
        assert client.get("/readyz").status_code == 200  # probes are never shed
    finally:
        batcher._in_flight_rows = 0


def test_requests_being_parsed_count_as_queued_work(client, batcher):
    """A burst is weighed before any of it is parsed: a request whose body is still being read
    holds its estimated declarations, so the next one is refused at once, unread."""
    batcher.rows_per_s = 10.0  # the 5 s limit holds 50 declarations
    declarations = make_declarations(30, seed=54, prefix="BURST")
    body = json.dumps({"declarations": declarations}).encode()
    held = batcher.reserve(30, len(body))  # another request of 30, being parsed now
    try:
        r = client.post(
            "/score",
            content=b"{not json" + b" " * len(body),  # as big, and never read
            headers={**auth(), "Content-Type": "application/json"},
        )
        assert r.status_code == 429, r.text
        assert "would wait" in r.json()["error"]
    finally:
        held.release()
    assert batcher.queued_rows == 0
    r = client.post("/score", content=body, headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert batcher.queued_rows == 0  # its reservation went when it was queued and answered


def test_the_size_of_a_declaration_is_learnt_from_the_requests(client, batcher):
    from serving.service import _WORKER

    service = _WORKER.service
    saved = service._bytes_per_row
    try:
        service._bytes_per_row = 10_000.0  # far too big: 1,000 declarations would look like 50
        declarations = make_declarations(20, seed=55, prefix="SIZE")
        body = json.dumps({"declarations": declarations}).encode()
        for _ in range(30):
            r = client.post(
                "/score", content=body, headers={**auth(), "Content-Type": "application/json"}
            )
            assert r.status_code == 200, r.text
        assert service._bytes_per_row == pytest.approx(len(body) / 20, rel=0.05)
        assert service.rows_in(len(body)) == 20
        assert service.rows_in(None) == service.config.max_batch  # chunked: a full batch
    finally:
        service._bytes_per_row = saved


def test_a_store_that_cannot_write_is_503_and_nothing_is_answered(client, monkeypatch):
    from serving.service import _WORKER
    from serving.sqlite_store import StoreUnavailable

    service = _WORKER.service

    def full(*args, **kwargs):
        raise StoreUnavailable("decision store audit.db: database or disk is full (SQLITE_FULL)")

    monkeypatch.setattr(service.store, "record", full)
    r = client.post(
        "/score",
        json={"declarations": make_declarations(2, seed=53, prefix="FULL")},
        headers=auth(),
    )
    assert r.status_code == 503, r.text
    assert "disk is full" in r.json()["error"] and r.headers["Retry-After"]
    # not ready for a while after the store refused (a balancer sends traffic elsewhere),
    # ready again after the pause, or as soon as a batch is recorded
    assert client.get("/readyz").status_code == 503
    service._unavailable_at -= 11
    assert client.get("/readyz").status_code == 200
    r = client.post(
        "/score",
        json={"declarations": make_declarations(1, seed=55, prefix="FULL2")},
        headers=auth(),
    )
    assert r.status_code == 503 and client.get("/readyz").status_code == 503
    monkeypatch.undo()  # the disk has room again: the next batch is recorded, ready at once
    _a_write_goes_through_and_ready(client, seed=56, prefix="BACK")


def _a_write_goes_through_and_ready(client, *, seed: int, prefix: str) -> None:
    """One declaration scored and recorded: the worker is ready again at once."""
    r = client.post(
        "/score",
        json={"declarations": make_declarations(1, seed=seed, prefix=prefix)},
        headers=auth(),
    )
    assert r.status_code == 200, r.text
    assert client.get("/readyz").status_code == 200


def test_results_the_store_cannot_write_are_503(client, monkeypatch):
    import serving.service as service_module
    from serving.sqlite_store import StoreUnavailable

    def full(*args, **kwargs):
        raise StoreUnavailable("decision store audit.db: database or disk is full (SQLITE_FULL)")

    monkeypatch.setattr(service_module, "store_outcomes", full)
    r = client.post(
        "/outcomes",
        json={
            "outcomes": [
                {"declaration_id": "X1", "inspected_at": "2026-03-02T10:00:00Z", "illicit": False}
            ]
        },
        headers=auth("inspector"),
    )
    assert r.status_code == 503, r.text
    assert "disk is full" in r.json()["error"] and r.headers["Retry-After"]
    # the results share the decisions' store: not ready for a while, as after /score's refusal,
    # ready again as soon as a write goes through
    assert client.get("/readyz").status_code == 503
    monkeypatch.undo()
    _a_write_goes_through_and_ready(client, seed=58, prefix="BACK2")


def test_a_store_damaged_under_the_service_is_503_and_the_worker_not_ready(client, monkeypatch):
    """A store file damaged while the service ran gave 500s with tracebacks while /readyz
    answered 200, so a balancer kept routing to it (probe): 503, one line, not ready."""
    import sqlite3

    from serving.service import _WORKER

    service = _WORKER.service

    def damaged(*args, **kwargs):
        exc = sqlite3.DatabaseError("database disk image is malformed")
        exc.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
        raise exc

    monkeypatch.setattr(service.store, "record", damaged)
    try:
        assert client.get("/readyz").status_code == 200
        r = client.post(
            "/score",
            json={"declarations": make_declarations(2, seed=54, prefix="BROKEN")},
            headers=auth(),
        )
        assert r.status_code == 503, r.text
        assert "is damaged (database disk image is malformed)" in r.json()["error"]
        assert client.get("/readyz").status_code == 503
    finally:
        service._damaged = None  # the module's service is shared by the other tests


def test_a_store_file_deleted_under_the_service_is_503_until_restarted(client, monkeypatch):
    """Probe 21: after `rm audit.db` the service answered 200 and /readyz 200 while every
    decision went into the unlinked file, lost at the restart. 503, one line, not ready."""
    from serving.service import _WORKER

    service = _WORKER.service
    monkeypatch.setattr(service.store, "_identity", (0, 0))  # as if the path names another file
    try:
        r = client.post(
            "/score",
            json={"declarations": make_declarations(2, seed=55, prefix="GONE")},
            headers=auth(),
        )
        assert r.status_code == 503, r.text
        assert "was replaced by another file under the running service" in r.json()["error"]
        assert "restart the service" in r.json()["error"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "replaced" in ready.json()["reason"]
        monkeypatch.undo()  # back in place: still not ready, its connections hold the orphan
        assert client.get("/readyz").status_code == 503
    finally:
        service._damaged = None  # the module's service is shared by the other tests


def test_an_idle_worker_whose_store_file_went_is_not_ready_before_any_write(client, monkeypatch):
    """Probe 21 (left then): a store deleted while no traffic came kept /readyz at 200 until
    the first request got its 503, so a balancer sent that request there. Readiness looks
    whether the file is still the one opened, one stat at most once a second."""
    import math

    from serving.service import _WORKER

    service = _WORKER.service
    looked = []
    check = service.store.check_in_place
    monkeypatch.setattr(service.store, "check_in_place", lambda: looked.append(1) or check())
    monkeypatch.setattr(service, "_in_place_checked_at", -math.inf)
    try:
        assert client.get("/readyz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert len(looked) == 1  # the second probe within the second: no stat
        monkeypatch.setattr(service.store, "_identity", (0, 0))  # the path names another file
        monkeypatch.setattr(service, "_in_place_checked_at", -math.inf)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "was replaced by another file under the running service" in ready.json()["reason"]
        assert service.store.count() >= 0 and len(looked) == 2  # no request was needed
    finally:
        service._damaged = None  # the module's service is shared by the other tests


def test_a_write_waiting_on_the_stores_lock_past_the_timeout_is_not_ready(client, monkeypatch):
    """Another process held the store's write lock: every /score was a 504 while /readyz
    answered 200 to all 24 probes (probe). Not ready while a write has waited longer than a
    quarter of the request timeout, ready again once it is through."""
    import threading

    from serving.service import _WORKER

    service = _WORKER.service
    release, waiting = threading.Event(), threading.Event()
    record = service.store.record

    def behind_a_lock(*args, **kwargs):
        waiting.set()
        release.wait(30)
        return record(*args, **kwargs)

    monkeypatch.setattr(service.store, "record", behind_a_lock)
    body = {"declarations": make_declarations(1, seed=57, prefix="LOCKED")}
    answered: list[int] = []
    sender = threading.Thread(
        target=lambda: answered.append(client.post("/score", json=body, headers=auth()).status_code)
    )
    sender.start()
    try:
        assert waiting.wait(30)
        assert client.get("/readyz").status_code == 200  # a write that just began: ready
        (write,) = service._writes_since  # as if it had waited past the timeout
        service._writes_since[write] -= service.config.request_timeout_s / 4 + 1
        assert client.get("/readyz").status_code == 503
    finally:
        release.set()
        sender.join(30)
    assert client.get("/readyz").status_code == 200 and service._writes_since == {}


def test_the_service_s_stores_wait_a_quarter_of_the_request_timeout_for_a_lock(client) -> None:
    """The wait that makes another process's lock a 503 (test_store), as the service sets it."""
    from serving.service import _WORKER

    service = _WORKER.service
    quarter = round(service.config.request_timeout_s / 4 * 1000)
    for store in (service.store, service.outcome_store):
        (waits,) = store._conn.execute("PRAGMA busy_timeout").fetchone()
        assert waits == quarter
