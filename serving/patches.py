"""Every change this service makes to BentoML's (and CPython's) behaviour behind its back.

Each patch names the BentoML version it was written and measured against
(``*_WRITTEN_FOR``); the serving tests compare it with the installed version, so an upgrade
fails loudly until someone has checked that the patch still applies and still helps.

1. A request timeout that cleans up after itself, installed in place of BentoML's.

BentoML 1.4's ``TimeoutMiddleware`` schedules ``loop.call_later(traffic.timeout, ...)`` for every
request and never cancels it. Each timer keeps the request's future and a copy of its context
variables (trace spans included) alive for the whole timeout. At 60 s and ~2,000 requests a
second a worker holds over 100k such objects; CPython's full garbage collection then walks
them every second or so and freezes the event loop for 100-700 ms. That, not the scoring,
was the p99 of single-declaration requests: even BentoML's no-op ``/livez`` had p99 ~200 ms
under 16 clients, and 55 ms stalls remained after the leak from the import-time objects
alone (see ``freeze_after_load``).

``RequestTimeoutMiddleware`` keeps BentoML's behaviour (504 if no response has started within
``traffic.timeout``) and cancels its timer the moment the response starts or the request ends.
A 504 sent after the handler had its decisions reports them lost (``serving.delivery``), as
does a client hanging up before its answer started (the handler is cancelled then). While
the app waits on the client for the rest of the body, the answer is 408 instead: the client
stalled (or declared more than it sent), nothing was scored.
``install_request_timeout()`` swaps it in where BentoML's app factory looks the class up; the
serving tests check that the swap is in effect, so a BentoML upgrade that moves it fails loudly.

2. ``freeze_after_load()``: the garbage collector stops walking what start-up loaded.

3. Refused requests logged in one line, without their values.

BentoML 1.4 logs every request its pydantic validation refuses (a 400) at ERROR with the full
traceback, whose last line quotes the offending value (``input_value='...'``): consignee ids and
other personal data land in the logs, ~2.4 KB per bad request. ``install_log_redaction()``
rewrites those records into one INFO line with the request id, path, status and, per error, the
field and the error kind, never the value. The request id is the client's ``X-Request-ID`` when it
is a plain token, else a new one, and every answer carries it back (``RequestTimeoutMiddleware``):
BentoML has an id only with tracing on, so every line said "-". The same middleware answers the
router's plain-text 404 and 405 in the API's JSON error shape.

The same requests are answered in the API's error shape (``serving.schemas.ErrorResponse``):
BentoML answers ``{"error": "1 validation error for Input", "detail": [...]}`` whose items
link to a third-party site (pydantic's ``url``), and a refused ``BentoMLException`` as a JSON
*array*. ``install_refusal_answers()`` (called by ``install_log_redaction()``) answers
``{"error": "declarations.0.quantity: Input should be a valid integer (+1 more)", "field":
..., "detail": [{"type", "loc", "msg"}]}`` instead.

4. The docs page without a third-party tag manager.

BentoML's index page (``/``, Swagger UI over ``/docs.json``) loads Google Tag Manager from
googletagmanager.com: a call out of a customs network that cannot, and should not, make it.
``LocalDocsPageMiddleware`` serves the same page with the tag manager blocks removed (the
Swagger UI itself is served locally from ``/static_content``).

5. Shutdown hooks only on a service that exists.

BentoML 1.4's ``ServiceAppFactory.destroy_instance`` looks every ``@bentoml.on_shutdown`` hook
up on the service instance without checking there is one: when the app is shut down again
after its instance was destroyed (an ASGI app reused across lifespans, as the tests do), the
lookup on ``None`` raises ``AttributeError`` out of the lifespan. ``install_guarded_shutdown()``
makes a shutdown without an instance a no-op.

6. A deadline for request headers (uvicorn, the HTTP server BentoML runs).

uvicorn 0.54 times out an idle keep-alive connection, but not one that is sending its headers:
any bytes cancel the idle timer, and the request timeout (1.) starts only once the headers are
complete. A probe held 1,500 connections open with half-sent headers for over a minute, each an
open file of the worker, up to its limit. ``install_header_deadline(seconds)`` closes a
connection whose request has not finished its headers within ``seconds`` of the connection or
of the request's first byte (nginx's ``client_header_timeout``, for a service run without a
proxy in front). Headers still not ended past ``MAX_HEADER_BYTES`` (64 KiB) are answered 431
and the connection closed: httptools buffered a 16 MB header whole and answered it 200
(nginx's ``large_client_header_buffers``).

7. The API's error shape for a request uvicorn cannot parse.

uvicorn answers malformed HTTP framing (a negative Content-Length, both Content-Length and
chunked, a bad chunk size) itself, before any middleware, with a text/plain "Invalid HTTP
request received.". ``install_json_400()`` makes that answer ``{"error": ...}`` JSON like
every other refusal (still 400, still closing the connection).

8. A concurrency slot for a request whose body has arrived, not for one still arriving.

BentoML 1.4's ``MaxConcurrencyMiddleware`` takes one of the worker's ``serve.max_concurrency``
slots as a request's headers are read, before its body. A probe's 1,100 requests whose body
never came, opened by one client in 0.1 s, held every slot until the request timeout: real
requests got 429 for 10 s. ``install_body_before_slot(max_body_bytes)`` makes the app factory
build ``BodyBeforeSlotMiddleware`` in its place: a POST/PUT/PATCH body is read first (a body
that never comes costs a connection and waits for the request timeout, 504, holding nothing),
then the slot is taken as before. What it buffers this way is bounded per worker by
``PENDING_BODY_BUDGET`` bodies of ``serve.max_body_bytes`` (80 MB by default; 429 with
Retry-After beyond it): a client must send real bytes to fill it, not hold a connection open.
A body over ``serve.max_body_bytes`` is not buffered: 413 as before.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from serving.delivery import CLIENT_GONE, TIMED_OUT, lost, track_request
from serving.errors import error_response, validation_response
from serving.limits import ADMITTED_SCOPE_KEY, replay_body

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_WRITTEN_FOR = "1.4.40"  # bentoml._internal.server.http.traffic.TimeoutMiddleware
SHUTDOWN_GUARD_WRITTEN_FOR = "1.4.40"  # _bentoml_impl.server.app.ServiceAppFactory
DOCS_PAGE_WRITTEN_FOR = "1.4.40"  # _bentoml_impl/server/main-openapi.html
LOG_REDACTION_WRITTEN_FOR = "1.4.40"  # bentoml._internal.server.http_app.log_exception
REFUSAL_ANSWERS_WRITTEN_FOR = "1.4.40"  # _bentoml_impl.server.app.ServiceAppFactory.api_endpoint
REFUSAL_LOGGER = "bentoml._internal.server.http_app"  # where log_exception writes
# uvicorn.protocols.http.httptools_impl / h11_impl (install_header_deadline, install_json_400)
HEADER_DEADLINE_WRITTEN_FOR = "0.54.0"
# A request's headers beyond this many bytes: 431 and the connection closed (6.)
MAX_HEADER_BYTES = 64 * 1024
_HEADERS_TOO_LARGE_BODY = json.dumps(
    {"error": f"request headers larger than {MAX_HEADER_BYTES} bytes", "code": "headers.too_large"}
).encode()
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: "
    + str(len(_HEADERS_TOO_LARGE_BODY)).encode()
    + b"\r\n\r\n"
    + _HEADERS_TOO_LARGE_BODY
)
# bentoml._internal.server.http.traffic.MaxConcurrencyMiddleware (install_body_before_slot)
BODY_BEFORE_SLOT_WRITTEN_FOR = "1.4.40"
# bodies of serve.max_body_bytes a worker buffers before their requests take a slot (8.)
PENDING_BODY_BUDGET = 16

Scope = dict[str, Any]
Message = dict[str, Any]


class RequestTimeoutMiddleware:
    """504 when the app has not started its response within ``timeout`` seconds (408 when it
    is still waiting for the request's body then)."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def expire() -> None:
            if not started.done():
                started.set_exception(TimeoutError())

        timer = loop.call_later(self.timeout, expire)

        request_id = _incoming_request_id(scope)
        REQUEST_ID.set(request_id)  # for the log lines of this request (copied into the task)

        replaced: list[bytes] = []  # our JSON for a router's plain-text 404/405, BentoML's 429

        async def send_and_disarm(message: Message) -> None:
            if not started.done():
                timer.cancel()
                started.set_result(None)
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if message["status"] in (404, 405) and _is_plain_text(headers):
                    body = _no_route_body(message["status"], scope, headers)
                    replaced.append(body)
                    headers = [
                        *((k, v) for k, v in headers if k.lower() not in _BODY_HEADERS),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ]
                if message["status"] == 429 and not any(
                    k.lower() == b"retry-after" for k, _ in headers
                ):
                    # BentoML's own 429 past serve.max_concurrency carries none; every 429
                    # of the API says when to come back (the requests in flight end within
                    # the request timeout, most far sooner), and its code
                    replaced.append(_CONCURRENCY_BODY)
                    headers = [
                        *((k, v) for k, v in headers if k.lower() not in _BODY_HEADERS),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_CONCURRENCY_BODY)).encode()),
                        (b"retry-after", b"1"),
                    ]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif replaced and message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the plain text, in parts: only its end is answered
                message = {**message, "body": replaced[0]}
            await send(message)

        # whether the app is waiting on the client for the rest of the body: a client that
        # stalls while sending it is answered 408 (its fault, retry when it can send), not 504
        # (the service's). An app that has not asked for the body yet is the service's wait.
        # (After the last chunk, a receive waits for the client to disconnect: not the body.)
        awaiting_body, body_done = [False], [False]

        watcher: list[asyncio.Task[None]] = []

        async def watch_for_hang_up() -> None:
            # After the body, the server's next message is the client hanging up (or, once the
            # answer is complete, the end of the request): nothing else cancels a handler whose
            # client went away, and its answer would be counted delivered (probe)
            message = await receive()
            if message["type"] == "http.disconnect" and not started.done():
                started.set_exception(_ClientGone())

        async def receive_and_mark() -> Message:
            awaiting_body[0] = not body_done[0]
            try:
                message = await receive()
            finally:
                awaiting_body[0] = False
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done[0] = True
                if not watcher and scope["type"] == "http":
                    watcher.append(asyncio.ensure_future(watch_for_hang_up()))
            return message

        answering = track_request()  # the decisions the handler is about to answer with
        task = asyncio.ensure_future(self.app(scope, receive_and_mark, send_and_disarm))
        # An app that fails before answering must not wait out the timer: re-raise at once.
        task.add_done_callback(lambda _: started.done() or started.set_result(None))
        try:
            await started
        except asyncio.CancelledError:  # the server gave up on the request: so does the app
            task.cancel()
            raise
        except _ClientGone:  # no one to answer: a batch being scored marks its own (CANCELLED)
            if task.cancel():
                lost(answering, CLIENT_GONE)  # recorded, about to be answered, client gone
            return
        except TimeoutError:
            if task.cancel():
                if awaiting_body[0]:
                    response = error_response(
                        408,
                        f"request body not received within {self.timeout:g} seconds (it "
                        "declared more than it sent, or the client stalled)",
                        headers={"X-Request-ID": request_id, "Connection": "close"},
                    )
                    await response(scope, receive, send)
                    return  # nothing was scored: no decision to report lost
                response = error_response(
                    504,
                    f"request not answered within {self.timeout:g} seconds",
                    headers={"X-Request-ID": request_id},
                )
                await response(scope, receive, send)
                # recorded, about to be answered, and the 504 went out instead
                lost(answering, TIMED_OUT)
            return
        finally:
            timer.cancel()
            if watcher:
                watcher[0].cancel()
        await task


class _ClientGone(Exception):
    """The client hung up before its answer started."""


_BODY_HEADERS = frozenset({b"content-type", b"content-length"})
_CONCURRENCY_BODY = json.dumps(
    {"error": "too many requests in flight (serve.max_concurrency)", "code": "busy.concurrency"}
).encode()


def _is_plain_text(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(b"text/plain") for k, v in headers)


def _no_route_body(status: int, scope: Scope, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The API's error shape for Starlette's plain-text "Not Found" / "Method Not Allowed"."""
    method, path = scope.get("method", "?"), scope.get("path", "?")
    if status == 405:
        allow = next((v.decode("latin-1") for k, v in headers if k.lower() == b"allow"), "")
        message = f"{method} not allowed on {path}" + (f"; use {allow}" if allow else "")
        return json.dumps({"error": message, "code": "route.method"}).encode()
    return json.dumps({"error": f"no such path: {path}", "code": "route.not_found"}).encode()


def install_request_timeout() -> bool:
    """Make BentoML's app factory build ``RequestTimeoutMiddleware``; False if it cannot."""
    try:
        from bentoml._internal.server.http import traffic
    except ImportError:  # a BentoML without the module: nothing to replace
        logger.warning("BentoML's TimeoutMiddleware not found; request timeouts left as they are")
        return False
    traffic.TimeoutMiddleware = RequestTimeoutMiddleware  # type: ignore[misc,assignment]
    return True


def install_header_deadline(seconds: float | None) -> bool:
    """Make uvicorn's HTTP protocols close a connection whose request headers are not complete
    within ``seconds`` (see 6. above), or, with None, restore them; False if uvicorn's
    protocols are not found."""
    try:
        from uvicorn.protocols.http import h11_impl, httptools_impl
    except ImportError:  # a server without uvicorn's protocols: nothing to patch
        logger.warning("uvicorn's HTTP protocols not found; no deadline for request headers")
        return False
    for protocol in (httptools_impl.HttpToolsProtocol, h11_impl.H11Protocol):
        if seconds is not None:
            _add_header_deadline(protocol, seconds)
        elif (original := getattr(protocol, "_parcelrisk_originals", None)) is not None:
            for name, method in original.items():
                setattr(protocol, name, method)
    return True


class _ClosedConnections:
    """Closed-for-slow-headers counts, logged at most once a minute: a slow-header attack
    opens thousands of connections, and one line each would flood the log."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        self.count = 0
        self.logged_at: float | None = None

    def note(self, seconds: float, now: float) -> None:
        self.count += 1
        if self.logged_at is None or now - self.logged_at >= self.EVERY_S:
            logger.info(
                "closed %d connection(s) whose request headers took over %g s%s",
                self.count,
                seconds,
                "" if self.logged_at is None else f" in the last {now - self.logged_at:.0f} s",
            )
            self.count, self.logged_at = 0, now


_HEADER_CLOSES = _ClosedConnections()


def install_json_400() -> bool:
    """uvicorn's own 400 for a request it cannot parse, in the API's JSON error shape (7.)."""
    try:
        from uvicorn.protocols.http import httptools_impl
    except ImportError:
        logger.warning("uvicorn's httptools protocol not found; its own 400 stays text/plain")
        return False

    def send_400_response(self: Any, msg: str) -> None:
        body = json.dumps({"error": f"malformed HTTP request: {msg}", "code": "http.malformed"})
        body = body.encode()
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    # h11's 400 goes through its own state machine and stays text: the service runs httptools
    # (uvicorn's choice whenever it is installed, as the project's dependencies make it)
    httptools_impl.HttpToolsProtocol.send_400_response = send_400_response  # type: ignore[method-assign]
    return True


def _add_header_deadline(protocol: type, seconds: float) -> None:
    """Wrap ``protocol``'s connection_made (deadline armed), data_received (armed at a
    request's first bytes, disarmed once its headers are read: the protocol then has a
    request cycle running) and connection_lost. The originals are kept on the class, so
    installing twice wraps them once."""
    original = getattr(protocol, "_parcelrisk_originals", None)
    if original is None:
        names = ["connection_made", "data_received", "connection_lost"]
        names += [n for n in ("on_message_begin", "on_headers_complete") if hasattr(protocol, n)]
        original = {name: getattr(protocol, name) for name in names}
        protocol._parcelrisk_originals = original  # type: ignore[attr-defined]

    def arm(self: Any) -> None:
        if getattr(self, "_header_deadline", None) is None:
            self._header_deadline = self.loop.call_later(seconds, expire, self)

    def disarm(self: Any) -> None:
        handle = getattr(self, "_header_deadline", None)
        if handle is not None:
            handle.cancel()
            self._header_deadline = None

    def expire(self: Any) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
            _HEADER_CLOSES.note(seconds, self.loop.time())

    def idle(self: Any) -> bool:
        """No request being read or answered: the next bytes start one."""
        cycle = getattr(self, "cycle", None)
        return cycle is None or cycle.response_complete

    def connection_made(self: Any, transport: Any) -> None:
        original["connection_made"](self, transport)
        arm(self)

    def data_received(self: Any, data: bytes) -> None:
        if idle(self):
            arm(self)  # the first bytes of a request: its headers have until the deadline
        original["data_received"](self, data)
        if not idle(self):  # the headers were complete in this chunk (h11 has no callback)
            disarm(self)
        elif getattr(self, "_in_headers", False):
            # bytes of a request whose headers have begun and not ended (httptools only, by
            # its callbacks: a body still arriving after an early answer, a 429, is not this)
            self._header_bytes = getattr(self, "_header_bytes", 0) + len(data)
            if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                disarm(self)
                self.transport.write(_HEADERS_TOO_LARGE)
                self.transport.close()

    def connection_lost(self: Any, exc: Exception | None) -> None:
        disarm(self)
        original["connection_lost"](self, exc)

    protocol.connection_made = connection_made  # type: ignore[attr-defined]
    protocol.data_received = data_received  # type: ignore[attr-defined]
    protocol.connection_lost = connection_lost  # type: ignore[attr-defined]
    if "on_message_begin" in original:  # httptools: where a request's headers begin and end

        def on_message_begin(self: Any) -> None:
            self._in_headers, self._header_bytes = True, 0
            original["on_message_begin"](self)

        def on_headers_complete(self: Any) -> None:
            self._in_headers = False
            original["on_headers_complete"](self)

        protocol.on_message_begin = on_message_begin  # type: ignore[attr-defined]
        protocol.on_headers_complete = on_headers_complete  # type: ignore[attr-defined]


def freeze_after_load() -> None:
    """Move everything alive now (imports, the loaded model) out of the collector's sight.

    A worker carries ~10^5-10^6 long-lived objects from pandas, MLflow, LightGBM and the entity
    snapshot. Every full collection walks all of them (about 0.5 us each here), which is a
    stall of tens of milliseconds on every request in flight. They never become garbage, so
    ``gc.freeze()`` after start-up removes that cost (CPython's documented use of it).
    """
    gc.collect()
    gc.freeze()


def install_guarded_shutdown() -> bool:
    """Skip BentoML's shutdown hooks when there is no service instance; False if it cannot."""
    try:
        from _bentoml_impl.server.app import ServiceAppFactory
    except ImportError:  # a BentoML without the factory: nothing to guard
        logger.warning("BentoML's ServiceAppFactory not found; shutdown hooks left unguarded")
        return False
    original = ServiceAppFactory.destroy_instance
    if getattr(original, "__parcelrisk_guarded__", False):
        return True

    async def destroy_instance(self: Any, app: Any) -> None:
        if getattr(self, "_service_instance", None) is None:
            return  # destroyed already (or never built): no hook has anything to close
        await original(self, app)

    destroy_instance.__parcelrisk_guarded__ = True  # type: ignore[attr-defined]
    ServiceAppFactory.destroy_instance = destroy_instance  # type: ignore[method-assign]
    return True


class RefusedRequestFilter(logging.Filter):
    """One line, no values, for a request BentoML's validation refused (see item 3 above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, ValidationError):
            return True  # a real failure keeps its traceback
        args = record.args if isinstance(record.args, tuple) and len(record.args) >= 2 else None
        path, method = args[:2] if args else ("?", "?")  # log_exception's (path, method)
        errors = exc.errors(include_input=False, include_context=False, include_url=False)
        where = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '(body)'}: {e['type']}"
            for e in errors[:10]
        )
        more = f" (+{len(errors) - 10} more)" if len(errors) > 10 else ""
        record.msg = "request %s refused: %s %s 400, %d validation error(s): %s%s"
        record.args = (_request_id(), method, path, len(errors), where, more)
        record.levelno, record.levelname = logging.INFO, "INFO"  # the client's error, not ours
        record.exc_info, record.exc_text = None, None
        return True


def _request_id() -> str:
    """The id of the request being handled (``RequestTimeoutMiddleware`` sets it), or "-"."""
    return REQUEST_ID.get()


# The id of the request being handled: the client's X-Request-ID when it is a plain token (so a
# clearance system can find its own request in our logs), else a new random one; sent back as
# X-Request-ID on every answer. BentoML's own id exists only with tracing on.
REQUEST_ID: ContextVar[str] = ContextVar("parcelrisk_request_id", default="-")
REQUEST_ID_FORM = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID_FORM.fullmatch(text):
                return text
            break  # not a plain token (it would go into log lines as it is): a new one
    return os.urandom(8).hex()


def install_log_redaction() -> None:
    """Put ``RefusedRequestFilter`` on the logger BentoML reports refused requests to, and
    answer those requests in the API's error shape (``install_refusal_answers``)."""
    target = logging.getLogger(REFUSAL_LOGGER)
    if not any(isinstance(f, RefusedRequestFilter) for f in target.filters):
        target.addFilter(RefusedRequestFilter())
    install_refusal_answers()


def validation_error_response(exc: Any) -> Any:
    """400 for a body pydantic refused (``serving.errors.validation_response``)."""
    return validation_response(
        exc.errors(include_url=False, include_context=False, include_input=False)
    )


def install_refusal_answers() -> bool:
    """Answer BentoML's refused requests as ``serving.errors`` does; False if it cannot."""
    try:
        from _bentoml_impl.server.app import ServiceAppFactory
        from bentoml._internal.server.http_app import log_exception
        from bentoml.exceptions import BentoMLException
    except ImportError:  # a BentoML without them: its own answers stay
        logger.warning("BentoML's ServiceAppFactory not found; validation answers left as they are")
        return False
    original = ServiceAppFactory.api_endpoint
    if getattr(original, "__parcelrisk_refusals__", False):
        return True

    async def api_endpoint(self: Any, name: str, request: Any) -> Any:
        from pydantic import ValidationError

        try:
            return await original(self, name, request)
        except ValidationError as exc:
            log_exception(request)  # one line without values: RefusedRequestFilter
            return validation_error_response(exc)
        except BentoMLException as exc:
            status = int(exc.error_code.value)
            if status >= 500:
                raise  # BentoML's own answer and traceback: a failure, not a refusal
            logger.info(
                "request refused: %s %s %d: %s", request.method, request.url.path, status, exc
            )
            return error_response(status, str(exc))

    api_endpoint.__parcelrisk_refusals__ = True  # type: ignore[attr-defined]
    ServiceAppFactory.api_endpoint = api_endpoint  # type: ignore[method-assign]
    return True


_TAG_MANAGER = re.compile(
    r"<!-- Google Tag Manager.*?-->.*?<!-- End Google Tag Manager.*?-->", re.DOTALL
)
_FALLBACK_DOCS = (
    "<!DOCTYPE html><html><head><title>parcelrisk</title></head><body>"
    '<p>The OpenAPI document of this service: <a href="./docs.json">docs.json</a></p>'
    "</body></html>"
)


@functools.cache
def local_docs_page() -> str:
    """BentoML's Swagger UI page without the tag manager; a plain link to the OpenAPI
    document if the page changed so that something external is still referenced."""
    try:
        import _bentoml_impl.server as bentoml_server

        html = (Path(bentoml_server.__file__).parent / "main-openapi.html").read_text()
    except (ImportError, OSError):  # pragma: no cover - another BentoML
        return _FALLBACK_DOCS
    html = _TAG_MANAGER.sub("", html)
    if "googletagmanager" in html or re.search(r"<script[^>]+src=[\"']https?:", html):
        return _FALLBACK_DOCS
    return html


class LocalDocsPageMiddleware:
    """``GET /``: the docs page with no call to any other site (see item 4 above)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET" and scope.get("path") == "/":
            from starlette.responses import HTMLResponse

            await HTMLResponse(local_docs_page())(scope, receive, send)
            return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------------------------
# 8. A concurrency slot for a request whose body has arrived
# --------------------------------------------------------------------------------------------

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class PendingBodies:
    """The bytes of request bodies read but not yet handed on, against a budget."""

    def __init__(self) -> None:
        self.bytes = 0

    def take(self, n: int, budget: int) -> bool:
        if self.bytes + n > budget:
            return False
        self.bytes += n
        return True

    def give_back(self, n: int) -> None:
        self.bytes -= n


PENDING_BODIES = PendingBodies()


async def read_body_before_slot(
    scope: Scope, receive: Any, limit: int, budget: int, pending: PendingBodies = PENDING_BODIES
) -> bytes | str | None:
    """The whole body; ``"over-budget"`` when the worker's pending bodies would pass
    ``budget`` bytes; ``"disconnected"`` when the client left before its end; ``"too-large"``
    when it streams past ``limit``; None, with nothing read, when its declared length is over
    ``limit`` (the body limit inside answers that 413 as it does without this patch)."""
    declared = _declared_length(scope)
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return "disconnected"
            chunk = message.get("body", b"")
            if size + len(chunk) > limit:
                return "too-large"
            if not pending.take(len(chunk), budget):
                return "over-budget"
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    finally:
        pending.give_back(size)


def _declared_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


def install_body_before_slot(
    max_body_bytes: Any, known_caller: Any, admit: Any = None, release: Any = None
) -> bool:
    """Make BentoML's app factory build ``BodyBeforeSlotMiddleware`` (see 8. above) in place
    of its ``MaxConcurrencyMiddleware``; ``max_body_bytes``: the limit, or a function giving
    it (the loaded service's settings); ``known_caller(scope)``: whether the request presents
    a known key (``serving.auth.KeyCheck``): only those bodies are read ahead, as an anonymous
    request is refused before its body is read; ``admit(declared_length)`` and ``release()``:
    the service's admission of ``POST /score`` by queued work (``serving.limits
    .QueueAdmissionMiddleware``), asked here before the body is read, so an overloaded
    worker still refuses a request without reading it. False if BentoML's class is not found."""
    try:
        from bentoml._internal.server.http import traffic
    except ImportError:  # a BentoML without the module: nothing to replace
        logger.warning("BentoML's MaxConcurrencyMiddleware not found; slots taken as they are")
        return False
    base = traffic.MaxConcurrencyMiddleware
    if getattr(base, "_parcelrisk_body_before_slot", False):
        base = base.__mro__[1]  # installed already: the settings change, the class is rebuilt
    traffic.MaxConcurrencyMiddleware = body_before_slot(  # type: ignore[misc]
        base, max_body_bytes, known_caller, admit, release
    )
    return True


def body_before_slot(
    base: type, max_body_bytes: Any, known_caller: Any, admit: Any = None, release: Any = None
) -> type:
    """BentoML's ``MaxConcurrencyMiddleware`` (``base``) taking its slot once a request's body
    has arrived (8. above); ``admit``/``release``: see ``install_body_before_slot``."""

    class BodyBeforeSlotMiddleware(base):  # type: ignore[misc,valid-type]
        """BentoML's concurrency slots, taken once a request's body has arrived."""

        _parcelrisk_body_before_slot = True

        async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
            if (
                scope["type"] != "http"
                or scope.get("method") not in _BODY_METHODS
                or scope["path"] in self.skip_paths
                or not known_caller(scope)
            ):
                await super().__call__(scope, receive, send)
                return
            admitted = admit is not None and scope["path"].rstrip("/") == "/score"
            if admitted:
                if (busy := admit(_declared_length(scope))) is not None:
                    await busy(scope, receive, send)  # refused by work: its body is not read
                    return
                scope[ADMITTED_SCOPE_KEY] = True  # the admission middleware inside skips it
            try:
                await self._read_then_slot(scope, receive, send)
            finally:
                if admitted:
                    release()

        async def _read_then_slot(self, scope: Scope, receive: Any, send: Any) -> None:
            limit = max_body_bytes() if callable(max_body_bytes) else max_body_bytes
            body = await read_body_before_slot(scope, receive, limit, PENDING_BODY_BUDGET * limit)
            if body == "disconnected":
                return  # nobody to answer
            if isinstance(body, str):
                response = (
                    error_response(
                        429,
                        "too many request bodies arriving at once: retry shortly",
                        code="busy.bodies",
                    )
                    if body == "over-budget"
                    else error_response(
                        413, f"request body larger than {limit} bytes (serve.max_body_bytes)"
                    )
                )
                await response(scope, receive, send)
                return
            if body is None:  # declared over the limit: the body limit's own 413, nothing read
                await super().__call__(scope, receive, send)
                return
            await super().__call__(scope, replay_body(body, receive), send)

    return BodyBeforeSlotMiddleware
