"""Decisions recorded but never answered: noticed where the answer is lost, marked in the store.

A decision is recorded before it is answered (an auditor must find every decision a clearance
system acted on). When its answer does not go out, because the request timed out or was
cancelled first, the decision stays in the store (the log is append-only) and is marked
undelivered with the reason (``DecisionStore.mark_undelivered``); a retry of the same
declaration under the same model version gets that decision back (``/score`` is idempotent)
and the mark notes when it was redelivered. Auditors see both on ``GET /decision``.

Two places can find an answer lost, and both report here:
- the batcher: a request cancelled (timed out, client gone) while its batch was being scored;
  its batch goes on, since its neighbours are waiting for it (``serving.batching``);
- the request timeout: the handler had its decisions, but the timer fired before its answer
  started, and the client got a 504, or the client hung up before then
  (``serving.patches.RequestTimeoutMiddleware``, which cancels the handler: a batch being
  scored for it reports through the batcher).
Not noticed: a client that hangs up after its answer was handed to the HTTP server. Its
decision counts as delivered; its retry gets the same decision back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar

logger = logging.getLogger(__name__)

TIMED_OUT = "request timed out before its answer was sent (504)"
CANCELLED = "request cancelled while its batch was scored (timed out or client gone)"
CLIENT_GONE = "client disconnected before its answer was sent"

# The decision ids a request is about to be answered with; a list the request timeout makes
# per request and the handler fills (a context variable: the handler runs in a task of its own
# that copies the context, so both hold the same list).
_ANSWERING: ContextVar[list[str] | None] = ContextVar("parcelrisk_answering", default=None)
_on_lost: list[Callable[[list[str], str], None]] = []


def track_request() -> list[str]:
    """In the request timeout, before the handler starts: the list its decision ids go into."""
    answering: list[str] = []
    _ANSWERING.set(answering)
    return answering


def answering(decision_ids: Sequence[str]) -> None:
    """In a handler: these decisions are about to be sent as this request's answer."""
    pending = _ANSWERING.get()
    if pending is not None:
        pending.extend(decision_ids)


def on_lost(callback: Callable[[list[str], str], None]) -> None:
    """Who marks lost answers in this process (the service, once its store is open)."""
    _on_lost[:] = [callback]


def lost(decision_ids: Sequence[str], reason: str) -> None:
    """These recorded decisions were not answered: hand them to the service to mark."""
    ids = list(decision_ids)
    if not ids:
        return
    if not _on_lost:  # no service (a test of the batcher alone): say so, lose nothing silently
        logger.warning("%d decisions not answered (%s) and not marked: no store", len(ids), reason)
        return
    _on_lost[0](ids, reason)
