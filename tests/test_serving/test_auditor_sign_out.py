"""Signing out of the auditor pages ends the session on every worker and replica: a copy of
the cookie is refused after it, on both stores; a store that cannot say or record it is a 503."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from serving.auditor.session import COOKIE_NAME
from serving.sqlite_store import StoreUnavailable
from tests.test_serving.conftest import AUDITOR_KEY, stub_service_client


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def location(request, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return str(tmp_path_factory.mktemp("sign-out") / "audit.db")
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stub_runtime, location) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("sign-out-svc")
    with stub_service_client(tmp, stub_runtime, "serve:\n  champion_check_s: 0\n", location) as c:
        yield c


@pytest.fixture(scope="module")
def other_worker(client, location) -> Iterator[Any]:
    """The auditor pages of another worker process (or replica): their own routes and store
    handles on the same store, nothing shared with ``client`` but the configuration."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from serving.auditor.pages import auditor_routes
    from serving.store import is_sqlite, open_store

    store = open_store(location)
    review = open_store(location, read_only=True) if is_sqlite(location) else store
    worker = SimpleNamespace(store=store, review_store=review, runtime=None)
    try:
        with TestClient(Starlette(routes=auditor_routes(lambda: worker))) as c:
            yield c
    finally:
        if review is not store:
            review.close()
        store.close()


def _session(client) -> str:
    """A new session's cookie (a sign-in of its own)."""
    client.cookies.clear()
    r = client.post("/auditor/login", data={"key": AUDITOR_KEY}, follow_redirects=False)
    assert r.status_code == 303, r.text
    token = client.cookies[COOKIE_NAME]
    client.cookies.clear()
    return token


def _page(client, token: str) -> Any:
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, token, path="/auditor")
    try:
        return client.get("/auditor/decisions")
    finally:
        client.cookies.clear()


def _sign_out(client, token: str | None, **headers: str) -> Any:
    client.cookies.clear()
    if token is not None:
        client.cookies.set(COOKIE_NAME, token, path="/auditor")
    try:
        return client.post("/auditor/logout", headers=headers, follow_redirects=False)
    finally:
        client.cookies.clear()


def _service() -> Any:
    from serving.service import _WORKER

    return _WORKER.service


def test_a_copied_cookie_is_refused_on_every_worker_after_sign_out(client, other_worker) -> None:
    copied, other = _session(client), _session(client)
    for worker in (client, other_worker):
        assert _page(worker, copied).status_code == 200
    # a sign-out posted from another site ends nothing; a GET is no sign-out at all
    assert _sign_out(client, copied, origin="https://evil.example").status_code == 403
    assert client.get("/auditor/logout").status_code == 405
    assert _page(other_worker, copied).status_code == 200

    out = _sign_out(client, copied)
    assert out.status_code == 303 and out.headers["location"] == "/auditor/login"
    assert "Max-Age=0" in out.headers["set-cookie"]
    # the store keeps a digest of the session, neither the token nor its nonce
    store, signed = _service().review_store, copied.rsplit(".", 1)[0]
    assert store.session_revoked(hashlib.sha256(signed.encode()).hexdigest())
    assert not store.session_revoked(copied) and not store.session_revoked(signed.split(".")[3])
    for worker in (client, other_worker):
        refused = _page(worker, copied)
        assert refused.status_code == 401 and "was signed out" in refused.text
        assert "Max-Age=0" in refused.headers["set-cookie"]  # the copy is cleared too
        assert _page(worker, other).status_code == 200  # the auditor's other session holds

    # signing out again, or with a cookie that is no session, clears it as it always did
    for token in (copied, copied[:-3] + "AAA", None):
        again = _sign_out(other_worker, token)
        assert again.status_code == 303 and "Max-Age=0" in again.headers["set-cookie"]


def test_a_page_whose_session_cannot_be_checked_is_a_503(client, monkeypatch) -> None:
    token = _session(client)

    def unreadable(session_id: str) -> bool:
        raise StoreUnavailable("decision store audit.db cannot be read now: disk I/O error")

    monkeypatch.setattr(_service().review_store, "session_revoked", unreadable, raising=False)
    r = _page(client, token)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "cannot be checked" in r.text and "Traceback" not in r.text
    assert "set-cookie" not in r.headers  # the session may be valid: kept for the retry
    monkeypatch.undo()
    assert _page(client, token).status_code == 200


def test_a_sign_out_the_store_cannot_take_says_so_and_keeps_the_session(
    client, other_worker, monkeypatch
) -> None:
    token = _session(client)

    def full(session_id: str, expires_at: int) -> None:
        raise StoreUnavailable("decision store audit.db cannot take a write now: disk full")

    monkeypatch.setattr(_service().store, "revoke_session", full, raising=False)
    r = _sign_out(client, token)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "sign-out could not be recorded" in r.text and "still valid" in r.text
    assert "set-cookie" not in r.headers  # kept, to sign out again
    assert _page(other_worker, token).status_code == 200  # as the page said: not ended
    monkeypatch.undo()
    assert _sign_out(client, token).status_code == 303
    assert _page(other_worker, token).status_code == 401
