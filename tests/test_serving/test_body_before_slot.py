"""A concurrency slot for a request whose body has arrived (serving.patches, 8.): bodies that
never come hold no slot, what is buffered ahead of the slots is bounded, anonymous bodies are
never read ahead, and a body over the limit is refused as before."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bentoml._internal.server.http.traffic import MaxConcurrencyMiddleware

from serving.patches import (
    BODY_BEFORE_SLOT_WRITTEN_FOR,
    PENDING_BODIES,
    PENDING_BODY_BUDGET,
    body_before_slot,
)

LIMIT = 1_000


def _base() -> type:
    """BentoML's own class (the installed one subclasses it)."""
    cls = MaxConcurrencyMiddleware
    return cls.__mro__[1] if getattr(cls, "_parcelrisk_body_before_slot", False) else cls


async def _echo(scope, receive, send) -> None:
    """The app behind the slots (its body limit reads the whole body): 200 with the body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _scope(length: int | None = None, key: bool = True) -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {
        "type": "http",
        "method": "POST",
        "path": "/score",
        "headers": headers + ([(b"x-api-key", b"k")] if key else []),
    }


async def _request(middleware, scope, chunks: list[bytes], hang: bool = False) -> list[dict]:
    sent: list[dict] = []
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        if queue:
            chunk = queue.pop(0)
            more = bool(queue) or hang
            return {"type": "http.request", "body": chunk, "more_body": more}
        await asyncio.Event().wait()  # the rest of the body never comes
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


def _status(sent: list[dict]) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def _middleware(known=lambda scope: True, max_concurrency: int = 2):
    cls = body_before_slot(_base(), LIMIT, known)
    return cls(_echo, max_concurrency=max_concurrency)


def test_bodies_that_never_come_hold_no_slot() -> None:
    async def run() -> tuple[list[int], list[dict]]:
        middleware = _middleware(max_concurrency=2)
        slow = [
            asyncio.create_task(_request(middleware, _scope(100), [b"{"], hang=True))
            for _ in range(50)
        ]
        await asyncio.sleep(0.05)
        answer = await asyncio.wait_for(_request(middleware, _scope(2), [b"{}"]), 1.0)
        held = PENDING_BODIES.bytes
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        return [held, PENDING_BODIES.bytes], answer

    (held, after), answer = asyncio.run(run())
    assert _status(answer) == 200 and answer[-1]["body"] == b"{}"
    assert held == 50 and after == 0  # the slow bodies' bytes, given back when they end


def test_bentomls_own_class_let_them_take_every_slot() -> None:
    """What the patch fixes: the same requests through BentoML's class get the slots."""

    async def run() -> list[dict]:
        middleware = _base()(_echo, max_concurrency=2)
        slow = [
            asyncio.create_task(_request(middleware, _scope(100), [b"{"], hang=True))
            for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        answer = await _request(middleware, _scope(2), [b"{}"])
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        return answer

    assert _status(asyncio.run(run())) == 429


def test_what_is_buffered_ahead_of_the_slots_is_bounded() -> None:
    async def filled() -> tuple[int, dict]:
        middleware = _middleware()
        chunk = b"x" * (LIMIT // 2)
        slow = [
            asyncio.create_task(_request(middleware, _scope(LIMIT), [chunk], hang=True))
            for _ in range(2 * PENDING_BODY_BUDGET)
        ]
        await asyncio.sleep(0.05)
        answer = await _request(middleware, _scope(2), [b"{}"])
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        return _status(answer), answer

    status, answer = asyncio.run(filled())
    headers = dict(next(m for m in answer if m["type"] == "http.response.start")["headers"])
    assert status == 429 and headers[b"retry-after"]
    assert PENDING_BODIES.bytes == 0


def test_a_body_streamed_past_the_limit_is_refused_not_cut() -> None:
    sent = asyncio.run(_request(_middleware(), _scope(None), [b"x" * 600, b"x" * 600]))
    assert _status(sent) == 413
    assert "serve.max_body_bytes" in json.loads(sent[-1]["body"])["error"]


def test_an_anonymous_body_is_never_read_ahead() -> None:
    async def run() -> int:
        middleware = _middleware(known=lambda scope: False, max_concurrency=1)
        slow = asyncio.create_task(_request(middleware, _scope(100, key=False), [b"{"], hang=True))
        await asyncio.sleep(0.05)
        held = PENDING_BODIES.bytes
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        return held

    assert asyncio.run(run()) == 0


def test_the_service_builds_the_patched_class() -> None:
    import bentoml
    from bentoml._internal.server.http import traffic

    import serving.service  # noqa: F401  (installs the patch)

    assert getattr(traffic.MaxConcurrencyMiddleware, "_parcelrisk_body_before_slot", False)
    assert bentoml.__version__ == BODY_BEFORE_SLOT_WRITTEN_FOR, (
        "BentoML changed: check that MaxConcurrencyMiddleware still takes its slot the same "
        "way, then update BODY_BEFORE_SLOT_WRITTEN_FOR"
    )


def test_an_overloaded_worker_refuses_by_work_before_reading_the_body() -> None:
    """Admission by queued work (the service's admit/release) is asked before the body is read:
    a refused request's body is never read; an admitted one is released when it ends, and the
    admission middleware inside does not count it twice."""
    from serving.errors import error_response
    from serving.limits import ADMITTED_SCOPE_KEY

    calls: list[str] = []
    busy = {"full": True}

    def admit(declared: int | None):
        calls.append(f"admit {declared}")
        return error_response(429, "queue full") if busy["full"] else None

    def release() -> None:
        calls.append("release")

    seen: list[dict] = []

    async def app(scope, receive, send) -> None:
        seen.append(dict(scope))
        await _echo(scope, receive, send)

    cls = body_before_slot(_base(), LIMIT, lambda scope: True, admit, release)
    middleware = cls(app, max_concurrency=2)
    reads: list[int] = []

    async def run() -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            reads.append(1)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await middleware(_scope(2), receive, send)
        return sent

    assert _status(asyncio.run(run())) == 429 and reads == [] and calls == ["admit 2"]
    busy["full"] = False
    calls.clear()
    assert _status(asyncio.run(run())) == 200
    assert calls == ["admit 2", "release"] and seen[-1][ADMITTED_SCOPE_KEY] is True
