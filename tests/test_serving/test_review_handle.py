"""People's lookups (auditor pages, /decision, /explain of an id) run on a read-only handle of
their own: a slow one held the scoring path's reader lock, and with it the event loop and the
health probes (the probe measured /livez p50 1.6 -> 790 ms beside two auditor tabs)."""

from __future__ import annotations

from tests.test_serving.conftest import auth, make_declarations


def test_the_review_handle_is_read_only_and_shares_no_lock_with_scoring(client) -> None:
    from serving.service import _WORKER

    service = _WORKER.service
    assert service.review_store is not service.store
    assert service.review_store.read_only
    assert service.review_store._read_lock is not service.store._read_lock
    declarations = make_declarations(2, seed=77, prefix="REV")
    r = client.post("/score", json={"declarations": declarations}, headers=auth())
    assert r.status_code == 200, r.text
    decision_id = r.json()["decisions"][0]["decision_id"]
    # committed by the writer, seen by the reader at its next read
    found = service.review_store.get(decision_id)
    assert found is not None and found[1]
    r = client.get("/decision", params={"decision_id": decision_id}, headers=auth("auditor"))
    assert r.status_code == 200 and r.json()["decision_id"] == decision_id
