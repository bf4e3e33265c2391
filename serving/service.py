"""The BentoML scoring service: POST /score, POST /explain, GET|POST /decision, POST /outcomes.

Start it with ``parcelrisk serve`` (``serving.cli``), which passes its options through the
environment to the worker processes (``serving.config``).

The champion and its entity-state snapshot are loaded in ``__init__`` and caught up with the
decision log. If that fails the process stays up but not ready: ``/readyz`` and ``/score``
answer 503 with the reason, and nothing is ever scored by a half-loaded or substitute model.
A champion promoted later is loaded beside the running one and swapped in between batches
(``serving.rollover``); a worker that was not ready becomes ready then.

Around the endpoints, outermost first: the request timeout (``serving.patches``), readiness
(``serving.readiness``), API keys (``serving.auth``), the body limit (``serving.limits``).
Concurrent requests are merged into one scoring batch (``serving.batching``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import itertools
import logging
import math
import os
import shutil
import sqlite3
import tempfile
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from features.errors import ParcelriskError
from features.intake.columns import RecordColumns, declarations_frame, models_as_json
from features.intake.contract import OUTCOME_COLUMNS
from features.intake.rules import Limits
from features.notes import (
    DECLARATION_AMENDED,
    DECLARATION_SUPERSEDED,
    EXTRAS_MISSING,
    FIELD_IGNORED,
)
from serving.auditor.pages import auditor_routes
from serving.auth import CALLER, ApiKeyMiddleware, Caller, KeyCheck, load_keyring
from serving.batching import MicroBatcher, Reservation, run_inline_if_small
from serving.config import MODEL_DIR_ENV, TRACKING_URI_ENV, worker_settings
from serving.decision import AMENDED_WARNING, DecisionRecord
from serving.delivery import CANCELLED, answering, on_lost
from serving.errors import (
    error_response,
    listed_problems,
    rejection_response,
    two_contents_response,
)
from serving.limits import BodyLimitMiddleware, QueueAdmissionMiddleware
from serving.metrics import (
    CHAMPION_SWITCHES,
    LIVE_DECLARATIONS,
    QUEUE_REFUSALS,
    UNDELIVERED,
    observe_batch,
)
from serving.openapi import OpenApiDocumentMiddleware
from serving.outcomes import SHOWN_ID_CHARS, OutcomesRefused, describe_problems, store_outcomes
from serving.patches import (
    LocalDocsPageMiddleware,
    freeze_after_load,
    install_body_before_slot,
    install_guarded_shutdown,
    install_header_deadline,
    install_json_400,
    install_log_redaction,
    install_request_timeout,
)
from serving.process import exit_with_parent, fix_malloc_mmap_threshold
from serving.readiness import ReadinessMiddleware, StoreOutage
from serving.rollover import ChampionRef, ChampionWatcher
from serving.schemas import (
    DecisionRequest,
    Declaration,
    ExplainRequest,
    Explanation,
    OutcomeResult,
    OutcomesResponse,
    ScoreRequest,
    ScoreResponse,
    StoredDecision,
)
from serving.scoring import (
    ScoredBatch,
    ScoringRuntime,
    check_request,
    decision_records,
    declarations_as_json,
    explain_matrix,
    load_runtime,
    score_frame,
)
from serving.sqlite_store import (
    ArchiveUnavailable,
    DamagedRecord,
    StoreReplaced,
    StoreUnavailable,
    is_damaged,
)
from serving.store import (
    is_sqlite,
    open_outcome_store,
    open_store,
    require_key_signs_chain,
)

if TYPE_CHECKING:
    from models.bundle import LaneThresholds

logger = logging.getLogger(__name__)
install_log_redaction()  # refused requests: one line, no declaration values
install_request_timeout()  # before BentoML builds the app: see serving.patches
install_guarded_shutdown()  # the stores are closed by a shutdown hook
exit_with_parent()  # a worker stops with `parcelrisk serve`, even on its SIGKILL
fix_malloc_mmap_threshold()  # memory freed after large batches goes back to the system
# BentoML takes its part of the settings at import (the decorator below), the service the rest
# in __init__: one read per process (serving.config). A broken params.yaml stops the import
# with its one-line error.
SETTINGS = worker_settings()
# a request's headers get the time the whole request gets (serving.patches, 6.)
install_header_deadline(SETTINGS.serve.request_timeout_s)
install_json_400()  # uvicorn's own 400 for unparsable HTTP, in the API's error shape

_OUTCOMES = frozenset(OUTCOME_COLUMNS)


@dataclass
class _Worker:
    """This worker process's service, for the middlewares and the GET route BentoML builds
    before (and apart from) the instance."""

    service: ParcelRiskService | None = None
    not_ready: str | None = "service is starting"  # None = ready

    def max_body_bytes(self) -> int:
        settings = self.service.settings if self.service is not None else worker_settings()
        return settings.serve.max_body_bytes

    def not_ready_response(self) -> JSONResponse:
        return error_response(503, self.not_ready or "not ready", code="not_ready")

    def serving(self) -> dict[str, Any] | None:
        """The model this worker decides with, for ``/readyz``: name, version, MLflow run and
        lane thresholds version (None before a champion is loaded)."""
        runtime = self.service.runtime if self.service is not None else None
        if runtime is None:
            return None
        return {
            "name": runtime.model_name,
            "version": runtime.model_version,
            "run_id": runtime.run_id,
            "thresholds_version": runtime.thresholds.version,
        }

    def model_extras(self) -> tuple[tuple[str, str, bool, bool], ...]:
        """The served model's mapped extras for the OpenAPI document: (name, kind, read by
        its features, amount); none before a champion is loaded."""
        runtime = self.service.runtime if self.service is not None else None
        if runtime is None or runtime.contract is None:
            return ()
        read = runtime.extras_read
        return tuple(
            (e.name, e.kind, read is None or e.name in read, e.amount)
            for e in runtime.contract.extras
        )

    def why_not_ready(self) -> str | None:
        """``/readyz``'s reason: the champion's (``not_ready``), else the service's own."""
        if self.not_ready is not None or self.service is None:
            return self.not_ready
        return self.service.not_ready_reason()

    def admit(self, body_bytes: int | None) -> JSONResponse | None:
        """Before a /score body is read: the 429 if its declarations, estimated from its size,
        would wait too long behind the queue; else None, and they count as queued work."""
        service = self.service
        if service is None or not service.config.merge_concurrent_requests:
            return None
        rows = service.rows_in(body_bytes)
        if busy := service._queue_full_response(rows, estimated=True):
            return busy
        _ADMITTED.set(service.batcher.reserve(rows, body_bytes))
        return None

    @staticmethod
    def release() -> Reservation | None:
        """Stop counting this request's estimated declarations (see ``admit``)."""
        reservation = _ADMITTED.get()
        if reservation is not None:
            reservation.release()
        return reservation


_WORKER = _Worker()
# This request's admitted declarations (``_Worker.admit``): set by the admission middleware,
# read by the /score handler, which runs in the same request context.
_ADMITTED: ContextVar[Reservation | None] = ContextVar("parcelrisk_admitted", default=None)
# Bytes of request body per declaration, until requests have shown theirs: compact
# declarations of the contract's fields without descriptions (~500 with them).
_BYTES_PER_ROW = 350.0


@bentoml.service(
    name="parcelrisk",
    workers=SETTINGS.serve.workers,
    traffic={
        "timeout": SETTINGS.serve.request_timeout_s,
        "max_concurrency": SETTINGS.serve.max_concurrency,  # per service
    },
    logging={"access": {"enabled": SETTINGS.serve.access_log}},
    # no spans at all unless asked for: "/" matches every path (OpenTelemetry excluded_urls)
    tracing={"excluded_urls": None if SETTINGS.serve.tracing else ["/"]},
)
class ParcelRiskService:
    """Customs risk targeting for e-commerce parcels: lanes, calibrated risk and reasons."""

    def __init__(self) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # BentoML's worker logging passes only WARNING and above from other packages: without
        # this, what an operator needs to see (the model and thresholds each worker serves, a
        # roll-over, new lane cut-offs in force) never reached the log.
        logging.getLogger("serving").setLevel(logging.INFO)
        # each refit of reference prices and description models (features.pipeline.refit): a
        # worker refitting again and again within a period is something to see (probe 7)
        logging.getLogger("features.pipeline.refit").setLevel(logging.INFO)
        # MLflow logs a full SQLAlchemy traceback for a locked or unreachable tracking database
        # and then raises it as an MlflowException, which the champion check reports in one
        # line and retries: every check of every worker wrote the traceback again (probe).
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        self.settings = worker_settings()
        self.config = self.settings.serve
        _WORKER.service = None
        load_keyring()  # refuse to start without keys unless auth was explicitly waived
        self.store = open_store(self.config.audit_db, wal_max_mb=self.config.audit_wal_max_mb)
        # a worker started apart (a replica, bentoml serve) under another key: refused here,
        # as `parcelrisk serve` refuses before starting its workers
        require_key_signs_chain(self.store)
        self.outcome_store = open_outcome_store(self.config.audit_db, self.store)
        # a write kept from a SQLite file by another process's lock is refused (503, nothing
        # stored) after a quarter of the request timeout, not answered 504 after all of it
        for store in (self.store, self.outcome_store):
            if hasattr(store, "limit_write_wait"):
                store.limit_write_wait(self.config.request_timeout_s / 4)
        # lookups for people (auditor pages, /decision, /explain of a decision id) on a handle
        # of their own: a slow one (a filter matching nothing scans the table) held the scoring
        # path's reader lock, and with it the event loop and the health probes, for its length
        self.review_store = (
            open_store(self.config.audit_db, read_only=True)
            if is_sqlite(self.config.audit_db)
            else self.store  # PostgreSQL: a pool of connections, no lock shared with scoring
        )
        # results are held to the gate's plausibility limits (validate.max_revenue: revenue)
        self.outcome_limits = Limits.from_settings(self.settings)
        self.runtime: ScoringRuntime | None = None
        self._damaged: str | None = None  # the store found damaged under the service
        self._in_place_checked_at = -math.inf  # when readiness last looked for the store file
        self._unavailable_at: float | None = None  # when the store last refused a batch
        self._store_outage = StoreOutage(str(self.config.audit_db), pause_s=_UNAVAILABLE_PAUSE_S)
        # when each store write in flight began (the event loop's dict: no lock needed)
        self._writes_since: dict[object, float] = {}
        self._registry: Any = None  # the MLflow client the watcher asks, made on first use
        self.batcher = MicroBatcher(
            self._score_and_record,
            max_rows=self.config.max_batch,
            linger_s=self.config.batch_linger_ms / 1000,
            lost=lambda items: self._mark_undelivered(
                [item["decision_id"] for item in items], CANCELLED
            ),
        )
        self._marking: set[asyncio.Future[None]] = set()  # undelivered marks being written
        self._bytes_per_row = _BYTES_PER_ROW  # learnt from the requests (``rows_in``)
        on_lost(self._mark_undelivered)
        # one directory per worker process: workers download the champion concurrently
        base = os.environ.get(MODEL_DIR_ENV) or tempfile.mkdtemp(prefix="parcelrisk-model-")
        self._model_root = Path(base) / f"worker-{os.getpid()}"
        self._loads = itertools.count(1)
        self._runtime_dir: Path | None = None
        self._tracking_uri = os.environ.get(TRACKING_URI_ENV) or None
        try:
            self._install(self._load_champion(), started=True)
        except ParcelriskError as exc:
            _WORKER.not_ready = f"champion model not loaded: {exc}"
            logger.error("NOT READY: %s", _WORKER.not_ready)
        except sqlite3.DatabaseError as exc:
            if not is_damaged(exc):
                raise
            # the load catches the entity state up from the store: its damage is the store's,
            # and readiness said "champion model not loaded" (probe 21)
            _WORKER.not_ready = (
                f"decision store {self.config.audit_db} is damaged ({exc}): restore it from a "
                "backup, run `parcelrisk audit verify` and restart the service"
            )
            logger.error("NOT READY: %s", _WORKER.not_ready)
        except Exception as exc:  # never serve half-loaded; say why, keep probes answering
            _WORKER.not_ready = f"champion model not loaded: {type(exc).__name__}: {exc}"
            logger.exception("NOT READY: %s", _WORKER.not_ready)
        # a newly promoted champion is loaded beside this one and swapped in (serving.rollover)
        self.watcher = ChampionWatcher(
            current=lambda: self.runtime.model_version if self.runtime is not None else None,
            champion=self._champion_version,
            load=self._load_champion,
            install=self._install,
            interval_s=self.config.champion_check_s,
            current_thresholds=lambda: (
                self.runtime.thresholds.version if self.runtime is not None else None
            ),
            install_thresholds=self._install_thresholds,
        )
        _WORKER.service = self
        freeze_after_load()
        self.watcher.start()

    @bentoml.on_shutdown
    def _shut_down(self) -> None:
        """Stop the champion checks and close the stores (a clean stop truncates their log)."""
        self.watcher.stop()
        if self.review_store is not self.store:
            self.review_store.close()
        self.store.close()
        self.outcome_store.close()
        # this worker's champion downloads (its own directory under the model root)
        shutil.rmtree(self._model_root, ignore_errors=True)

    def _load_champion(self) -> ScoringRuntime:
        """The registry's champion in a fresh directory, caught up with the decision log."""
        directory = self._model_root / f"load-{next(self._loads)}"
        runtime = load_runtime(self.settings, self._tracking_uri, directory)
        # the log since the snapshot's cutoff, before this runtime answers anything
        runtime.catch_up(self.store, self.outcome_store)
        # what it replayed, from the start: the gauge read 0 for a ready worker holding
        # 91,826 declarations until its first batch (probe, 2026-12)
        LIVE_DECLARATIONS.set(len(runtime.live) if runtime.live is not None else 0)
        return runtime

    def _champion_version(self) -> ChampionRef | None:
        """The alias's version and its lane thresholds tag, in one registry call."""
        from models.lane_versions import LANE_THRESHOLDS_TAG
        from models.registry import alias_model_version, registry_client

        if self._registry is None:
            self._registry = registry_client(self._tracking_uri)
        mv = alias_model_version(self._registry, self.config.model_name, self.config.model_alias)
        if mv is None:
            return None
        return ChampionRef(str(mv.version), (mv.tags or {}).get(LANE_THRESHOLDS_TAG))

    def _install_thresholds(self, thresholds: LaneThresholds) -> None:
        """Lane thresholds set on the running champion: in force from the next batch."""
        runtime = self.runtime
        if runtime is None:
            raise ParcelriskError("no champion loaded to set lane thresholds on")
        runtime.install_thresholds(thresholds)

    def _install(self, runtime: ScoringRuntime, *, started: bool = False) -> None:
        """Put a loaded champion in service: the next batch scores with it."""
        old = self.runtime
        self.runtime = runtime  # one assignment: each batch reads the runtime once
        _WORKER.not_ready = None
        logger.info(
            "ready: model %s v%s (run %s), thresholds %s, decision store %s",
            runtime.model_name,
            runtime.model_version,
            runtime.run_id,
            runtime.thresholds.version,
            self._store_outage.store,  # without the credentials a URL may carry
        )
        if started:
            return
        CHAMPION_SWITCHES.inc()
        if old is not None and old.model_dir is not None:
            shutil.rmtree(old.model_dir, ignore_errors=True)  # loaded in memory, files unused
        # the old champion's objects were frozen at start-up: let the collector see them again
        # to free the cycles among them, then freeze the new one (one pause per promotion)
        gc.unfreeze()
        freeze_after_load()

    def _mark_undelivered(self, decision_ids: list[str], reason: str) -> None:
        """Recorded decisions whose answer was not sent: marked in the store (in a thread: the
        write may wait for the store's lock), so a retry returns them and auditors see it."""
        UNDELIVERED.inc(len(decision_ids))
        logger.warning("%d decisions recorded, not answered: %s", len(decision_ids), reason)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop (a shutdown hook): write it now
            self._write_undelivered(decision_ids, reason)
            return
        marking = loop.run_in_executor(None, self._write_undelivered, decision_ids, reason)
        self._marking.add(marking)  # keep a reference until it is written
        marking.add_done_callback(self._marking.discard)

    def _write_undelivered(self, decision_ids: list[str], reason: str) -> None:
        try:
            self.store.mark_undelivered(decision_ids, reason)
        except Exception as exc:  # a full disk must not take the worker down: say what is lost
            logger.error(
                "%d undelivered decisions not marked as such: %s: %s",
                len(decision_ids),
                type(exc).__name__,
                exc,
            )

    def __is_ready__(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why this worker is not ready, None when it is: ``__is_ready__`` and ``/readyz``'s
        reason (BentoML's own probe says only "not ready"). No query, at most one stat a
        second: probes come often."""
        if self.runtime is None:
            return _WORKER.not_ready or "no champion model loaded"
        # a damaged store stays so for this worker: its connections hold the damaged file
        # (a restored copy is another file), so it is restored, then the service restarted
        if self._damaged is not None:
            return self._damaged
        # a store file deleted or replaced while no traffic came: every write finds it, but
        # an idle worker answered ready until the first request got its 503 (probe 21)
        now = time.monotonic()
        if now - self._in_place_checked_at >= _IN_PLACE_CHECK_S:
            self._in_place_checked_at = now
            try:
                self.store.check_in_place()
            except StoreReplaced as exc:
                self._store_damaged(exc)
                return self._damaged
        # a store that could not take the last batch (PostgreSQL down, disk full): not ready
        # for a while, so a balancer sends traffic elsewhere; /readyz answered 200 while
        # every /score got 503 (probe, 2026-12). Not asked here: a probe must not wait on a
        # frozen database. After the pause traffic comes back and tries the store again.
        if (refused_at := self._unavailable_at) is not None:
            paused = time.monotonic() - refused_at
            if paused < _UNAVAILABLE_PAUSE_S:
                return self._store_outage.reason(paused)
            self._unavailable_at = None
        # a write waiting on the store's lock for a quarter of the request timeout (a write
        # takes milliseconds; another process holds the lock: a long ingest, a backup, an
        # operator's sqlite3 session): the requests behind it are heading for a 504, and
        # /readyz answered 200 to all of it (probe). Ready again once it is through.
        if self._writes_since:
            waited = time.monotonic() - min(self._writes_since.values(), default=math.inf)
            if waited > self.config.request_timeout_s / 4:
                return (
                    f"decision store {self._store_outage.store}: a write has waited "
                    f"{waited:.0f} s for it (its lock held by another process?); "
                    "not ready until it is through"
                )
        return None

    def _store_damaged(self, exc: BaseException) -> JSONResponse:
        """A store file damaged under the running service (truncated, overwritten): 503 with
        one log line and readiness refused, so a balancer sends traffic elsewhere; it was a
        500 with tracebacks while /readyz answered 200 (probe, 2026-12)."""
        said = (
            str(exc)
            if isinstance(exc, StoreReplaced)
            else f"decision store {self.config.audit_db} is damaged ({exc}): nothing of the "
            "request was stored; restore it, run `parcelrisk audit verify` and restart the service"
        )
        if self._damaged is None:
            logger.error("%s", said)
        self._damaged = said
        return error_response(503, said, code="store.damaged", headers={"Retry-After": "30"})

    # --- scoring ---------------------------------------------------------------------------
    async def _score_and_record(
        self, declarations: list[tuple[Any, Caller | None]]
    ) -> list[dict[str, Any]]:
        """Score one merged batch of validated declarations, each with the caller that sent
        it; answer once it is recorded.

        The store write runs in a thread even for small batches: it may wait for the store's
        write lock (another worker, an auditor's tool, a slow disk), and that wait must hold
        up this batch, not the event loop that answers probes and times requests out.
        """
        started = time.perf_counter()
        runtime = self.runtime  # this batch's champion, whatever is swapped in meanwhile
        assert runtime is not None
        items, records, batch, again = await run_inline_if_small(
            functools.partial(self._score_declarations, runtime),
            declarations,
            self.config.inline_batch_rows,
        )
        if again:  # decisions handed back: any marked undelivered now note their redelivery
            await asyncio.to_thread(self.store.mark_redelivered, again)
        if batch is not None:
            write = object()
            self._writes_since[write] = time.monotonic()
            try:
                taken = await asyncio.to_thread(self.store.record, records, first_wins=True)
            finally:
                del self._writes_since[write]
            self._unavailable_at = None  # the store takes writes again: ready
            self._store_outage.recorded(time.monotonic())
            # into the live entity state before the next batch (a declaration another worker
            # decided meanwhile enters once: its stored row is skipped as this worker's own)
            runtime.recorded(batch, records)
            observe_batch(
                time.perf_counter() - started,
                batch.lanes,
                batch.exploration,
                len(runtime.live) if runtime.live is not None else 0,
                runtime.live.refit_count if runtime.live is not None else 0,
            )
            if taken:
                items = first_decisions(items, records, taken)
        return items

    def _score_declarations(
        self, runtime: ScoringRuntime, sent: list[tuple[Any, Caller | None]]
    ) -> tuple[list[dict[str, Any]], list[DecisionRecord], ScoredBatch | None, list[str]]:
        """Response items, the new decision records and their batch (None when every
        declaration was decided before), and the ids of the decisions handed back, of one
        merged batch (CPU only, no waiting).

        Idempotent: a declaration decided before (by any version of the model: one parcel, one
        decision), sent again unchanged (same ``declaration_id``, same content: a retry after a
        timeout, an outbox replayed, or the same parcel twice in one batch), gets that decision
        back, not a second one; its ``model`` says which version made it.
        """
        declarations = [declaration for declaration, _ in sent]
        runtime.catch_up(
            self.store, self.outcome_store
        )  # what every worker decided since: the live entity state
        columns = RecordColumns(declarations, runtime.contract)
        # the stored JSON: straight from the validated models unless contract extras need the
        # frame's coercion
        extras = bool(runtime.contract and runtime.contract.extras)
        texts = declarations_as_json(columns.frame()) if extras else models_as_json(declarations)
        ids = [d.declaration_id for d in declarations]
        keys = list(zip(ids, texts, strict=True))
        before = self.store.decided(ids, runtime.model_name)
        first: dict[tuple[str, str], int] = {}
        for i, key in enumerate(keys):
            if key not in before:
                first.setdefault(key, i)
        new = list(first.values())
        records: list[DecisionRecord] = []
        batch = None
        if new:
            if len(new) < len(declarations):
                columns = RecordColumns([declarations[i] for i in new], runtime.contract)
            batch = score_frame(columns, runtime)
            known = {e.name for e in runtime.contract.extras} if runtime.contract else set()
            # the extras a declaration must send: those the model reads (the rest are unknown
            # to no loss)
            read = known if runtime.extras_read is None else known & runtime.extras_read
            decided_ids = {declaration_id for declaration_id, _ in before}
            for j, i in enumerate(new):
                if ids[i] in decided_ids:  # decided before with other content: amended
                    batch.warn(j, DECLARATION_AMENDED, AMENDED_WARNING)
                sent_extras = declarations[i].model_extra or {}
                if unknown := set(sent_extras) - known:
                    batch.warn(j, FIELD_IGNORED, ignored_fields_warning(unknown))
                # scored as unknown: the client should know; null or "" is not sent either
                # (it was unsaid, where the key left out was warned, probe 9)
                given = {k for k, v in sent_extras.items() if v is not None and v != ""}
                if missing := read - given:
                    batch.warn(j, EXTRAS_MISSING, missing_extras_warning(missing))
            records = decision_records(
                batch, runtime, [texts[i] for i in new], callers=[sent[i][1] for i in new]
            )
        made = {keys[i]: record for i, record in zip(new, records, strict=True)}
        latest = latest_decisions(before)
        items = [
            made[key].api_item() if key in made else answer_again(before[key], latest)
            for key in keys
        ]
        again = [before[key].decision_id for key in keys if key in before]
        return items, records, batch, again

    async def _score_alone(
        self, declarations: list[tuple[Any, Caller | None]]
    ) -> list[dict[str, Any]]:
        """One request scored as its own batch (``merge_concurrent_requests: false``). Shielded:
        a request cancelled meanwhile lets its batch finish, and marks what it recorded."""
        work = asyncio.ensure_future(self._score_and_record(declarations))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(self._lost_when_recorded)
            raise

    def _lost_when_recorded(self, work: asyncio.Future[list[dict[str, Any]]]) -> None:
        if not work.cancelled() and work.exception() is None:
            self._mark_undelivered([item["decision_id"] for item in work.result()], CANCELLED)

    def rows_in(self, body_bytes: int | None) -> int:
        """Declarations a /score body of this size holds, at the size per declaration of the
        recent requests; a body of unknown size (chunked) counts as a full batch."""
        if body_bytes is None:
            return self.config.max_batch
        return max(1, min(self.config.max_batch, round(body_bytes / self._bytes_per_row)))

    def _admitted(self, n: int) -> None:
        """This request holds ``n`` declarations: stop counting its estimate, learn from it."""
        reservation = _WORKER.release()
        if reservation is not None and reservation.body_bytes and n:
            self._bytes_per_row = 0.8 * self._bytes_per_row + 0.2 * (reservation.body_bytes / n)

    def _queue_full_response(self, rows: int, *, estimated: bool = False) -> JSONResponse | None:
        """429 with Retry-After when ``rows`` more declarations would wait longer than
        ``serve.max_queue_wait_s`` behind the queued ones: shedding by work, not by requests (a
        request of 1,000 declarations weighs 1,000), before the request timeout could fire."""
        wait = self.batcher.expected_wait_s(rows)
        limit = self.config.queue_wait_limit_s
        if wait <= limit:
            return None
        QUEUE_REFUSALS.inc()
        retry = max(1, math.ceil(wait - limit))
        these = f"these {'~' if estimated else ''}{rows} would wait"
        return error_response(
            429,
            f"busy: {self.batcher.queued_rows} declarations queued, {these} "
            f"~{wait:.1f} s (limit {limit:g} s, serve.max_queue_wait_s); retry in {retry} s",
            code="busy.queue",
            headers={"Retry-After": str(retry)},
        )

    def _batch_size_error(self, field: str, what: str, n: int) -> JSONResponse | None:
        """422 unless a request carries 1 to ``serve.max_batch`` items."""
        limit = self.config.max_batch
        if 1 <= n <= limit:
            return None
        return error_response(
            422,
            f"{field}: expected 1 to {limit} {what} per request, got {n}",
            code="batch.size",
            field=field,
            loc=[field],
        )

    @bentoml.api(route="/score", input_spec=ScoreRequest)  # no key but declarations
    async def score(self, declarations: list[Declaration]) -> ScoreResponse:  # type: ignore[valid-type]
        """Score 1..1000 declarations: lane, calibrated risk, expected revenue, reasons."""
        self._admitted(len(declarations))  # from here on weighed by its real size
        if self.runtime is None:
            return _WORKER.not_ready_response()
        if too_many := self._batch_size_error("declarations", "declarations", len(declarations)):
            return too_many
        if outcome := _outcome_field(declarations):
            return error_response(
                422,
                f"{outcome}: outcome fields (inspection results) are not accepted for scoring",
                code="outcome_field",
                field=outcome,
                loc=_loc(outcome),
            )
        # The declaration rules, as the file gate applies them: per request, before merging,
        # so one bad request never fails its neighbours' batch.
        findings = check_request(declarations, self.runtime)
        if twice := _one_id_two_contents(declarations):
            return two_contents_response(twice, findings, declarations)
        if findings.faults:
            return rejection_response(findings, declarations)
        if self.config.merge_concurrent_requests and (
            busy := self._queue_full_response(len(declarations))
        ):
            return busy
        caller = CALLER.get()  # recorded with each decision: who asked
        sent = [(declaration, caller) for declaration in declarations]
        try:
            if self.config.merge_concurrent_requests:
                items = await self.batcher.submit(sent)
            else:
                items = await self._score_alone(sent)
        except StoreReplaced as exc:  # its file deleted or replaced: not ready until restarted
            return self._store_damaged(exc)
        except StoreUnavailable as exc:  # disk full, store locked: nothing of the batch stored
            if not exc.passing:  # a lock held a moment is no reason to leave the balancer
                self._unavailable_at = time.monotonic()
                self._store_outage.refused(str(exc), self._unavailable_at)
            return error_response(
                503, _nothing_stored(exc), code="store.unavailable", headers={"Retry-After": "5"}
            )
        except ParcelriskError as exc:
            # Every declaration passed the checks, and the batch may hold other requests'
            # declarations: a failure here is the service's, not this request's, so a 5xx a
            # client retries (it was a 422, which a "4xx is not retried" policy dropped for
            # the neighbours of a merged batch too; probe 31). Which declaration it was is not
            # known here; logged for the operator.
            logger.error("features failed for a batch of %d: %s", len(declarations), exc)
            return error_response(
                500, str(exc), code="features.failed", field="declarations", loc=["declarations"]
            )
        except sqlite3.DatabaseError as exc:
            if not is_damaged(exc):
                raise
            return self._store_damaged(exc)
        answering([item["decision_id"] for item in items])  # a 504 from here on marks them
        # Plain dicts encoded by orjson: re-validating 1000 response models through pydantic
        # would cost more than the scoring, and json.dumps (JSONResponse) took ~1 ms of CPU per
        # 100 decisions, orjson ~0.1 ms. The tests hold the body to ScoreResponse.
        return Response(orjson.dumps({"decisions": items}), media_type="application/json")

    @bentoml.api(route="/explain", input_spec=ExplainRequest)  # no other key
    def explain(
        self,
        decision_id: str | None = None,
        declaration: Declaration | None = None,  # type: ignore[valid-type]
    ) -> Explanation:
        """Full contribution vector for a stored decision (by id) or for a declaration."""
        runtime = self.runtime
        if runtime is None:
            return _WORKER.not_ready_response()
        if (decision_id is None) == (declaration is None):
            return error_response(
                422, "give exactly one of decision_id or declaration", code="explain.one_of"
            )
        if declaration is not None:
            caller = CALLER.get()
            if caller.role == "scorer":
                # A clearance system gets its reasons with each decision. A declaration nobody
                # scored is a what-if: asked for every declared value, it is an oracle of what
                # goes green, and it leaves no decision behind (probe 20). An auditor's tool.
                return error_response(
                    403,
                    "role 'scorer' may explain a stored decision (decision_id) only: a "
                    "declaration not scored is a what-if, for the auditor role",
                    code="auth.role",
                )
            if outcome := _outcome_field([declaration]):  # refused as /score refuses them
                field = "declaration." + outcome.split(".", 2)[2]
                return error_response(
                    422,
                    f"{field}: outcome fields (inspection results) are not accepted here",
                    code="outcome_field",
                    field=field,
                    loc=_loc(field),
                )
            findings = check_request([declaration], runtime)
            if findings.faults:
                return rejection_response(findings, [declaration])
            # what every worker decided and every result stored since, as /score takes them
            # in: a worker that had scored nothing since explained a seller's next parcel
            # without the three just scored on its sibling (probe 27)
            try:
                runtime.catch_up(self.store, self.outcome_store)
            except StoreReplaced as exc:
                return self._store_damaged(exc)
            except StoreUnavailable as exc:
                return error_response(
                    503,
                    f"the decision store cannot be read now ({exc}): the what-if would miss "
                    "what was decided since; ask again",
                    code="store.unavailable",
                    headers={"Retry-After": "5"},
                )
            except sqlite3.DatabaseError as exc:
                if not is_damaged(exc):
                    raise
                return self._store_damaged(exc)
            frame = declarations_frame([declaration], contract=runtime.contract)
            features, _ = runtime.compute_features(frame)
            X = runtime.model.manifest.matrix_of(features.values, len(features))
            out = explain_matrix(X, features.context, runtime)[0]
            declaration_id = str(frame["declaration_id"].iloc[0])
            # recorded in the log, access log or not: who evaluated which content (a digest of
            # the canonical declaration, personal fields pseudonymised), and what it scored
            logger.info(
                "what-if explanation: key %s (%s), request %s, declaration %s, content sha256 "
                "%s, risk %.6f",
                caller.api_key_id or "-",
                caller.role or "no auth",
                caller.request_id,
                _shown(declaration_id),
                hashlib.sha256(declaration.model_dump_json().encode()).hexdigest()[:16],
                out["risk"],
            )
            return JSONResponse({"decision_id": None, "declaration_id": declaration_id, **out})
        try:
            found = self.review_store.get(decision_id)  # a sync API: BentoML runs it in a thread
        except DamagedRecord as exc:
            return error_response(409, str(exc), code="decision.damaged")
        except ArchiveUnavailable as exc:  # not "not found": the archive may hold it
            return error_response(503, str(exc), code="decision.archive_unavailable")
        if found is None:
            return error_response(
                404, f"decision_id {_shown(decision_id)} not found", code="decision.not_found"
            )
        record, intact = found
        if (
            record.model_version != runtime.model_version
            or record.model_name != runtime.model_name
            or record.manifest_fingerprint != runtime.model.manifest.fingerprint
        ):
            return error_response(
                409,
                f"decision {decision_id} was made by {record.model_name} "
                f"v{record.model_version}; this server runs v{runtime.model_version}. "
                "Explain it with that model version.",
                code="explain.other_model",
            )
        if (record.model_run_id and record.model_run_id != runtime.run_id) or (
            record.model_bundle_sha256 and record.model_bundle_sha256 != runtime.bundle_sha256
        ):  # the same name and version given to another run: a rebuilt registry
            return error_response(
                409,
                f"decision {decision_id} was made by run {record.model_run_id or '?'} (bundle "
                f"{record.model_bundle_sha256[:12] or '?'}); this server's "
                f"{runtime.model_name} v{runtime.model_version} is run {runtime.run_id} "
                f"(bundle {runtime.bundle_sha256[:12] or '?'}): not the model that decided. "
                "Explain it with `parcelrisk audit show` against the registry it was made with.",
                code="explain.other_model",
            )
        X = record.feature_vector.reshape(1, -1)
        # Context (hs6, origin...) is declaration-derived, so recomputing it is exact.
        frame = declarations_frame([record.declaration], contract=runtime.contract)
        features, _ = runtime.compute_features(frame)
        out = explain_matrix(X, features.context_of(X), runtime)[0]
        return JSONResponse(
            {
                "decision_id": record.decision_id,
                "declaration_id": record.declaration_id,
                **out,
                "stored_raw_score": record.raw_score,
                "intact": intact,
            }
        )

    @bentoml.api(route="/decision", input_spec=DecisionRequest)  # no other key
    def decision(self, decision_id: str) -> StoredDecision:
        """A stored decision as recorded (auditor)."""
        return _stored_decision(self, decision_id)

    @bentoml.api(route="/outcomes")
    async def outcomes(
        self,
        outcomes: list[OutcomeResult],  # type: ignore[valid-type]
        skip_unknown: bool = False,
    ) -> OutcomesResponse:
        """Store inspection results (inspector), all or nothing; an identical re-post is a no-op.

        A result listed twice value for value is read once (``repeated_results_read_once``).
        Refused (nothing stored) with every offending row: an unknown declaration id, an id
        twice in the request with results that differ, a result dated before its declaration or in the future (more
        than the 2-day clock skew ahead), an offence type or revenue on a parcel found not
        illicit, a recovered revenue above validate.max_revenue (unset:
        max_value), a result that contradicts the
        one already stored (409 when that is the only problem) unless it carries a
        ``correction`` saying why it replaces it; then it is stored beside the old one (kept
        as it was) and becomes the declaration's current result.

        ``skip_unknown``: results of declarations this service never decided are left out
        and named (``skipped_unknown_ids``) instead of refusing the batch: a parcel sent to
        the clearance system's fallback lane (after a 504 or 503) was inspected without a
        decision, and its result refused its whole batch (probe 31).
        """
        import pandas as pd

        if too_many := self._batch_size_error("outcomes", "results", len(outcomes)):
            return too_many
        raw = pd.DataFrame([o.model_dump() for o in outcomes], dtype="object")
        caller = CALLER.get()
        # who sent them, kept (and chained) with each result: the key's id, never the key
        source = "api:inspector" + (f":{caller.api_key_id}" if caller and caller.api_key_id else "")
        try:
            # the write may wait for the store's lock: not on the event loop
            counts = await asyncio.to_thread(
                store_outcomes,
                self.outcome_store,
                raw,
                source=source,
                limits=self.outcome_limits,
                skip_unknown=skip_unknown,
                name_skipped=True,
            )
        except OutcomesRefused as exc:
            return _refused_outcomes(exc)
        except StoreReplaced as exc:
            return self._store_damaged(exc)
        except StoreUnavailable as exc:  # nothing of the batch stored: send it again later
            if not exc.passing:  # the decisions' store too: told and paused as /score's are
                self._unavailable_at = time.monotonic()
                self._store_outage.refused(str(exc), self._unavailable_at)
            return error_response(
                503, _nothing_stored(exc), code="store.unavailable", headers={"Retry-After": "5"}
            )
        except sqlite3.DatabaseError as exc:
            if not is_damaged(exc):
                raise
            return self._store_damaged(exc)
        self._unavailable_at = None  # the store takes writes again
        self._store_outage.recorded(time.monotonic())
        return JSONResponse(counts)


# Fields not in the contract are named in one warning, a few of them, each cut short: the
# warning is answered and stored with the decision, so a body of 100,000 made-up keys must not
# become megabytes in the audit chain (the body limit bounds the request, not this).
IGNORED_FIELDS_NAMED = 5
IGNORED_FIELD_CHARS = 40


# how long a worker whose store refused a batch answers "not ready" (unless a batch is
# recorded meanwhile)
_UNAVAILABLE_PAUSE_S = 10.0
# how often readiness looks whether the store's file is still the one opened (one stat)
_IN_PLACE_CHECK_S = 1.0


def _nothing_stored(exc: StoreUnavailable) -> str:
    """A store's refusal as a request's answer: whether the store failed on a read or a write,
    nothing of the request was stored (the store says so of its writes only)."""
    said = str(exc)
    return said if "stored" in said else f"{said}; nothing of it was stored"


def missing_extras_warning(names: set[str]) -> str:
    """One warning naming the mapped extras the model uses that a declaration did not send
    (scored as unknown, as a file without them would be refused by `parcelrisk score`)."""
    listed = ", ".join(repr(name) for name in sorted(names))
    return f"mapped extra field(s) {listed} the model uses not sent: scored as unknown"


def ignored_fields_warning(names: set[str]) -> str:
    """One warning naming the fields of a declaration that are not in the contract."""
    shown = [
        repr(name if len(name) <= IGNORED_FIELD_CHARS else name[:IGNORED_FIELD_CHARS] + "...")
        for name in sorted(names)[:IGNORED_FIELDS_NAMED]
    ]
    more = len(names) - len(shown)
    listed = ", ".join(shown) + (f" and {more:,} more" if more else "")
    if len(names) == 1:
        return f"field {listed} is not in the contract: ignored"
    return f"fields {listed} are not in the contract: ignored"


def latest_decisions(
    decided: dict[tuple[str, str], DecisionRecord],
) -> dict[str, DecisionRecord]:
    """The last decision stored for each declaration id among ``decided`` (each content's
    first decision, as ``store.decided`` gives them)."""
    latest: dict[str, DecisionRecord] = {}
    for (declaration_id, _), record in decided.items():
        held = latest.get(declaration_id)
        if held is None or (record.seq or 0) > (held.seq or 0):
            latest[declaration_id] = record
    return latest


def answer_again(record: DecisionRecord, latest: dict[str, DecisionRecord]) -> dict[str, Any]:
    """The answer to a declaration sent again: its stored decision, saying so when a later
    decision of the same id on other content supersedes it (``declaration.superseded``, in
    the answer only: the stored decision is unchanged). An at-least-once queue delivers the
    original late, after its amendment was decided: answered as a first answer, a "last answer
    wins" client put the parcel back in the lane of content no longer declared (probe 31)."""
    item = record.api_item()
    later = latest.get(record.declaration_id)
    if later is not None and later.decision_id != record.decision_id:
        item["warnings"] = [
            *item["warnings"],
            f"superseded: decision {later.decision_id} was made later on other content of "
            f"this declaration id (lane {later.lane}); this is the decision of the content sent",
        ]
        item["warning_codes"] = [*item["warning_codes"], DECLARATION_SUPERSEDED]
    return item


def first_decisions(
    items: list[dict[str, Any]],
    records: list[DecisionRecord],
    taken: dict[tuple[str, str], DecisionRecord],
) -> list[dict[str, Any]]:
    """``items`` with the answers of the declarations another worker decided first (``taken``,
    from ``store.record(first_wins=True)``) swapped for that stored decision: a declaration
    gets one decision, whichever worker scored it first."""
    swap = {
        ours.decision_id: theirs.api_item()
        for ours in records
        if (theirs := taken.get((ours.declaration_id, ours.declaration_json))) is not None
    }
    return [swap.get(item["decision_id"], item) for item in items]


def _one_id_two_contents(declarations: list[Any]) -> list[dict[str, Any]]:
    """The rows of a request holding one ``declaration_id`` with other content than its first
    row: which one is the parcel? One problem each (``two_contents_response``). (The same
    declaration twice is one decision; a corrected one sent in a later request is decided
    anew.)"""
    first: dict[str, int] = {}
    problems = []
    for i, declaration in enumerate(declarations):
        j = first.setdefault(declaration.declaration_id, i)
        if j != i and declarations[j] != declaration:
            problems.append(
                {
                    "loc": ["declarations", i, "declaration_id"],
                    "declaration_id": declaration.declaration_id,
                    "rule": "declaration_id.two_contents",
                    "msg": f"declaration_id: {declaration.declaration_id!r} is also "
                    f"declarations.{j}.declaration_id, with other content",
                }
            )
    return problems


def _outcome_field(declarations: list[Any]) -> str | None:
    """``declarations.I.FIELD`` of the first outcome field sent as an extra key, if any."""
    for i, declaration in enumerate(declarations):
        if declaration.model_extra and (found := _OUTCOMES & declaration.model_extra.keys()):
            return f"declarations.{i}.{sorted(found)[0]}"
    return None


def _refused_outcomes(exc: OutcomesRefused) -> JSONResponse:
    """400 naming every refused row (409 when each one only contradicts a stored result)."""
    problems = [
        {
            "loc": ["outcomes", p.row, p.field],
            # cut as the message cuts it: the row is in "loc"
            "declaration_id": p.declaration_id
            if p.declaration_id is None or len(p.declaration_id) <= SHOWN_ID_CHARS
            else p.declaration_id[:SHOWN_ID_CHARS] + "...",
            "rule": p.rule,
            "msg": p.msg,
        }
        for p in exc.problems
    ]
    only_conflicts = all(p.rule == "result.conflict" for p in exc.problems)
    return error_response(
        409 if only_conflicts else 400,
        describe_problems(exc.problems, lambda row: f"outcomes.{row}"),
        code="outcomes.conflict" if only_conflicts else "outcomes.rules",
        **listed_problems(problems),
    )


def _loc(field: str) -> list[str | int]:
    """``field`` (dotted, e.g. declarations.0.illicit) as a location, rows as numbers."""
    return [int(part) if part.isdigit() else part for part in field.split(".")]


def _shown(value: str) -> str:
    """``value`` quoted for a message, cut to ``SHOWN_ID_CHARS`` with its length said."""
    if len(value) <= SHOWN_ID_CHARS:
        return repr(value)
    return f"{value[:SHOWN_ID_CHARS]!r}... ({len(value):,} characters)"


def _stored_decision(service: ParcelRiskService, decision_id: str) -> JSONResponse:
    try:
        found = service.review_store.get(decision_id)
    except DamagedRecord as exc:
        return error_response(409, str(exc), code="decision.damaged")
    except ArchiveUnavailable as exc:  # not "not found": the archive may hold it
        return error_response(503, str(exc), code="decision.archive_unavailable")
    if found is None:
        return error_response(
            404, f"decision_id {_shown(decision_id)} not found", code="decision.not_found"
        )
    record, intact = found
    delivery = service.store.delivery(decision_id)
    names = (
        service.runtime.model.manifest.names
        if service.runtime is not None
        and record.manifest_fingerprint == service.runtime.model.manifest.fingerprint
        else [f"f{i}" for i in range(len(record.feature_vector))]
    )
    return JSONResponse({**record.stored_item(names, intact), "delivery": delivery})


async def _get_decision(request: Request) -> JSONResponse:
    service = _WORKER.service
    decision_id = request.query_params.get("decision_id")
    if not decision_id:
        return error_response(
            422,
            "decision_id: query parameter required",
            code="decision_id.missing",
            field="decision_id",
            loc=["decision_id"],
        )
    if service is None:
        return _WORKER.not_ready_response()
    return await asyncio.to_thread(_stored_decision, service, decision_id)


ParcelRiskService.mount_asgi_app(
    Starlette(
        routes=[
            Route("/decision", _get_decision, methods=["GET"]),
            *auditor_routes(lambda: _WORKER.service),  # /auditor/...: HTML for the auditors
        ]
    ),
    path="/",
)
# a request's body is read before it takes one of BentoML's concurrency slots (patches, 8.)
install_body_before_slot(
    _WORKER.max_body_bytes, KeyCheck(), admit=_WORKER.admit, release=_WORKER.release
)
# Starlette runs them in this order (the first added is the outermost).
ParcelRiskService.add_asgi_middleware(
    ReadinessMiddleware, not_ready=_WORKER.why_not_ready, serving=_WORKER.serving
)
ParcelRiskService.add_asgi_middleware(ApiKeyMiddleware)
ParcelRiskService.add_asgi_middleware(
    QueueAdmissionMiddleware, admit=_WORKER.admit, release=_WORKER.release
)
ParcelRiskService.add_asgi_middleware(BodyLimitMiddleware, max_body_bytes=_WORKER.max_body_bytes)
ParcelRiskService.add_asgi_middleware(LocalDocsPageMiddleware)
ParcelRiskService.add_asgi_middleware(OpenApiDocumentMiddleware, extras=_WORKER.model_extras)
