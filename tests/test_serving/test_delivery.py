"""A decision recorded but never answered is kept, marked undelivered, and returned by a retry.

The promise (docs/RELIABILITY.md): a request that times out or is cancelled before its answer
is sent leaves either no decision (it never reached a batch) or one marked undelivered with
the reason, which a retry of the same declaration gets back (and the mark notes when).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from serving import delivery
from serving.batching import MicroBatcher
from serving.patches import RequestTimeoutMiddleware
from serving.sqlite_store import SqliteDecisionStore
from tests.test_serving.conftest import auth, make_declarations, wait_for
from tests.test_serving.test_patches import _call, _middleware_chain


@pytest.fixture
def lost_answers():
    """What ``serving.delivery.lost`` reports in this test, instead of the service's hook."""
    seen: list[tuple[list[str], str]] = []
    saved = list(delivery._on_lost)
    delivery.on_lost(lambda ids, reason: seen.append((ids, reason)))
    yield seen
    delivery._on_lost[:] = saved


# --- the store ----------------------------------------------------------------------------


def _one_record(client, declarations) -> str:
    r = client.post("/score", json={"declarations": declarations}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()["decisions"][0]["decision_id"]


def test_the_store_marks_returns_and_clears_undelivered_decisions(client, service_env):
    decision_id = _one_record(client, make_declarations(1, seed=61, prefix="MARK"))
    store = SqliteDecisionStore(service_env / "audit.db")
    try:
        assert store.delivery(decision_id) is None  # answered: nothing to say
        store.mark_undelivered([decision_id], "request timed out")
        marked = store.delivery(decision_id)
        assert marked["reason"] == "request timed out" and marked["redelivered_at"] is None
        assert marked["marked_at"].endswith("Z")
        assert store.get(decision_id)[1] is True  # the decision itself is untouched: intact
        assert store.mark_redelivered([decision_id, "no-such-decision"]) == 1
        assert store.delivery(decision_id)["redelivered_at"] is not None
        assert store.mark_redelivered([decision_id]) == 0  # noted once
        store.mark_undelivered([decision_id], "again")  # lost again: waiting again
        assert store.delivery(decision_id) == {
            "reason": "again",
            "marked_at": store.delivery(decision_id)["marked_at"],
            "redelivered_at": None,
        }
    finally:
        store.close()


# --- the two places an answer is lost ------------------------------------------------------


def test_a_request_cancelled_while_its_batch_runs_reports_its_answers_lost():
    lost: list[list[str]] = []

    async def slow_fn(items: list[str]) -> list[str]:
        await asyncio.sleep(0.05)
        return [f"decided-{item}" for item in items]

    async def run() -> list[str]:
        batcher = MicroBatcher(slow_fn, max_rows=100, lost=lost.append)
        gone = asyncio.ensure_future(batcher.submit(["a", "b"]))
        await asyncio.sleep(0)  # its batch starts
        kept = asyncio.ensure_future(batcher.submit(["c"]))  # the next batch
        await asyncio.sleep(0.01)
        gone.cancel()  # its client timed out while the batch ran
        return await kept

    assert asyncio.run(run()) == ["decided-c"]
    assert lost == [["decided-a", "decided-b"]]


def test_a_request_cancelled_while_it_waits_leaves_nothing_to_mark():
    lost: list[list[str]] = []
    scored: list[list[str]] = []

    async def fn(items: list[str]) -> list[str]:
        scored.append(items)
        await asyncio.sleep(0.05)
        return items

    async def run() -> None:
        batcher = MicroBatcher(fn, max_rows=100, lost=lost.append)
        first = asyncio.ensure_future(batcher.submit(["a"]))
        await asyncio.sleep(0)
        waiting = asyncio.ensure_future(batcher.submit(["b"]))
        await asyncio.sleep(0.01)
        waiting.cancel()  # still queued: never scored
        await first

    asyncio.run(run())
    assert scored == [["a"]] and lost == []


def test_a_504_after_the_handler_had_its_decisions_reports_them_lost(lost_answers):
    async def answered_too_late(scope, receive, send) -> None:
        delivery.answering(["dec-1", "dec-2"])
        await asyncio.sleep(5)  # e.g. a response too slow to start

    sent = asyncio.run(_call(RequestTimeoutMiddleware(answered_too_late, timeout=0.05)))
    assert sent[0]["status"] == 504
    assert lost_answers == [(["dec-1", "dec-2"], delivery.TIMED_OUT)]


def _hangs_up_after(seconds: float):
    """A client's receive: the whole body, then it hangs up after ``seconds``."""
    messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(seconds)
        return {"type": "http.disconnect"}

    return receive


async def _through(app, receive) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": []}
    await RequestTimeoutMiddleware(app, timeout=5)(scope, receive, send)
    return sent


def test_a_client_hanging_up_before_its_answer_cancels_it_and_reports_it_lost(lost_answers):
    """It was recorded as delivered: nothing cancelled the handler of a client gone (probe:
    1,000 decisions stored, none marked). Now the handler is cancelled and what it was about
    to answer with is marked; no answer is written to the closed connection."""
    cancelled: list[bool] = []

    async def answering_slowly(scope, receive, send) -> None:
        await receive()
        delivery.answering(["dec-1"])
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    start = time.monotonic()
    sent = asyncio.run(_through(answering_slowly, _hangs_up_after(0.05)))
    assert time.monotonic() - start < 2
    assert sent == [] and cancelled == [True]
    assert lost_answers == [(["dec-1"], delivery.CLIENT_GONE)]


def test_a_client_still_there_gets_its_answer_and_nothing_is_marked(lost_answers):
    async def app(scope, receive, send) -> None:
        await receive()
        delivery.answering(["dec-2"])
        await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent = asyncio.run(_through(app, _hangs_up_after(3600)))
    assert sent[0]["status"] == 200 and lost_answers == []
    # the end of the request (the server's disconnect once answered) changes nothing
    sent = asyncio.run(_through(app, _hangs_up_after(0.2)))
    assert sent[0]["status"] == 200 and lost_answers == []


def test_a_504_before_any_decision_reports_nothing(lost_answers):
    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(5)

    sent = asyncio.run(_call(RequestTimeoutMiddleware(slow, timeout=0.05)))
    assert sent[0]["status"] == 504 and lost_answers == []


# --- through the service ------------------------------------------------------------------


def test_a_timed_out_request_leaves_a_marked_decision_that_the_retry_returns(
    client, service_env: Path, monkeypatch
):
    import serving.service as service_module

    service = service_module._WORKER.service
    timeout = _middleware_chain(client)[RequestTimeoutMiddleware]
    score = service._score_declarations

    def slow_score(runtime, declarations):
        time.sleep(0.6)  # inline on the loop: the timer fires once the store write awaits
        return score(runtime, declarations)

    declarations = make_declarations(2, seed=62, prefix="LATE")
    store = SqliteDecisionStore(service_env / "audit.db")
    try:
        before = store.count()
        monkeypatch.setattr(timeout, "timeout", 0.3)
        monkeypatch.setattr(service, "_score_declarations", slow_score)
        r = client.post("/score", json={"declarations": declarations}, headers=auth())
        assert r.status_code == 504, r.text
        assert wait_for(lambda: store.count() == before + 2)  # recorded, not answered
        monkeypatch.undo()

        retry = client.post("/score", json={"declarations": declarations}, headers=auth())
        assert retry.status_code == 200, retry.text
        decisions = retry.json()["decisions"]
        assert store.count() == before + 2  # the retry got those two back, no new ones
        for decision in decisions:
            marked = store.delivery(decision["decision_id"])
            assert marked is not None and marked["reason"] == delivery.CANCELLED
            assert marked["redelivered_at"] is not None

        shown = client.get(
            "/decision",
            params={"decision_id": decisions[0]["decision_id"]},
            headers=auth("auditor"),
        )
        assert shown.status_code == 200
        assert shown.json()["delivery"]["reason"] == delivery.CANCELLED
    finally:
        store.close()


def test_an_answered_decision_shows_no_delivery_problem(client):
    decision_id = _one_record(client, make_declarations(1, seed=63, prefix="FINE"))
    shown = client.get("/decision", params={"decision_id": decision_id}, headers=auth("auditor"))
    assert shown.status_code == 200 and shown.json()["delivery"] is None


def test_unmerged_scoring_finishes_a_cancelled_request_and_marks_it(client, monkeypatch):
    """``merge_concurrent_requests: false``: the request's own batch is shielded from its
    cancellation, so what it records is marked, not left half-written or unmarked."""
    import serving.service as service_module

    service = service_module._WORKER.service
    marked: list[tuple[list[str], str]] = []

    async def slow_record(declarations):
        await asyncio.sleep(0.05)
        return [{"decision_id": f"dec-{d}"} for d in declarations]

    monkeypatch.setattr(service, "_score_and_record", slow_record)
    monkeypatch.setattr(service, "_mark_undelivered", lambda ids, why: marked.append((ids, why)))

    async def run() -> None:
        request = asyncio.ensure_future(service._score_alone(["a", "b"]))
        await asyncio.sleep(0.01)
        request.cancel()  # timed out while its batch was scored
        with pytest.raises(asyncio.CancelledError):
            await request
        await asyncio.sleep(0.1)  # the shielded batch finishes

    asyncio.run(run())
    assert marked == [(["dec-a", "dec-b"], delivery.CANCELLED)]
