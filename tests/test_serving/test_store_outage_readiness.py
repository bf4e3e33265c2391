"""A decision store that refuses writes is told to the operator: ``/readyz`` names the store and
the cause, the log has one WARNING when the worker turns not ready and one INFO when the store
takes writes again (probe 15, 02: a 10 s PostgreSQL outage refused ~2,000 requests, logged
nothing, and ``/readyz`` said only "not ready")."""

from __future__ import annotations

import logging
import time

import pytest

from serving.readiness import StoreOutage
from serving.sqlite_store import StoreUnavailable
from tests.test_serving.conftest import auth, make_declarations

DISK_FULL = (
    "decision store audit.db cannot take a write now: database or disk is full (SQLITE_FULL); "
    "nothing of it was stored"
)
PG_DOWN = (
    "decision store postgresql://risk:S3cret@db:5432/decisions cannot take this now: "
    'connection failed: connection to server at "db" (10.0.0.5), port 5432 failed: '
    "Connection refused; nothing of it was stored"
)


@pytest.fixture
def service(client):
    """The module's service, its store taking writes again after the test."""
    from serving.service import _WORKER

    service = _WORKER.service
    assert service is not None
    yield service
    service._unavailable_at = None
    service._store_outage = StoreOutage(
        service._store_outage.store, pause_s=service._store_outage.pause_s
    )


@pytest.fixture
def disk_full(service, monkeypatch):
    """The store refuses every write as a full disk does."""

    def full(*args, **kwargs):
        raise StoreUnavailable(DISK_FULL)

    monkeypatch.setattr(service.store, "record", full)
    return monkeypatch


def _score(client, n: int, seed: int) -> int:
    body = {"declarations": make_declarations(1, seed=seed, prefix=f"OUT{n}-")}
    return client.post("/score", json=body, headers=auth()).status_code


def _shown_store(service) -> str:
    """The store as the service names it: the module's SQLite file."""
    return str(service.config.audit_db)


def _store_records(caplog, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == level
        and r.getMessage().startswith(("NOT READY: decision store", "decision store"))
    ]


def test_readyz_names_the_store_and_its_cause_while_it_refuses_writes(client, service, disk_full):
    assert _score(client, 1, seed=61) == 503
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    body = r.json()
    assert body["ready"] is False
    assert body["reason"] == (
        f"decision store {_shown_store(service)} cannot take writes: database or disk is "
        "full (SQLITE_FULL); not ready for another 10 s, then trying again"
    )


def test_several_refused_requests_log_one_warning(client, service, disk_full, caplog):
    caplog.set_level(logging.INFO)
    assert [_score(client, i, seed=62) for i in range(5)] == [503] * 5
    (warning,) = _store_records(caplog, logging.WARNING)
    line = warning.getMessage()
    assert _shown_store(service) in line and "database or disk is full" in line
    assert warning.name == "serving.readiness"


def test_the_store_taking_writes_again_is_logged_once_and_the_worker_is_ready(
    client, service, disk_full, caplog
):
    caplog.set_level(logging.INFO)
    assert [_score(client, i, seed=63) for i in range(3)] == [503] * 3
    assert client.get("/readyz").status_code == 503
    disk_full.undo()  # the disk has room again
    assert _score(client, 9, seed=64) == 200
    assert client.get("/readyz").status_code == 200
    (info,) = _store_records(caplog, logging.INFO)
    assert info.getMessage().startswith(
        f"decision store {_shown_store(service)} takes writes again after "
    )
    assert info.getMessage().endswith(" s; ready (3 requests refused)")
    assert _score(client, 10, seed=65) == 200  # an ordinary write: nothing more to say
    assert len(_store_records(caplog, logging.INFO)) == 1


def test_a_store_that_just_takes_writes_logs_nothing(client, service, caplog):
    caplog.set_level(logging.INFO)
    assert _score(client, 1, seed=66) == 200
    assert _store_records(caplog, logging.INFO) == []
    assert _store_records(caplog, logging.WARNING) == []


def test_a_long_outage_is_logged_every_30_s_with_the_refusals_since(caplog):
    caplog.set_level(logging.INFO)
    outage = StoreOutage("audit.db", pause_s=10)
    for now in (0.0, 1.0, 2.0, 3.0, 4.0):
        outage.refused(DISK_FULL, now)
    outage.refused(DISK_FULL, 31.0)
    outage.refused(DISK_FULL, 32.0)
    outage.recorded(40.0)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(lines) == 3
    assert lines[0][0] == logging.WARNING and "cannot take writes" in lines[0][1]
    assert lines[1] == (
        logging.WARNING,
        "NOT READY: decision store audit.db still cannot take writes after 31 s: database or "
        "disk is full (SQLITE_FULL); 5 requests refused since the last line",
    )
    assert lines[2] == (
        logging.INFO,
        "decision store audit.db takes writes again after 40 s; ready (7 requests refused)",
    )


def test_the_password_of_a_store_url_is_never_shown(caplog):
    caplog.set_level(logging.INFO)
    outage = StoreOutage("postgresql://risk:S3cret@db:5432/decisions", pause_s=10)
    outage.refused(PG_DOWN, 0.0)
    reason = outage.reason(paused_s=2.5)
    assert reason == (
        "decision store postgresql://db:5432/decisions cannot take writes: connection failed: "
        "connection to server at 'db' (10.0.0.5), port 5432 failed: Connection refused; "
        "not ready for another 8 s, then trying again"
    )
    outage.recorded(5.0)
    assert "S3cret" not in caplog.text and "risk" not in caplog.text
    assert "postgresql://db:5432/decisions" in caplog.text


def test_a_write_waiting_on_the_lock_is_the_reason(client, service):
    waiting = object()
    service._writes_since[waiting] = time.monotonic() - service.config.request_timeout_s
    try:
        r = client.get("/readyz")
    finally:
        del service._writes_since[waiting]
    assert r.status_code == 503
    assert r.json()["reason"].startswith(
        f"decision store {_shown_store(service)}: a write has waited "
    )
    assert client.get("/readyz").status_code == 200


def test_a_missing_champion_keeps_its_reason(client, service, monkeypatch):
    from serving.service import _WORKER

    service._unavailable_at = time.monotonic()  # the store refused too: the champion comes first
    monkeypatch.setattr(_WORKER, "not_ready", "champion model not loaded: no alias 'champion'")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"ready": False, "reason": "champion model not loaded: no alias 'champion'"}


def test_a_damaged_store_is_the_reason(client, service, monkeypatch):
    said = f"decision store {_shown_store(service)} is damaged (database disk image is malformed)"
    monkeypatch.setattr(service, "_damaged", said)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["reason"] == said


def test_results_the_store_refuses_are_told_as_decisions_are(client, service, monkeypatch, caplog):
    """An inspection system posting results into a store that refuses writes: the same one
    WARNING and /readyz reason as for decisions, and the INFO once results go through again."""
    import serving.service
    from tests.test_serving.conftest import INSPECTOR_KEY

    caplog.set_level(logging.INFO)
    (decided,) = client.post(
        "/score",
        json={"declarations": make_declarations(1, seed=71, prefix="RES-")},
        headers=auth(),
    ).json()["decisions"]
    result = {
        "declaration_id": decided["declaration_id"],
        "inspected_at": "2026-05-02T08:00:00Z",
        "illicit": False,
    }
    inspector = {"X-API-Key": INSPECTOR_KEY}
    stored = serving.service.store_outcomes

    def full(*args, **kwargs):
        raise StoreUnavailable(DISK_FULL)

    monkeypatch.setattr(serving.service, "store_outcomes", full)
    posted = [
        client.post("/outcomes", json={"outcomes": [result]}, headers=inspector) for _ in "ab"
    ]
    assert [r.status_code for r in posted] == [503, 503]
    (warning,) = _store_records(caplog, logging.WARNING)
    assert "database or disk is full" in warning.getMessage()
    assert "database or disk is full" in client.get("/readyz").json()["reason"]
    monkeypatch.setattr(serving.service, "store_outcomes", stored)
    ok = client.post("/outcomes", json={"outcomes": [result]}, headers=inspector)
    assert ok.status_code == 200, ok.text
    (info,) = _store_records(caplog, logging.INFO)
    assert info.getMessage().endswith(" s; ready (2 requests refused)")
    assert client.get("/readyz").status_code == 200
