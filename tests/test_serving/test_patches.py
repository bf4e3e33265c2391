"""The patches of BentoML: the request timeout that replaces BentoML's (which leaked a timer per
request), each pinned to the BentoML version it was written for."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from serving.patches import (
    DOCS_PAGE_WRITTEN_FOR,
    LOG_REDACTION_WRITTEN_FOR,
    REQUEST_TIMEOUT_WRITTEN_FOR,
    SHUTDOWN_GUARD_WRITTEN_FOR,
    RequestTimeoutMiddleware,
    install_guarded_shutdown,
)


def _live_timers(loop: asyncio.AbstractEventLoop) -> int:
    # BaseEventLoop keeps its timers in ``_scheduled``: the leak was there, so look there
    return sum(not h.cancelled() for h in loop._scheduled)  # type: ignore[attr-defined]


async def _call(middleware: RequestTimeoutMiddleware) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware({"type": "http", "path": "/x", "headers": []}, receive, send)
    return sent


def _slow_app(cancelled: list[bool]):
    """An app that never answers in time and notes its cancellation."""

    async def slow(scope, receive, send) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    return slow


def _middleware_chain(client) -> dict[type, Any]:
    """The layers of the service's built ASGI app, by type, outermost first."""
    layer, chain = client.app, {}
    for _ in range(100):
        chain.setdefault(type(layer), layer)
        layer = getattr(layer, "middleware_stack", None) or getattr(layer, "app", None)
        if layer is None:
            break
    return chain


async def _ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_answered_requests_leave_no_timer_behind() -> None:
    async def run() -> tuple[int, int]:
        middleware = RequestTimeoutMiddleware(_ok, timeout=60)
        for _ in range(200):
            sent = await _call(middleware)
            assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"
        return _live_timers(asyncio.get_running_loop()), 200

    live, calls = asyncio.run(run())
    assert live == 0, f"{live} timers still armed after {calls} answered requests"


def test_a_request_not_answered_in_time_gets_504_and_is_cancelled() -> None:
    cancelled: list[bool] = []
    slow = _slow_app(cancelled)

    sent = asyncio.run(_call(RequestTimeoutMiddleware(slow, timeout=0.05)))
    assert sent[0]["status"] == 504
    assert b"0.05 seconds" in sent[1]["body"]
    assert cancelled == [True]


def test_an_app_failing_before_answering_fails_at_once_not_at_the_timeout() -> None:
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("boom")

    async def run() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await _call(RequestTimeoutMiddleware(broken, timeout=30))
        except RuntimeError as exc:
            assert str(exc) == "boom"
        else:
            raise AssertionError("the app's error was swallowed")
        assert _live_timers(loop) == 0
        return loop.time() - started

    assert asyncio.run(run()) < 5


def test_lifespan_and_other_scopes_pass_through() -> None:
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    async def run() -> None:
        await RequestTimeoutMiddleware(app, timeout=1)({"type": "lifespan"}, None, None)

    asyncio.run(run())
    assert seen == ["lifespan"]


def test_the_service_uses_it_instead_of_bentomls(client) -> None:
    from bentoml._internal.server.http import traffic

    assert traffic.TimeoutMiddleware is RequestTimeoutMiddleware
    chain = _middleware_chain(client)
    assert RequestTimeoutMiddleware in chain, [t.__name__ for t in chain]
    assert client.get("/livez").status_code == 200


def test_the_service_sheds_load_and_times_out_as_configured(client) -> None:
    from bentoml._internal.server.http.traffic import MaxConcurrencyMiddleware

    from serving.service import SETTINGS

    seen = _middleware_chain(client)
    assert seen[RequestTimeoutMiddleware].timeout == 10  # serve.request_timeout_s default
    limiter = seen[MaxConcurrencyMiddleware]
    # serve.max_concurrency is for the whole service: BentoML gives each worker its share
    serve = SETTINGS.serve
    assert (serve.max_concurrency, serve.workers) == (512, 2)
    assert limiter._semaphore._value == 512 // 2
    assert "/livez" in limiter.skip_paths  # probes are never shed


def test_a_429_past_max_concurrency_says_when_to_retry(client) -> None:
    """BentoML's limiter answers a bare 429; behind the request timeout it gets Retry-After
    as every other 429 of the API."""
    from bentoml._internal.server.http.traffic import MaxConcurrencyMiddleware

    limiter = _middleware_chain(client)[MaxConcurrencyMiddleware]
    taken = limiter._semaphore._value
    limiter._semaphore._value = 0  # every slot held by requests in flight
    try:
        r = client.get("/auditor/")
    finally:
        limiter._semaphore._value = taken
    assert r.status_code == 429 and r.headers["Retry-After"] == "1", r.headers
    assert r.json()["error"]
    assert client.get("/livez").status_code == 200


def test_cancelling_the_request_cancels_the_app() -> None:
    cancelled: list[bool] = []
    slow = _slow_app(cancelled)

    async def run() -> None:
        outer = asyncio.ensure_future(_call(RequestTimeoutMiddleware(slow, timeout=30)))
        await asyncio.sleep(0.01)
        outer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await outer
        await asyncio.sleep(0)  # let the app see its cancellation
        assert _live_timers(asyncio.get_running_loop()) == 0

    asyncio.run(run())
    assert cancelled == [True]


def test_a_shutdown_without_a_service_instance_is_a_no_op() -> None:
    from _bentoml_impl.server.app import ServiceAppFactory

    assert install_guarded_shutdown() and install_guarded_shutdown()  # idempotent
    factory = ServiceAppFactory.__new__(ServiceAppFactory)
    factory._service_instance = None
    asyncio.run(factory.destroy_instance(None))  # BentoML's own raises AttributeError here


def test_shutting_the_service_down_closes_its_stores(service_env) -> None:
    import sqlite3

    from serving.service import _WORKER
    from tests.test_serving.conftest import checked_client, service_app

    with checked_client(service_app()) as client:
        assert client.get("/livez").status_code == 200
        service = _WORKER.service
        assert service is not None and service.store.count() >= 0
    with pytest.raises(sqlite3.ProgrammingError):  # closed by the on_shutdown hook
        service.store.count()
    with pytest.raises(sqlite3.ProgrammingError):
        service.outcome_store.count()


# Each patch names the BentoML version it was checked against: an upgrade fails here until
# someone has checked the patch still applies and still helps.
PATCH_PINS = {
    "install_request_timeout": (
        REQUEST_TIMEOUT_WRITTEN_FOR,
        "does TimeoutMiddleware still leak its timer? is it still looked up in traffic?",
    ),
    "install_guarded_shutdown": (
        SHUTDOWN_GUARD_WRITTEN_FOR,
        "does ServiceAppFactory.destroy_instance still look hooks up on a None instance?",
    ),
    "install_log_redaction": (
        LOG_REDACTION_WRITTEN_FOR,
        "does log_exception still log refused requests with their pydantic traceback, on "
        "serving.patches.REFUSAL_LOGGER?",
    ),
    "LocalDocsPageMiddleware": (
        DOCS_PAGE_WRITTEN_FOR,
        "which page does '/' serve now, and does it still load a tag manager?",
    ),
}


@pytest.mark.parametrize("patch", sorted(PATCH_PINS))
def test_each_patch_was_written_for_the_installed_bentoml(patch: str) -> None:
    import bentoml

    written_for, question = PATCH_PINS[patch]
    assert bentoml.__version__ == written_for, (
        f"serving.patches.{patch} was written for BentoML {written_for}; check it against "
        f"{bentoml.__version__} ({question})"
    )


@pytest.fixture
def uvicorn_server(request):
    """A real uvicorn server (the protocol given as the test's param) with the header deadline
    at 0.5 s, on a free port, in a thread: (host, port)."""
    import socket
    import threading
    import time

    import uvicorn

    from serving.patches import install_header_deadline

    assert install_header_deadline(0.5)

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=request.param, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=5)
    install_header_deadline(None)  # uvicorn as it was, for the tests after this one


def test_the_header_deadline_was_written_for_the_installed_uvicorn() -> None:
    import uvicorn

    from serving.patches import HEADER_DEADLINE_WRITTEN_FOR

    assert uvicorn.__version__ == HEADER_DEADLINE_WRITTEN_FOR, (
        f"serving.patches.install_header_deadline was written for uvicorn "
        f"{HEADER_DEADLINE_WRITTEN_FOR}; check it against {uvicorn.__version__} (does a "
        "connection sending its headers still escape every timeout? are connection_made, "
        "data_received, connection_lost and cycle.response_complete still there? does "
        "httptools' send_400_response still answer unparsable requests (install_json_400)?)"
    )


def _closed_within(sock, seconds: float) -> bool:
    """Whether the server closed ``sock`` within ``seconds`` (reads until EOF)."""
    import time

    sock.settimeout(0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


@pytest.mark.parametrize("uvicorn_server", ["httptools", "h11"], indirect=True)
def test_a_request_whose_headers_never_end_is_closed(uvicorn_server) -> None:
    """Slow headers (slowloris) held a worker's connections open without end; the request
    timeout starts only once headers are complete."""
    import socket
    import time

    host, port = uvicorn_server
    request = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"
    with (
        socket.create_connection((host, port)) as silent,
        socket.create_connection((host, port)) as trickle,
        socket.create_connection((host, port)) as good,
    ):
        trickle.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n")  # never the blank line
        good.sendall(request)
        good.settimeout(2)
        assert good.recv(4096).startswith(b"HTTP/1.1 200")
        assert _closed_within(silent, 3) and _closed_within(trickle, 3)
        # an answered keep-alive connection: its next request's headers get the deadline too
        good.sendall(b"GET /x HTTP/1.1\r\n")
        assert _closed_within(good, 3)
    with socket.create_connection((host, port)) as slow_but_whole:
        # a request whose headers end in time is answered, however long its answer takes
        slow_but_whole.sendall(request[:10])
        time.sleep(0.2)
        slow_but_whole.sendall(request[10:])
        slow_but_whole.settimeout(2)
        assert slow_but_whole.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("uvicorn_server", ["httptools"], indirect=True)
@pytest.mark.parametrize(
    "framing",
    [
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ],
)
def test_http_uvicorn_cannot_parse_gets_the_apis_json_error(uvicorn_server, framing) -> None:
    import json
    import socket

    from serving.patches import install_json_400

    assert install_json_400()
    with socket.create_connection(uvicorn_server) as sock:
        sock.sendall(framing)
        sock.settimeout(3)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head
    assert json.loads(body)["error"].startswith("malformed HTTP request: ")


@pytest.mark.parametrize("uvicorn_server", ["httptools"], indirect=True)
def test_headers_past_the_limit_are_refused_and_the_connection_closed(uvicorn_server) -> None:
    """httptools (what the service runs) read a 16 MB header whole and answered 200: headers
    are held in memory until they end, so a few such connections could take a worker's
    memory. (h11 has its own limit, 16 KiB by default.)"""
    import socket

    from serving.patches import MAX_HEADER_BYTES, install_header_deadline

    host, port = uvicorn_server
    install_header_deadline(30)  # the size closes it, not the deadline
    with socket.create_connection((host, port)) as huge:
        huge.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Pad: ")
        sent = 0
        try:
            while sent < 4 * MAX_HEADER_BYTES:
                huge.sendall(b"a" * 8192)
                sent += 8192
        except OSError:  # closed by the server while sending: what is wanted
            pass
        huge.settimeout(3)
        try:
            answer = huge.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
        assert answer or _closed_within(huge, 3)
    with socket.create_connection((host, port)) as large_but_allowed:
        pad = b"a" * (MAX_HEADER_BYTES // 2)
        large_but_allowed.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Pad: " + pad + b"\r\n\r\n")
        large_but_allowed.settimeout(3)
        assert large_but_allowed.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("uvicorn_server", ["httptools"], indirect=True)
def test_a_body_still_arriving_after_an_early_answer_is_no_header(uvicorn_server) -> None:
    """An overloaded worker answers 429 before reading the body: the body's bytes that keep
    coming are the request's body, not the next request's headers (a load run saw 431s)."""
    import socket

    from serving.patches import MAX_HEADER_BYTES

    host, port = uvicorn_server
    body = b"x" * (4 * MAX_HEADER_BYTES)
    with socket.create_connection((host, port)) as sock:
        head = f"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        sock.sendall(head + body[:1000])
        sock.settimeout(3)
        first = sock.recv(4096)  # the app answers without reading the body
        sock.sendall(body[1000:])
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")  # the next request, same connection
        answers = first
        while answers.count(b"HTTP/1.1") < 2:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answers += chunk
    assert first.startswith(b"HTTP/1.1 200") and b"431" not in answers
