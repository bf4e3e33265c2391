"""Admission by work: a request that would wait too long behind the queue is refused at once
(429 with Retry-After), weighed by its declarations, and leaves no decision."""

from __future__ import annotations

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
        assert "would wait" in r.json()["error"] and "40" in r.json()["error"]
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
        assert "a new request would wait" in r.json()["error"]
        assert client.get("/readyz").status_code == 200  # probes are never shed
    finally:
        batcher._in_flight_rows = 0


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
