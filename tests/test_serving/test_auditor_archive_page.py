"""The auditor's decisions page reads the archived days too, and says so when one is gone
(instead of a 500)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

from serving.audit.archive import archive_before
from serving.sqlite_store import SqliteDecisionStore
from tests.test_serving.conftest import auth, make_declarations
from tests.test_serving.test_auditor_pages import _sign_in


def test_archived_decisions_are_listed_and_a_lost_day_is_said(client, service_env) -> None:
    declarations = make_declarations(4, seed=91, prefix="ARCH")
    r = client.post("/score", json={"declarations": declarations}, headers=auth())
    assert r.status_code == 200, r.text
    ids = [d["decision_id"] for d in r.json()["decisions"]]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00.000000Z")
    store = SqliteDecisionStore(service_env / "audit.db")
    try:
        summary = archive_before(store, tomorrow, service_env / "archive")
        assert summary["archived"] >= 4 and store.count() == 0
    finally:
        store.close()
    assert _sign_in(client).status_code == 303
    page = client.get("/auditor/decisions")
    assert page.status_code == 200
    assert all(i in page.text for i in ids)
    shutil.rmtree(next((service_env / "archive").glob("day=*")))
    lost = client.get("/auditor/decisions")
    assert lost.status_code == 400 and "cannot be read" in lost.text  # the page, with it said
    assert not any(i in lost.text for i in ids)
