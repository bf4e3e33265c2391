"""``/readyz`` that says why: BentoML's own probe answers a bare 503 while a worker is not ready.

And the one not-ready cause that comes and goes under load, a decision store refusing writes,
told to the log by its changes rather than once per refused request (``StoreOutage``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from serving.audit.safe_text import scrub_uris
from serving.errors import not_ready_response, ready_response

logger = logging.getLogger(__name__)

# a store's error can quote a whole statement: the reason and the log get its start
_CAUSE_CHARS = 300


class ReadinessMiddleware:
    """Answer ``/readyz`` with 503 and ``not_ready()``'s reason while it returns one, and when
    ready with 200 and what ``serving()`` says this worker decides with (its model): behind a
    balancer, a promotion reaches each replica within ``serve.champion_check_s``, and an
    operator waiting for all of them had no way to tell which model answered ready."""

    def __init__(
        self,
        app: Callable[..., Any],
        not_ready: Callable[[], str | None],
        serving: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self.app = app
        self.not_ready = not_ready
        self.serving = serving

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "/").rstrip("/") == "/readyz":
            reason = self.not_ready()
            if reason is not None:
                await not_ready_response(reason)(scope, receive, send)
                return
            if self.serving is not None and (model := self.serving()) is not None:
                await ready_response(model)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class StoreOutage:
    """A decision store refusing this worker's batches (server down, disk full, locked), for
    ``/readyz`` and the log: one WARNING when it begins, at most one every ``log_every_s``
    while it lasts (with the requests refused since), one INFO when a write goes through.

    A 10 s PostgreSQL outage refused ~2,000 requests and logged nothing, while ``/readyz``
    said only "not ready" (probe 15). Times are ``time.monotonic()`` seconds, given by the
    caller; no I/O here, so the probe and the scoring path may ask at any rate.
    """

    def __init__(self, location: str, *, pause_s: float, log_every_s: float = 30.0) -> None:
        self.store = scrub_uris(location)  # as shown: never a password
        self.pause_s = pause_s  # how long each refusal keeps the worker not ready
        self.log_every_s = log_every_s
        self.cause: str | None = None  # None: no outage (the last write went through)
        self._began = self._logged = 0.0
        self._refused = 0  # requests refused since the last line
        self._total = 0  # ... since the outage began

    def refused(self, said: str, now: float) -> None:
        """The store refused a request's batch with ``said`` (its ``StoreUnavailable``)."""
        self.cause = store_cause(said)
        self._total += 1
        if self._total == 1:
            self._began = self._logged = now
            logger.warning(
                "NOT READY: decision store %s cannot take writes: %s; /score answers 503 and "
                "this worker is not ready for %g s after each refusal, then tries again",
                self.store,
                self.cause,
                self.pause_s,
            )
            return
        self._refused += 1
        if now - self._logged >= self.log_every_s:
            logger.warning(
                "NOT READY: decision store %s still cannot take writes after %.0f s: %s; "
                "%d requests refused since the last line",
                self.store,
                now - self._began,
                self.cause,
                self._refused,
            )
            self._logged, self._refused = now, 0

    def recorded(self, now: float) -> None:
        """A batch was written: the outage, if there was one, is over."""
        if self.cause is None:  # the scoring path's usual case: one attribute read
            return
        logger.info(
            "decision store %s takes writes again after %.0f s; ready (%d requests refused)",
            self.store,
            now - self._began,
            self._total,
        )
        self.cause, self._refused, self._total = None, 0, 0

    def reason(self, paused_s: float) -> str:
        """``/readyz``'s reason ``paused_s`` seconds after the last refusal."""
        retry_in = max(1, math.ceil(self.pause_s - paused_s))
        return (
            f"decision store {self.store} cannot take writes: {self.cause or 'refused a batch'}; "
            f"not ready for another {retry_in} s, then trying again"
        )


def store_cause(said: str) -> str:
    """The cause in a ``StoreUnavailable``'s text ("decision store X cannot take this now:
    CAUSE; nothing of it was stored"), without credentials, cut to ``_CAUSE_CHARS``.

    Double quotes become single ones: ``team.sh status`` reads the reason out of the JSON up
    to its first quote, and PostgreSQL quotes the host (``connection to server at "db"``).
    """
    cause = scrub_uris(said).removesuffix("; nothing of it was stored")
    if cause.startswith("decision store "):  # named once, by the caller
        _, colon, rest = cause.partition(": ")
        cause = rest if colon else cause
    cause = cause.replace('"', "'")
    return cause if len(cause) <= _CAUSE_CHARS else cause[:_CAUSE_CHARS] + "..."
