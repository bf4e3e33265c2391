"""What a request body must be before the service parses it: JSON (415 otherwise), at most
``serve.max_body_bytes`` (413 beyond it), and no object giving a key twice (400)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from serving.audit.safe_text import page_safe
from serving.errors import error_response

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# The auditor pages' sign-in and sign-out are HTML forms (serving.auditor.pages), parsed there.
FORM_PATHS = frozenset({"/auditor/login", "/auditor/logout"})
FORM_MEDIA = "application/x-www-form-urlencoded"
# set in a request's scope once it was admitted by queued work ahead of its concurrency slot
# (serving.patches, 8.): the admission here then lets it pass
ADMITTED_SCOPE_KEY = "parcelrisk.admitted"


class BodyLimitMiddleware:
    """Read a POST/PUT/PATCH body up to ``max_body_bytes`` and hand it on; 413 beyond it, 415
    for a body declared as anything but JSON.

    Every endpoint takes JSON. BentoML would try any other declared type as a form: multipart
    without a boundary ended in its catch-all handler as a 500 with a logged traceback. A body
    without a Content-Type is read as JSON, as BentoML does.

    ``max_body_bytes`` may be a function: the limit is the loaded service's configuration,
    which exists only after the middleware stack is built.
    """

    def __init__(
        self, app: Callable[..., Awaitable[None]], max_body_bytes: int | Callable[[], int]
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        media = _media_type(scope)
        is_form = media == FORM_MEDIA and scope.get("path") in FORM_PATHS
        if media is not None and not _is_json(media) and not is_form:
            response = error_response(
                415,
                f"Content-Type {media!r} not accepted: send application/json",
                code="body.media_type",
            )
            await response(scope, receive, send)
            return
        if (encoding := _content_encoding(scope)) not in (None, "identity"):
            # not decoded by anything on the way: gzip bytes would be parsed as JSON text
            response = error_response(
                415,
                f"Content-Encoding {encoding!r} not accepted: send the body uncompressed",
                code="body.encoding",
            )
            await response(scope, receive, send)
            return
        limit = self.max_body_bytes() if callable(self.max_body_bytes) else self.max_body_bytes
        body = await _read_body(scope, receive, limit)
        if body is None:
            response = error_response(
                413,
                f"request body larger than {limit} bytes (serve.max_body_bytes)",
                code="body.too_large",
            )
            await response(scope, receive, send)
            return
        if not is_form and (key := duplicated_key(body)) is not None:
            response = error_response(
                400,
                f"the body gives the key {_shown_key(key)} twice in one object: JSON "
                "parsers differ on which of the two values counts, so send it once",
                code="body.duplicate_key",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replay_body(body, receive), send)


class _Duplicated(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicated(key)
            seen.add(key)
    return obj


def duplicated_key(body: bytes) -> str | None:
    """The first key an object of the JSON ``body`` gives twice; None when none does, or when
    the body is no JSON (the service's parser then says why, as for any other body).

    The service's parser keeps the last of the two values unsaid: `"declared_value": 9.5,
    "declared_value": 99999` was decided and stored at 99999, while a gateway or a signature
    check that keeps the first saw another declaration (probe 20). Keys are compared as
    decoded, so `"declared\\u005fvalue"` is the same key. The standard library's parser with
    a hook per object costs ~0.5 ms per 100 declarations, ~2% of scoring them."""
    if not body:
        return None
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _Duplicated as found:
        return found.key
    except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
        return None
    return None


def _shown_key(key: str) -> str:
    """The key as the answer names it: short, its invisible characters escaped."""
    return repr(page_safe(key[:40] + ("..." if len(key) > 40 else "")))


class QueueAdmissionMiddleware:
    """Weigh ``POST /score`` by its declared body size before reading or parsing it.

    ``admit(content_length)`` returns the 429 to send, or None after counting the request's
    estimated declarations as queued work; ``release()`` (in this request's context) stops
    counting them, whatever happens after: the endpoint releases them when it queues the
    request with its real size, this middleware when the request ends.

    Under overload, parsing and validating a refused request of 1,000 declarations costs a
    tenth of what scoring it does (~35 ms of ~300 ms here). Admitted one at a time against the
    declarations already queued, a burst of 30 such requests arriving together was all parsed
    (a second of a worker's time) before 23 of them were refused, and the admitted ones then
    waited past their timeout: 504s, useful throughput a quarter of the unloaded figure.
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        admit: Callable[[int | None], Any],
        release: Callable[[], None],
    ) -> None:
        self.app = app
        self.admit = admit
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and scope.get("path", "").rstrip("/") == "/score"
            # admitted already, ahead of its concurrency slot (serving.patches, 8.)
            and not scope.get(ADMITTED_SCOPE_KEY)
        ):
            await self.app(scope, receive, send)
            return
        if (response := self.admit(_content_length(scope))) is not None:
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.release()


def _content_length(scope: Scope) -> int | None:
    """The declared body size; None when absent or not a number (a chunked body)."""
    for k, v in scope["headers"]:
        if k.lower() == b"content-length":
            try:
                return max(0, int(v))
            except ValueError:
                return None
    return None


def _media_type(scope: Scope) -> str | None:
    """The declared media type (lower case, without parameters), None when none is declared."""
    for k, v in scope["headers"]:
        if k.lower() == b"content-type":
            media = v.decode("latin-1").split(";", 1)[0].strip().lower()
            return media or None
    return None


def _content_encoding(scope: Scope) -> str | None:
    """The declared Content-Encoding (lower case), None when none is declared."""
    for k, v in scope["headers"]:
        if k.lower() == b"content-encoding":
            return v.decode("latin-1").strip().lower() or None
    return None


def _is_json(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds ``limit`` (declared or streamed)."""
    for k, v in scope["headers"]:
        if k.lower() == b"content-length":
            try:
                if int(v) > limit:
                    return None
            except ValueError:
                return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first hands on ``body`` (read already) whole, then the rest."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
