"""The real server under load: SIGKILL mid-load, 10x overload, two minutes of sustained writes.

- ``run_kill``: rounds of closed-loop clients posting fresh declarations, a SIGKILL of
  ``parcelrisk serve`` mid-load, a restart; every decision answered 200 must be in the store,
  unchanged (same id, lane, risk) and intact (its link in the keyed chain, as the store checks it).
- ``run_overload``: ten times the load the server takes: 429 with Retry-After, probes answered,
  memory bounded, useful throughput kept, back to normal within seconds.
- ``run_sustained``: singles and small batches at the rate the server takes: the write-ahead log
  stays under ``serve.audit_wal_max_mb`` and the store grows in proportion to the decisions.

Each returns a JSON-able dict with ``"ok"``, its figures and ``"failures"``. The clients are
those of benchmarks/overload.py (closed loop, fresh ids, Retry-After obeyed); decisions stored
but never delivered (the answer lost with a killed or timed-out request) are a figure, not a
failure: a retry gets them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scripts.reliability.server import KEYS, Champion, RealServer, fresh_payloads

MAX_FAILURES = 20
MB = 2**20


# --- load --------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What closed-loop clients sent and got back."""

    statuses: Counter[int] = field(default_factory=Counter)
    sent: int = 0  # declarations sent
    # declaration_id -> (decision_id, lane, risk) of every decision answered 200
    acknowledged: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    no_retry_after: int = 0  # 429s without Retry-After
    elapsed_s: float = 0.0  # from the first request to the last answer

    def rate(self) -> float:
        """Declarations delivered per second."""
        return self.delivered / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def delivered(self) -> int:
        return len(self.acknowledged)

    def answers(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.statuses.items())}


class Load:
    """``clients`` closed-loop clients in a thread of their own, each posting requests of
    ``rows`` (cycled) fresh declarations (ids ``{prefix}{client}-{n}-{i}``) until ``stop``."""

    def __init__(
        self,
        url: str,
        template: list[dict],
        *,
        clients: int,
        rows: tuple[int, ...],
        prefix: str,
        timeout_s: float = 60,
    ) -> None:
        self.url, self.template, self.clients, self.rows = url, template, clients, rows
        self.prefix, self.timeout_s = prefix, timeout_s
        self.result = LoadResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{prefix}", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 10)
        return self.result

    def _run(self) -> None:
        started = time.monotonic()
        try:
            asyncio.run(self._clients())
        finally:
            self.result.elapsed_s = time.monotonic() - started

    async def _clients(self) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            await asyncio.gather(*(self._client(client, k) for k in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient, k: int) -> None:
        result, headers = self.result, {"X-API-Key": KEYS["scorer"]}
        sizes = itertools.cycle(self.rows[k % len(self.rows) :] + self.rows[: k % len(self.rows)])
        for n in itertools.count():
            if self._stop.is_set():
                return
            rows = next(sizes)
            body = [
                {
                    **self.template[(k * 7919 + n * rows + i) % len(self.template)],
                    "declaration_id": f"{self.prefix}{k}-{n}-{i}",
                }
                for i in range(rows)
            ]
            result.sent += rows
            started = time.monotonic()
            try:
                r = await client.post(
                    f"{self.url}/score", json={"declarations": body}, headers=headers
                )
            except httpx.HTTPError:
                result.statuses[0] += 1  # no answer: refused connection, reset, timeout
                await asyncio.sleep(0.05)
                continue
            result.latencies.append(time.monotonic() - started)
            result.statuses[r.status_code] += 1
            if r.status_code == 200:
                for d in r.json()["decisions"]:
                    result.acknowledged[d["declaration_id"]] = (
                        d["decision_id"],
                        d["lane"],
                        d["risk"],
                    )
            elif r.status_code in (429, 503):  # as told, but never past the stop
                if "retry-after" not in r.headers:
                    result.no_retry_after += 1
                wait = float(r.headers.get("Retry-After", "1"))
                await _sleep_unless(self._stop, wait)


async def _sleep_unless(stop: threading.Event, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        await asyncio.sleep(min(0.1, deadline - time.monotonic()))


class Sampler:
    """Calls ``sample()`` every ``every_s`` seconds in a thread until the block ends."""

    def __init__(self, sample: Callable[[], None], every_s: float) -> None:
        self.sample, self.every_s = sample, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class Probes:
    """/livez and /readyz every ``every_s`` from a process of their own, as a kubelet would:
    in this process the load's clients would hold the GIL and delay the probes' own timing.
    ``found``: (path, seconds, status; 0 = no answer) once the block ends.

    Forked, before the load's threads start (enter it first): a spawned child would import
    the caller's ``__main__`` again.
    """

    def __init__(self, url: str, every_s: float) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._queue = context.Queue()
        self._process = context.Process(
            target=_probe_until, args=(url, every_s, self._stop, self._queue), daemon=True
        )
        self.found: list[tuple[str, float, int]] = []

    def __enter__(self) -> Probes:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import queue

        self._stop.set()
        with contextlib.suppress(queue.Empty):
            self.found = self._queue.get(timeout=30)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()


def _probe_until(url: str, every_s: float, stop: Any, out: Any) -> None:
    port = int(url.rsplit(":", 1)[1])
    found = []
    while not stop.is_set():
        started = time.monotonic()
        for path in ("/livez", "/readyz"):
            found.append((path, *_probe(port, path)))
        stop.wait(max(0.0, every_s - (time.monotonic() - started)))
    out.put(found)


def _probe(port: int, path: str, timeout_s: float = 10) -> tuple[float, int]:
    """(seconds, status; 0 = no answer) of one GET on a new connection, as a kubelet probes:
    a raw socket, so that the client's own set-up (an HTTP client, its TLS context) is not
    counted as the server's latency."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            line = s.recv(64).split(b"\r\n", 1)[0].split(b" ")
        status = int(line[1]) if len(line) > 1 and line[1].isdigit() else 0
    except OSError:
        status = 0
    return time.monotonic() - started, status


# --- the store, read as an auditor would ---------------------------------------------------------


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def _check_stored(path: Path, acknowledged: dict[str, tuple[str, str, float]]) -> dict[str, Any]:
    """Every acknowledged decision in the store: found, unchanged, intact (its chain link)."""
    from serving.sqlite_store import SqliteDecisionStore

    found, altered, broken = 0, [], []
    store = SqliteDecisionStore(path)
    try:
        for declaration_id, (decision_id, lane, risk) in acknowledged.items():
            stored = store.get(decision_id)
            if stored is None:
                continue
            found += 1
            record, intact = stored
            if (record.declaration_id, record.lane, record.risk) != (declaration_id, lane, risk):
                altered.append(decision_id)
            if not intact:
                broken.append(decision_id)
    finally:
        store.close()
    return {
        "acknowledged": len(acknowledged),
        "found": found,
        "missing": len(acknowledged) - found,
        "altered": len(altered),
        "not_intact": len(broken),
    }


def _stored_with_prefix(path: Path, prefix: str) -> int:
    with _read_only(path) as db:
        return int(
            db.execute(
                "SELECT COUNT(*) FROM decisions WHERE declaration_id LIKE ?", (f"{prefix}%",)
            ).fetchone()[0]
        )


def _intact_via_api(url: str, decision_ids: list[str]) -> int:
    """How many of ``decision_ids`` GET /decision answers with ``intact: true``."""
    ok = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        for decision_id in decision_ids:
            r = client.get(
                "/decision",
                params={"decision_id": decision_id},
                headers={"X-API-Key": KEYS["auditor"]},
            )
            ok += r.status_code == 200 and r.json().get("intact") is True
    return ok


# --- kill under load ---------------------------------------------------------------------------


# SIGKILL of `serve` three times (its workers drain and stop), then of `serve` and its
# workers at once: nothing drains, a batch may be cut between its insert and its commit.
KILLS = ("serve", "serve", "serve", "serve+workers")
WORKER_GRACE_S = 30.0  # the requests in flight are answered first (request timeout: 10 s)


def run_kill(champion: Champion, work: Path, quick: bool = False) -> dict[str, Any]:
    """Rounds of load, SIGKILL (``KILLS``), no worker left, restart, every 200 stored intact."""
    import psutil

    from serving.process import listening_pids

    template = fresh_payloads(champion, 2_000)
    load_s = 3.0 if quick else 6.0
    rounds, failures = [], []
    with RealServer(champion, work, name="kill") as server:
        for n, target in enumerate(KILLS):
            prefix = f"K{n}-"
            workers = server.worker_pids()
            with Load(server.url, template, clients=8, rows=(1, 10, 100), prefix=prefix) as load:
                time.sleep(load_s)
                if target == "serve+workers":  # no drain: batches cut mid-transaction
                    # `serve` first, or its arbiter would start new workers in their place
                    for pid in [server.process.pid, *workers]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                server.kill9()  # returns once nothing listens on the port (or after 30 s)
                result = load.stop()
            killed = time.monotonic()
            listening = listening_pids(server.port)
            # the workers get SIGTERM when `serve` dies (serving.process): they stop accepting,
            # finish the requests in flight and exit; a worker still there later is an orphan
            while (orphans := [p for p in workers if _alive(psutil, p)]) and (
                time.monotonic() - killed < WORKER_GRACE_S
            ):
                time.sleep(0.2)
            workers_gone_s = time.monotonic() - killed
            restart_s = server.start()
            stored = _check_stored(server.audit_db, result.acknowledged)
            sample = [v[0] for v in itertools.islice(result.acknowledged.values(), 20)]
            via_api = _intact_via_api(server.url, sample)
            undelivered = _stored_with_prefix(server.audit_db, prefix) - stored["found"]
            figures = {
                "round": n + 1,
                "killed": target,
                **stored,
                "stored_undelivered": undelivered,
                "answers": result.answers(),
                "listening_after_kill": len(listening),
                "orphan_workers": len(orphans),
                "workers_gone_s": round(workers_gone_s, 1),
                "restart_s": round(restart_s, 1),
                "intact_via_api": f"{via_api}/{len(sample)}",
            }
            rounds.append(figures)
            where = f"round {n + 1}"
            if not result.acknowledged:
                failures.append(f"{where}: no request answered 200 before the kill")
            for key in ("missing", "altered", "not_intact"):
                if stored[key]:
                    failures.append(f"{where}: {stored[key]} acknowledged decisions {key}")
            if listening or orphans:
                failures.append(
                    f"{where}: after SIGKILL {len(listening)} pid(s) listening, "
                    f"{len(orphans)} worker(s) alive {WORKER_GRACE_S:g} s later"
                )
            if via_api != len(sample):
                failures.append(f"{where}: GET /decision intact for {via_api}/{len(sample)}")
            if any(int(k) >= 500 and int(k) not in (503, 504) for k in result.answers()):
                failures.append(f"{where}: 5xx before the kill: {result.answers()}")
    return {
        "ok": not failures,
        "rounds": rounds,
        "acknowledged": sum(r["acknowledged"] for r in rounds),
        "missing": sum(r["missing"] for r in rounds),
        "altered": sum(r["altered"] for r in rounds),
        "stored_undelivered": sum(r["stored_undelivered"] for r in rounds),
        "restart_s_max": max(r["restart_s"] for r in rounds),
        "failures": failures[:MAX_FAILURES],
    }


def _alive(psutil: Any, pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- overload ----------------------------------------------------------------------------------

PROBE_LIMIT_S = 2.0
ADMITTED_WORK_MB = 512
LIVE_STATE_KB_PER_DECLARATION = 1.0
RECOVERY_LIMIT_S = 10.0
USEFUL_RATIO_MIN = 0.5


def run_overload(
    champion: Champion, work: Path, quick: bool = False, *, rows: int = 1_000, clients: int = 64
) -> dict[str, Any]:
    """Unloaded throughput (2 clients), then ``clients`` of them, with probes and memory
    watched; every request carries ``rows`` fresh declarations."""
    template = fresh_payloads(champion, 2_000)
    calm_s, loaded_s = (5.0, 10.0) if quick else (10.0, 30.0)
    failures: list[str] = []
    with RealServer(champion, work, name="overload") as server:
        with (
            Probes(server.url, 0.5) as calm_probes,
            Load(server.url, template, clients=2, rows=(rows,), prefix="U") as calm,
        ):
            time.sleep(calm_s)
        calm_rate = calm.result.rate()
        baseline_mb = server.rss_mb()
        rss: list[float] = []
        with (
            Probes(server.url, 0.5) as probes,
            Sampler(lambda: rss.append(server.rss_mb()), 1.0),
            Load(server.url, template, clients=clients, rows=(rows,), prefix="V") as loaded,
        ):
            time.sleep(loaded_s)
            loaded.stop()
        recovery_s = _recovery_s(server.url, template)
        stored = _stored_with_prefix(server.audit_db, "V")
    result = loaded.result
    loaded_rate = result.rate()
    ratio = loaded_rate / calm_rate if calm_rate else 0.0
    slow = [p for p in probes.found if p[1] >= PROBE_LIMIT_S or p[2] != 200]
    peak_mb = max(rss, default=0.0)
    # The bound: the memory after the unloaded phase (model, entity state, warm caches), plus
    # what admitted work may hold, plus what the phase's declarations add to the live entity
    # state. Admission refuses most requests before their body is read; even if all 64
    # requests of 1,000 declarations were held at once, as body, parsed models and decision
    # records (~4 KB a declaration in Python objects), that is 256 MB: twice it. The live state
    # keeps every declaration scored (by any worker: each catches up on the others') until it
    # folds into totals after the longest window, so it grows with the work done, not with
    # the overload: LIVE_STATE_KB_PER_DECLARATION a declaration in each worker, about twice
    # what a worker grows by per declaration scored at a steady rate (~0.55 KB, RSS), since
    # merging its largest event runs holds the old and the new arrays for a moment.
    live_mb = stored * server.workers * LIVE_STATE_KB_PER_DECLARATION / 1024
    bound_mb = baseline_mb + ADMITTED_WORK_MB + live_mb
    answers = result.answers()
    other_5xx = {k: v for k, v in answers.items() if int(k) >= 500 and int(k) not in (503, 504)}
    if other_5xx:
        failures.append(f"5xx under overload: {other_5xx}")
    if not result.statuses[429]:
        failures.append("no 429 under ten times the load")
    if result.no_retry_after:
        failures.append(f"{result.no_retry_after} 429/503 without Retry-After")
    if slow:
        worst = max(slow, key=lambda p: p[1])
        failures.append(
            f"{len(slow)} probe(s) slower than {PROBE_LIMIT_S:g} s or failed "
            f"(worst {worst[0]} {worst[1]:.2f} s, status {worst[2]})"
        )
    if recovery_s is None or recovery_s > RECOVERY_LIMIT_S:
        failures.append(f"not answering a single declaration in < 1 s {RECOVERY_LIMIT_S:g} s after the load")  # fmt: skip
    if peak_mb > bound_mb:
        failures.append(f"peak RSS {peak_mb:.0f} MB above the bound {bound_mb:.0f} MB")
    if ratio < USEFUL_RATIO_MIN:
        failures.append(f"useful throughput {ratio:.0%} of unloaded (< {USEFUL_RATIO_MIN:.0%})")
    return {
        "ok": not failures,
        "clients": clients,
        "rows_per_request": rows,
        "answers": answers,
        "useful_per_s_unloaded": round(calm_rate),
        "useful_per_s_loaded": round(loaded_rate),
        "useful_ratio": round(ratio, 2),
        "concurrency_x_unloaded": clients // 2,  # closed loop: clients per unloaded client
        "delivered": result.delivered,
        "stored": stored,
        "stored_undelivered": stored - result.delivered,
        "probes": len(probes.found),
        "probe_s_unloaded": _spread(calm_probes.found),
        "probe_s": _spread(probes.found),
        "probe_failures": len(slow),
        "rss_mb_unloaded": round(baseline_mb),
        "rss_mb_peak": round(peak_mb),
        "rss_mb_bound": round(bound_mb),
        "rss_mb_bound_live_state": round(live_mb),
        "recovery_s": None if recovery_s is None else round(recovery_s, 2),
        "failures": failures[:MAX_FAILURES],
    }


def _spread(probes: list[tuple[str, float, int]]) -> dict[str, float]:
    """Median, 95th percentile and maximum of the probes' seconds."""
    seconds = sorted(p[1] for p in probes) or [0.0]
    p50, p95 = (seconds[min(len(seconds) - 1, int(q * len(seconds)))] for q in (0.5, 0.95))
    return {"p50": round(p50, 3), "p95": round(p95, 3), "max": round(seconds[-1], 3)}


def _recovery_s(url: str, template: list[dict], limit_s: float = 60) -> float | None:
    """Seconds until one declaration is answered 200 within a second; None if never."""
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=1.0) as client:
        for n in itertools.count():
            if time.monotonic() - started > limit_s:
                return None
            body = {"declarations": [{**template[n % len(template)], "declaration_id": f"R{n}"}]}
            try:
                r = client.post("/score", json=body, headers={"X-API-Key": KEYS["scorer"]})
                if r.status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return None  # pragma: no cover - the loop returns


# --- sustained ---------------------------------------------------------------------------------

# The log may pass its cap by what the writers add while a checkpoint copies it (one merged
# batch, at most serve.max_batch decisions of a few KB each) and by what the checkpointer,
# which looks at the rate the log grows, finds on its next look: a quarter of the default cap.
WAL_MARGIN_MB = 16.0


def run_sustained(champion: Champion, work: Path, quick: bool = False) -> dict[str, Any]:
    """Singles and small batches for two minutes: WAL under its cap, store growth linear."""
    from features.params import load_settings

    template = fresh_payloads(champion, 2_000)
    seconds = 20.0 if quick else 120.0
    failures: list[str] = []
    samples: list[tuple[float, int, int, int]] = []  # (t, db bytes, wal bytes, decisions)
    with RealServer(champion, work, name="sustained") as server:
        cap_mb = load_settings(server.params).serve.audit_wal_max_mb
        db, wal = server.audit_db, Path(f"{server.audit_db}-wal")
        started = time.monotonic()

        def sample() -> None:
            with _read_only(db) as conn:
                rows = int(conn.execute("SELECT MAX(rowid) FROM decisions").fetchone()[0] or 0)
            samples.append((time.monotonic() - started, _size(db), _size(wal), rows))

        with (
            Sampler(sample, 1.0),
            Load(server.url, template, clients=16, rows=(1, 1, 1, 5, 10), prefix="S") as load,
        ):
            time.sleep(seconds)
            load.stop()
    result = load.result
    decisions = _decisions_in(db)
    final_bytes = _size(db)  # a clean stop truncated the log into the file
    wal_peak_mb = max((s[2] for s in samples), default=0) / MB
    per_decision = final_bytes / decisions if decisions else 0.0
    # on disk beyond what the decisions themselves take (final bytes per decision): the log
    # and pages not yet reused; bounded by the log's cap if the store grows with the decisions
    overhead_mb = max(((d + w - n * per_decision) / MB for _, d, w, n in samples), default=0.0)
    answers = result.answers()
    if any(int(k) >= 500 or int(k) == 0 for k in answers):
        failures.append(f"5xx or no answer: {answers}")
    if wal_peak_mb > cap_mb + WAL_MARGIN_MB:
        failures.append(f"WAL reached {wal_peak_mb:.1f} MB (cap {cap_mb:g} + {WAL_MARGIN_MB:g})")
    if not per_decision or overhead_mb > cap_mb + WAL_MARGIN_MB:
        failures.append(
            f"store not proportional to decisions: {overhead_mb:.1f} MB on disk beyond "
            f"{per_decision:.0f} B per decision (cap {cap_mb:g} + {WAL_MARGIN_MB:g} MB)"
        )
    return {
        "ok": not failures,
        "seconds": seconds,
        "clients": 16,
        "answers": answers,
        "decisions_per_s": round(result.rate()),
        "stored": decisions,
        "wal_cap_mb": cap_mb,
        "wal_peak_mb": round(wal_peak_mb, 1),
        "wal_margin_mb": WAL_MARGIN_MB,
        "store_mb": round(final_bytes / MB, 1),
        "bytes_per_decision": round(per_decision),
        "disk_beyond_decisions_peak_mb": round(overhead_mb, 1),
        "samples": len(samples),
        "failures": failures[:MAX_FAILURES],
    }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _decisions_in(path: Path) -> int:
    with _read_only(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])


CHECKS = {"kill": run_kill, "overload": run_overload, "sustained": run_sustained}
