"""The BentoML scoring service: POST /score, POST /explain, GET|POST /decision.

Start it with ``parcelrisk serve`` (``serving.cli``), which passes its options through the
environment to the worker processes:

- ``PARCELRISK_TRACKING_URI``: MLflow tracking URI of the registry (default: MLflow's own);
- ``PARCELRISK_PARAMS``: params.yaml to read the ``serve`` section from (default ``params.yaml``);
- ``PARCELRISK_MODEL_DIR``: where the champion bundle is materialised (default: a temp dir);
- ``PARCELRISK_AUDIT_DB``: the SQLite decision store (default ``serve.audit_db``);
- ``PARCELRISK_WORKERS``: worker processes (one model copy each);
- ``PARCELRISK_ACCESS_LOG``, ``PARCELRISK_TRACING``: ``1`` turns on per-request access log
  lines / OpenTelemetry spans (``serve.access_log`` / ``serve.tracing``);
- ``PARCELRISK_REQUEST_TIMEOUT``, ``PARCELRISK_MAX_CONCURRENCY``: 504 after this many seconds,
  429 beyond this many requests in flight (``serve.request_timeout_s`` / ``max_concurrency``);
- the API-key variables of ``serving.auth``.

The champion and its entity-state snapshot are loaded once, in ``__init__``. If that fails the
process stays up but not ready: ``/readyz`` and ``/score`` answer 503 with the reason, and
nothing is ever scored by a half-loaded or substitute model.

Concurrent requests are scored together: while one batch runs in the worker thread, requests
that arrive queue up and are then scored as one batch (one feature computation, one predict
call, one audit transaction), which is what keeps single-declaration latency flat under load.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from features.errors import ParcelriskError
from features.intake.contract import (
    OUTCOME_COLUMNS,
    RecordColumns,
    declarations_frame,
    models_as_json,
)
from serving.audit import AuditStore, DecisionRecord
from serving.auth import ApiKeyMiddleware, load_keyring
from serving.config import (
    ACCESS_LOG_ENV,
    MAX_CONCURRENCY_ENV,
    MODEL_DIR_ENV,
    PARAMS_ENV,
    REQUEST_TIMEOUT_ENV,
    TRACING_ENV,
    TRACKING_URI_ENV,
    WORKERS_ENV,
    load_serve_config,
)
from serving.schemas import Declaration, Explanation, ScoreResponse, StoredDecision
from serving.scoring import (
    ScoredBatch,
    ScoringRuntime,
    audit_records,
    check_request,
    decision_rows,
    explain_matrix,
    load_runtime,
    rejection,
    score_frame,
)
from serving.timeout import freeze_after_load, install_request_timeout

logger = logging.getLogger(__name__)
install_request_timeout()  # BentoML's request timeout leaks a timer per request: see serving.timeout

# Per process: why this worker is not ready (None = ready). Read by the middleware for /readyz.
_STATUS: dict[str, Any] = {"reason": "service is starting", "instance": None}
DEFAULT_MAX_BODY_BYTES = 5_000_000
_OUTCOMES = frozenset(OUTCOME_COLUMNS)

DECISIONS = bentoml.metrics.Counter(
    name="parcelrisk_decisions_total",
    documentation="Scored declarations by lane and exploration flag.",
    labelnames=["lane", "exploration"],
)
SCORING_SECONDS = bentoml.metrics.Histogram(
    name="parcelrisk_scoring_seconds",
    documentation="Time to score one merged batch (features, model, lanes, reasons, audit).",
    labelnames=["endpoint"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
BATCH_ROWS = bentoml.metrics.Histogram(
    name="parcelrisk_batch_rows",
    documentation="Declarations per merged scoring batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000),
)


def readiness_reason() -> str | None:
    return _STATUS["reason"]


def max_body_bytes() -> int:
    service = _STATUS["instance"]
    return service.config.max_body_bytes if service is not None else DEFAULT_MAX_BODY_BYTES


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


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


class MicroBatcher:
    """Merge concurrently waiting requests into one call of the coroutine function ``fn``.

    An idle batcher scores the first request at once; requests arriving meanwhile form the next
    batch (up to ``max_rows``). If a merged batch fails, its requests are retried one by one so
    one bad request cannot fail its neighbours.

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
    ) -> None:
        self.fn = fn
        self.max_rows = max_rows
        self.linger_s = linger_s
        self._pending: list[tuple[list[Any], asyncio.Future[list[Any]]]] = []
        self._running = False
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

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
                    group.append((items, future))
                    rows += len(items)
                answered = len(group)
                await self._run(group)
        finally:
            self._running = False

    async def _run(self, group: list[tuple[list[Any], asyncio.Future[list[Any]]]]) -> None:
        merged = [item for items, _ in group for item in items]
        try:
            results = await self.fn(merged)
        except Exception as exc:
            if len(group) == 1:
                if not group[0][1].done():
                    group[0][1].set_exception(exc)
                return
            for single in group:
                await self._run([single])
            return
        start = 0
        for items, future in group:
            if not future.done():
                future.set_result(results[start : start + len(items)])
            start += len(items)


@bentoml.service(
    name="parcelrisk",
    workers=int(os.environ.get(WORKERS_ENV, "1")),
    traffic={
        "timeout": float(os.environ.get(REQUEST_TIMEOUT_ENV, "10")),
        "max_concurrency": int(os.environ.get(MAX_CONCURRENCY_ENV, "512")),  # per service
    },
    logging={"access": {"enabled": os.environ.get(ACCESS_LOG_ENV) == "1"}},
    # no spans at all unless asked for: "/" matches every path (OpenTelemetry excluded_urls)
    tracing={"excluded_urls": None if os.environ.get(TRACING_ENV) == "1" else ["/"]},
)
class ParcelRiskService:
    """Customs risk targeting for e-commerce parcels: lanes, calibrated risk and reasons."""

    def __init__(self) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        params = Path(os.environ.get(PARAMS_ENV, "params.yaml"))
        self.config = load_serve_config(params)
        _STATUS["instance"] = None
        load_keyring()  # refuse to start without keys unless auth was explicitly waived
        self.audit = AuditStore.from_env(default=self.config.audit_db)
        self.runtime: ScoringRuntime | None = None
        self.batcher = MicroBatcher(
            self._score_and_record,
            max_rows=self.config.max_batch,
            linger_s=self.config.batch_linger_ms / 1000,
        )
        # one directory per worker process: workers download the champion concurrently
        base = os.environ.get(MODEL_DIR_ENV) or tempfile.mkdtemp(prefix="parcelrisk-model-")
        model_dir = Path(base) / f"worker-{os.getpid()}"
        tracking_uri = os.environ.get(TRACKING_URI_ENV) or None
        try:
            self.runtime = load_runtime(self.config, tracking_uri, model_dir, params)
        except ParcelriskError as exc:
            _STATUS["reason"] = f"champion model not loaded: {exc}"
            logger.error("NOT READY: %s", _STATUS["reason"])
        except Exception as exc:  # never serve half-loaded; say why, keep probes answering
            _STATUS["reason"] = f"champion model not loaded: {type(exc).__name__}: {exc}"
            logger.exception("NOT READY: %s", _STATUS["reason"])
        else:
            _STATUS["reason"] = None
            logger.info(
                "ready: model %s v%s (run %s), thresholds %s, audit store %s",
                self.runtime.model_name,
                self.runtime.model_version,
                self.runtime.run_id,
                self.runtime.model.thresholds.version,
                self.audit.path,
            )
        _STATUS["instance"] = self
        freeze_after_load()

    def __is_ready__(self) -> bool:
        return self.runtime is not None

    # --- scoring ---------------------------------------------------------------------------
    async def _score_and_record(self, declarations: list[Any]) -> list[dict[str, Any]]:
        """Score one merged batch of validated declarations; answer once it is recorded.

        The audit write runs in a thread even for small batches: it may wait for the store's
        write lock (another worker, an auditor's tool, a slow disk), and that wait must hold
        up this batch, not the event loop that answers probes and times requests out.
        """
        started = time.perf_counter()
        rows, records, batch = await run_inline_if_small(
            self._score_declarations, declarations, self.config.inline_batch_rows
        )
        await asyncio.to_thread(self.audit.record, records)
        SCORING_SECONDS.labels(endpoint="score").observe(time.perf_counter() - started)
        BATCH_ROWS.observe(len(rows))
        lanes, counts = np.unique(
            np.char.add(batch.lanes.astype(str), np.where(batch.exploration, "|1", "|0")),
            return_counts=True,
        )
        for key, count in zip(lanes.tolist(), counts.tolist(), strict=True):
            lane, flag = key.split("|")
            DECISIONS.labels(lane=lane, exploration="true" if flag == "1" else "false").inc(count)
        return rows

    def _score_declarations(
        self, declarations: list[Any]
    ) -> tuple[list[dict[str, Any]], list[DecisionRecord], ScoredBatch]:
        """Response rows and audit records of one merged batch (CPU only, no waiting)."""
        runtime = self.runtime
        assert runtime is not None
        batch = score_frame(RecordColumns(declarations, runtime.contract), runtime)
        known = {e.name for e in runtime.contract.extras} if runtime.contract else set()
        for i, declaration in enumerate(declarations):
            for name in sorted(set(declaration.model_extra or ()) - known):
                batch.warnings[i].append(f"field {name!r} is not in the contract: ignored")
        # without contract extras the stored JSON comes straight from the validated models
        stored = (
            None if runtime.contract and runtime.contract.extras else models_as_json(declarations)
        )
        return decision_rows(batch, runtime), audit_records(batch, runtime, stored), batch

    @bentoml.api(route="/score")
    async def score(self, declarations: list[Declaration]) -> ScoreResponse:  # type: ignore[valid-type]
        """Score 1..1000 declarations: lane, calibrated risk, expected revenue, reasons."""
        if self.runtime is None:
            return _error(503, _STATUS["reason"] or "not ready")
        n, limit = len(declarations), self.config.max_batch
        if not 1 <= n <= limit:
            return _error(
                422,
                f"declarations: expected 1 to {limit} declarations per request, got {n}",
                field="declarations",
            )
        if outcome := _outcome_field(declarations):
            return _error(
                422,
                f"{outcome}: outcome fields (inspection results) are not accepted for scoring",
                field=outcome,
            )
        # The declaration rules, as the file gate applies them: per request, before merging,
        # so one bad request never fails its neighbours' batch.
        findings = check_request(declarations, self.runtime)
        if findings.faults:
            return JSONResponse(rejection(findings, declarations), status_code=400)
        try:
            if self.config.merge_concurrent_requests:
                rows = await self.batcher.submit(list(declarations))
            else:
                rows = await self._score_and_record(list(declarations))
        except ParcelriskError as exc:
            return _error(422, str(exc))
        # Built as plain dicts and sent as JSON directly: re-validating 1000 response models
        # through pydantic would cost more than the scoring. The shape is ScoreResponse.
        return JSONResponse({"decisions": rows})

    @bentoml.api(route="/explain")
    def explain(
        self,
        decision_id: str | None = None,
        declaration: Declaration | None = None,  # type: ignore[valid-type]
    ) -> Explanation:
        """Full contribution vector for a stored decision (by id) or for a declaration."""
        runtime = self.runtime
        if runtime is None:
            return _error(503, _STATUS["reason"] or "not ready")
        if (decision_id is None) == (declaration is None):
            return _error(422, "give exactly one of decision_id or declaration")
        if declaration is not None:
            findings = check_request([declaration], runtime)
            if findings.faults:
                return JSONResponse(rejection(findings, [declaration]), status_code=400)
            frame = declarations_frame([declaration], contract=runtime.contract)
            features, _ = runtime.compute_features(frame)
            X = runtime.model.manifest.matrix_of(features.values, len(features))
            out = explain_matrix(X, features.context, runtime)[0]
            return JSONResponse(
                {"decision_id": None, "declaration_id": frame["declaration_id"].iloc[0], **out}
            )
        found = self.audit.get(decision_id)
        if found is None:
            return _error(404, f"decision_id {decision_id!r} not found")
        record, intact = found
        if (
            record.model_version != runtime.model_version
            or record.model_name != runtime.model_name
            or record.manifest_fingerprint != runtime.model.manifest.fingerprint
        ):
            return _error(
                409,
                f"decision {decision_id} was made by {record.model_name} "
                f"v{record.model_version}; this server runs v{runtime.model_version}. "
                "Explain it with that model version.",
            )
        X = record.feature_vector.reshape(1, -1)
        # Context (hs6, origin...) is declaration-derived, so recomputing it is exact.
        frame = declarations_frame([record.declaration], contract=runtime.contract)
        features, _ = runtime.compute_features(frame)
        out = explain_matrix(X, features.context, runtime)[0]
        return JSONResponse(
            {
                "decision_id": record.decision_id,
                "declaration_id": record.declaration_id,
                **out,
                "stored_raw_score": record.raw_score,
                "intact": intact,
            }
        )

    @bentoml.api(route="/decision")
    def decision(self, decision_id: str) -> StoredDecision:
        """A stored decision as recorded (auditor)."""
        return _stored_decision(self, decision_id)


def _outcome_field(declarations: list[Any]) -> str | None:
    """``declarations.I.FIELD`` of the first outcome field sent as an extra key, if any."""
    for i, declaration in enumerate(declarations):
        if declaration.model_extra and (found := _OUTCOMES & declaration.model_extra.keys()):
            return f"declarations.{i}.{sorted(found)[0]}"
    return None


def _stored_decision(service: ParcelRiskService, decision_id: str) -> JSONResponse:
    found = service.audit.get(decision_id)
    if found is None:
        return _error(404, f"decision_id {decision_id!r} not found")
    record, intact = found
    names = (
        service.runtime.model.manifest.names
        if service.runtime is not None
        and record.manifest_fingerprint == service.runtime.model.manifest.fingerprint
        else [f"f{i}" for i in range(len(record.feature_vector))]
    )
    return JSONResponse(
        {
            "decision_id": record.decision_id,
            "scored_at": record.scored_at,
            "declaration_id": record.declaration_id,
            "declaration": record.declaration,
            "features": dict(zip(names, _json_floats(record.feature_vector), strict=True)),
            "model": {"name": record.model_name, "version": record.model_version},
            "thresholds_version": record.thresholds_version,
            "lane_policy": json.loads(record.lane_policy),
            "raw_score": record.raw_score,
            "risk": record.risk,
            "expected_revenue": record.expected_revenue,
            "lane": record.lane,
            "exploration": record.exploration,
            "reasons": record.reasons,
            "warnings": record.warnings,
            "intact": intact,
        }
    )


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


async def _get_decision(request: Request) -> JSONResponse:
    service = _STATUS["instance"]
    decision_id = request.query_params.get("decision_id")
    if not decision_id:
        return _error(422, "decision_id: query parameter required", field="decision_id")
    if service is None:
        return _error(503, _STATUS["reason"] or "not ready")
    return await asyncio.to_thread(_stored_decision, service, decision_id)


ParcelRiskService.mount_asgi_app(
    Starlette(routes=[Route("/decision", _get_decision, methods=["GET"])]), path="/"
)
ParcelRiskService.add_asgi_middleware(
    ApiKeyMiddleware,
    max_body_bytes=max_body_bytes,
    readiness=readiness_reason,
)
