"""Merge concurrent requests into one scoring batch, and run small batches on the event loop.

Concurrent requests are scored together: while one batch runs, requests that arrive queue up
and are then scored as one batch (one feature computation, one predict call, one store
transaction), which is what keeps single-declaration latency flat under load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def run_inline_if_small(
    fn: Callable[[list[Any]], Any], items: list[Any], inline_rows: int
) -> Any:
    """``fn(items)`` on the event loop if at most ``inline_rows`` items, else in a thread.

    Scoring is Python holding the GIL, so a worker thread buys the event loop little but costs
    every batch a thread hop and GIL hand-offs between the two threads: on the 2-core
    benchmark, 16 single-declaration clients went from p99 23-24 to 19-20 ms (1,370 to 1,425
    req/s) with small batches inline. A small batch blocks the loop for a few milliseconds;
    big ones go to the thread so probes and timeouts keep answering within the GIL's switch
    interval. Only CPU work belongs here: anything that may wait (locks, disk) must not block
    the loop (see ``ParcelRiskService._score_and_record``).
    """
    if len(items) <= inline_rows:
        return fn(items)
    return await asyncio.to_thread(fn, items)


# Batches at least this big teach the batcher its scoring rate (``MicroBatcher.rows_per_s``).
RATE_MIN_ROWS = 32
# The rate assumed until a big batch has been timed: below what one worker scores on a slow
# 2-core machine (~1,500 declarations/s), so a cold worker hit by a burst queues a few seconds
# of work, not minutes of it.
COLD_ROWS_PER_S = 1000.0


class Reservation:
    """Declarations admitted but not yet queued (their body is being read and parsed), counted
    as queued work until ``release``: a burst of requests arriving together is weighed as a
    whole before any of them is parsed, not admitted one by one into an overfull queue."""

    __slots__ = ("_batcher", "body_bytes", "rows")

    def __init__(self, batcher: MicroBatcher, rows: int, body_bytes: int | None) -> None:
        self._batcher: MicroBatcher | None = batcher
        self.rows = rows
        self.body_bytes = body_bytes

    def release(self) -> None:
        """No longer counted (queued with its real size, refused, or finished); idempotent."""
        if self._batcher is not None:
            self._batcher._reserved_rows -= self.rows
            self._batcher = None


class MicroBatcher:
    """Merge concurrently waiting requests into one call of the coroutine function ``fn``.

    An idle batcher scores the first request at once; requests arriving meanwhile form the next
    batch (up to ``max_rows``). If a merged batch fails, its requests are retried one by one so
    one bad request cannot fail its neighbours. A request cancelled while it waits (timed out,
    client gone) is dropped before its batch starts: it leaves no decision. One cancelled while
    its batch is scored leaves decisions nobody received: they are reported to ``lost``
    (``serving.delivery``: marked undelivered; a retry returns them).

    Under load, clients answered by one batch send their next request a millisecond or so
    later. Started at once, the next batch would catch only some of them and the rest would
    wait a whole batch more: the batches split into alternating halves, each paying the
    per-batch cost (feature and model set-up, ~5 ms) for half the requests. So after a batch
    the batcher lingers, up to ``linger_s``, until the clients it just answered plus those
    already waiting have sent their requests. An idle batcher still scores the first request
    at once; the price is paid by traffic whose clients do not come back (independent arrivals
    overlapping a batch), which may wait up to ``linger_s`` longer. In benchmarks/serving.py,
    4 ms instead of 2 gave no better closed-loop p99 (16 clients: 22.6-26.3 vs 22.8-23.0 ms)
    and a worse open-loop one (150 arrivals/s: 20-21.5 vs 11-14 ms); hence a small default.
    """

    def __init__(
        self,
        fn: Callable[[list[Any]], Awaitable[list[Any]]],
        max_rows: int,
        linger_s: float = 0.0,
        lost: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.fn = fn
        self.lost = lost
        self.max_rows = max_rows
        self.linger_s = linger_s
        self._pending: list[tuple[list[Any], asyncio.Future[list[Any]]]] = []
        self._in_flight_rows = 0  # rows of the batch being scored now
        self._reserved_rows = 0  # rows admitted, not yet queued (``reserve``)
        self.rows_per_s: float | None = None  # what this worker scores, learnt from its batches
        self._running = False
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_rows(self) -> int:
        """Declarations waiting or being scored: the work ahead of a new request."""
        return (
            self._in_flight_rows
            + self._reserved_rows
            + sum(len(items) for items, _ in self._pending)
        )

    def expected_wait_s(self, rows: int) -> float:
        """How long ``rows`` more declarations would wait for their answer, at the scoring rate
        of the recent big batches (``COLD_ROWS_PER_S`` until one has been timed)."""
        return (self.queued_rows + rows) / (self.rows_per_s or COLD_ROWS_PER_S)

    def reserve(self, rows: int, body_bytes: int | None = None) -> Reservation:
        """Count ``rows`` as queued work until the returned reservation is released."""
        self._reserved_rows += rows
        return Reservation(self, rows, body_bytes)

    async def submit(self, items: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((items, future))
        if self._arrived is not None:
            self._arrived.set()
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())  # keep a reference: tasks are weak
        return await future

    async def _linger(self, expected: int) -> None:
        """Wait until ``expected`` requests (or a full batch) are pending, at most ``linger_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger_s
        self._arrived = asyncio.Event()
        try:
            while (
                len(self._pending) < expected
                and sum(len(items) for items, _ in self._pending) < self.max_rows
                and (left := deadline - loop.time()) > 0
            ):
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
        finally:
            self._arrived = None

    async def _drain(self) -> None:
        try:
            answered = 0  # requests of the batch just scored: their clients may be back soon
            while True:
                if self.linger_s > 0 and answered:
                    await self._linger(answered + len(self._pending))
                if not self._pending:
                    return
                group, rows = [], 0
                while self._pending and (
                    not group or rows + len(self._pending[0][0]) <= self.max_rows
                ):
                    items, future = self._pending.pop(0)
                    if future.cancelled():
                        # its client was answered 504 (or went away) while it waited: scoring
                        # it would record decisions nobody receives, and spend the capacity
                        # the requests still waiting need
                        continue
                    group.append((items, future))
                    rows += len(items)
                answered = len(group)
                if group:
                    await self._run(group)
        finally:
            self._running = False

    async def _run(self, group: list[tuple[list[Any], asyncio.Future[list[Any]]]]) -> None:
        merged = [item for items, _ in group for item in items]
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._in_flight_rows = len(merged)
        try:
            results = await self.fn(merged)
        except asyncio.CancelledError:  # the batch itself was cancelled: so are its requests
            for _, future in group:
                future.cancel()
            raise
        except Exception as exc:
            if len(group) == 1:
                if not group[0][1].done():
                    group[0][1].set_exception(exc)
                return
            for single in group:
                await self._run([single])
            return
        finally:
            # whatever ended the batch (an error, the loop shutting down): it is not queued work
            self._in_flight_rows = 0
        elapsed = loop.time() - started
        if elapsed > 0 and len(merged) >= RATE_MIN_ROWS:
            # a moving average over the recent big batches (a batch of a few rows is mostly
            # fixed cost and would make a queue of thousands look slower than it is), but never
            # above the latest one: when load arrives the worker slows at once (other requests
            # parsed on its loop, the other worker on the cores), and an average that lagged
            # behind admitted more than the timeout left room for (504s after scoring)
            rate = len(merged) / elapsed
            self.rows_per_s = (
                rate if self.rows_per_s is None else min(rate, 0.8 * self.rows_per_s + 0.2 * rate)
            )
        start, unanswered = 0, []
        for items, future in group:
            answer = results[start : start + len(items)]
            if not future.done():
                future.set_result(answer)
            elif future.cancelled():  # its client stopped waiting while the batch ran
                unanswered += answer
            start += len(items)
        if unanswered and self.lost is not None:
            self.lost(unanswered)
