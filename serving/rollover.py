"""Champion roll-over: a running worker moves to a newly promoted model without downtime.

Each worker asks the registry every ``serve.champion_check_s`` seconds which version the alias
(``serve.model_alias``) points at. When it moved, the worker loads that version and its
entity-state snapshot beside the current champion, in a background thread while the current
one goes on scoring, replays the decision and result log from the new snapshot's cutoff on
(``ScoringRuntime.catch_up``: what the snapshot does not hold), and swaps it in. The swap is
one reference assignment between batches: a batch reads the runtime once and keeps it for
its features, its scores and its record, so no request is scored half by one model and half by
the other, and none waits for the load or fails because of it. Each worker switches on its own
within one check interval; a decision always names the model version that made it.

A version that fails to load is logged, and the current champion goes on serving. A broken
bundle or a snapshot that does not match is left alone until the alias moves again. A failure
that can pass (``load_failure_passes``: the decision store unavailable, PostgreSQL restarting,
the registry or the network down or timing out, a download's I/O error) is tried again at the
next checks, each gap twice the last (1, 2, 4 ... up to ``RETRY_MAX_CHECKS`` intervals), and
logged each time: a one-second database restart during the load stranded one replica on the old
model until someone restarted it, while the others served the new one (probe 41). A worker that
started without a champion (not ready) becomes ready when one is promoted.

The same poll reads the alias's ``lane_thresholds`` tag (``parcelrisk lanes set``; one registry
call returns the version and its tags). When only the thresholds changed, they are installed on
the running runtime (``ScoringRuntime.install_thresholds``), the model untouched: a batch reads
them once, so the next batch lanes on, and records, the new version. A tag that cannot be read,
or does not fit the model, is logged once and ignored: the current thresholds go on serving.

Why polling and not a push (a reload endpoint): a request reaches one worker of one replica,
the registry is what every worker and replica can read, and a missed signal cannot strand a
worker on an old model: at worst it switches one interval later.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.bundle import LaneThresholds
    from serving.scoring import ScoringRuntime

logger = logging.getLogger(__name__)

# A load that failed on a cause that can pass is tried again after 1, 2, 4, 8 checks: at most
# every 8 (4 min at the default 30 s), so a registry down for an hour is not hammered, and a
# replica is back on the champion within minutes of it returning.
RETRY_MAX_CHECKS = 8

# MLflow's error codes of a request that may succeed later (server errors, a network error the
# REST client reports as INTERNAL_ERROR, throttling); a version or run not found, or refused
# credentials, stay so until someone acts.
_PASSING_MLFLOW_CODES = frozenset(
    {
        "INTERNAL_ERROR",
        "TEMPORARILY_UNAVAILABLE",
        "IO_ERROR",
        "SERVICE_UNDER_MAINTENANCE",
        "WORKSPACE_TEMPORARILY_UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "CANCELLED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "REQUEST_LIMIT_EXCEEDED",
        "COULD_NOT_ACQUIRE_LOCK",
    }
)
# OSErrors that say a file is not where it should be, or not readable: the artifact's, not a
# passing fault (a full disk, a reset connection, a timeout are)
_LASTING_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def load_failure_passes(exc: BaseException) -> bool:
    """Whether a champion load that raised ``exc`` may succeed if tried again: the decision
    store, the registry or the network was unavailable, not the version broken.

    Looks through the causes: the registry wraps a failed download in a ``ParcelriskError``
    naming the artifact, raised from the network's or MLflow's error."""
    from serving.sqlite_store import StoreReplaced, StoreUnavailable

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, StoreReplaced):  # the store's file swapped: a restart is needed
            return False
        if isinstance(cause, StoreUnavailable):
            return True
        if isinstance(cause, OSError) and not isinstance(cause, _LASTING_OS_ERRORS):
            return True  # ConnectionError, TimeoutError, requests' errors, a full disk
        # locked, busy, disk I/O; a damaged file is a DatabaseError, not this
        if isinstance(cause, sqlite3.OperationalError):
            return True
        if _is_passing_driver_error(cause):
            return True
        if (
            type(cause).__module__.startswith("mlflow")
            and getattr(cause, "error_code", None) in _PASSING_MLFLOW_CODES
        ):
            return True
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return False


def _is_passing_driver_error(exc: BaseException) -> bool:
    """A PostgreSQL connection lost or refused (psycopg's OperationalError), when psycopg is
    installed: the store may not have wrapped it yet."""
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError)


@dataclass
class Switch:
    """One roll-over: which version went in, and what loading and replaying it cost."""

    from_version: str | None
    to_version: str
    load_s: float


@dataclass(frozen=True)
class ChampionRef:
    """What the registry alias says: the model version, and the thresholds tag on it (JSON
    text; None: the model's own thresholds)."""

    version: str
    lane_thresholds: str | None = None


@dataclass
class ThresholdsSwitch:
    """New lane thresholds installed on the running model version."""

    version: str
    from_thresholds: str | None
    to_thresholds: str


class ChampionWatcher:
    """Polls the registry for the champion's version and hands a new one, loaded and caught
    up, to ``install``.

    ``current``: the version serving now (None when not ready); ``champion``: what the registry
    alias points at (a version, or a ``ChampionRef`` with its thresholds tag; None when there is
    none); ``load``: the loaded and caught-up runtime of the alias's version (raises when it
    cannot); ``install``: puts it in service. ``current_thresholds`` / ``install_thresholds``:
    the thresholds version serving now, and putting others in force on the running runtime
    (raises when they do not fit it); without them a thresholds tag is not followed.
    """

    def __init__(
        self,
        *,
        current: Callable[[], str | None],
        champion: Callable[[], str | ChampionRef | None],
        load: Callable[[], ScoringRuntime],
        install: Callable[[ScoringRuntime], None],
        interval_s: float,
        current_thresholds: Callable[[], str | None] | None = None,
        install_thresholds: Callable[[LaneThresholds], None] | None = None,
    ) -> None:
        self._current = current
        self._champion = champion
        self._load = load
        self._install = install
        self._current_thresholds = current_thresholds
        self._install_thresholds = install_thresholds
        self.interval_s = interval_s
        self.failed_version: str | None = None  # not retried until the alias moves
        # a version whose load failed on a cause that can pass: tried again at a later check
        self.retry_version: str | None = None
        self.retry_failures = 0  # its failed loads in a row
        self._retry_wait = 0  # checks to let pass before the next try
        self.failed_thresholds: str | None = None  # a bad tag: not retried until it changes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._check_lock = threading.Lock()  # one load at a time (a check may also be called)

    def check(self) -> Switch | ThresholdsSwitch | None:
        """One poll: load and install the alias's version if it is new, else install its
        thresholds if they changed. Never raises."""
        with self._check_lock:
            try:
                ref = self._champion()
            except Exception as exc:  # registry unreachable: keep serving, ask again later
                logger.warning("champion check failed: %s: %s", type(exc).__name__, exc)
                return None
            if isinstance(ref, str):
                ref = ChampionRef(ref)
            current = self._current()
            if ref is not None and ref.version == current:
                return self._check_thresholds(ref)
            wanted = ref.version if ref is not None else None
            if wanted is None or wanted == self.failed_version:
                return None
            if wanted != self.retry_version:  # the alias moved: a fresh start
                self.retry_version, self.retry_failures, self._retry_wait = None, 0, 0
            elif self._retry_wait > 0:
                self._retry_wait -= 1
                return None
            logger.info(
                "champion moved to v%s (%s): loading it%s",
                wanted,
                f"serving v{current}" if current is not None else "nothing served yet",
                f" (try {self.retry_failures + 1})" if self.retry_failures else "",
            )
            started = time.perf_counter()
            try:
                runtime = self._load()
            except Exception as exc:  # a broken version must not take the worker down
                self._load_failed(wanted, current, exc)
                return None
            self.failed_version = None
            self.retry_version, self.retry_failures, self._retry_wait = None, 0, 0
            self._install(runtime)
            switch = Switch(current, runtime.model_version, time.perf_counter() - started)
            logger.info(
                "now serving v%s (was v%s): loaded and caught up in %.1f s",
                switch.to_version,
                switch.from_version,
                switch.load_s,
            )
            return switch

    def _load_failed(self, wanted: str, current: str | None, exc: Exception) -> None:
        """Log a failed load; leave the version until the alias moves, or, when the failure
        can pass, try it again after 1, 2, 4 ... checks (at most ``RETRY_MAX_CHECKS``)."""
        serving = (
            f"v{current} goes on serving"
            if current is not None
            else "nothing is served (/readyz stays 503)"
        )
        if not load_failure_passes(exc):
            self.failed_version = wanted
            self.retry_version, self.retry_failures, self._retry_wait = None, 0, 0
            logger.error(
                "champion v%s not loaded, %s: %s: %s (not tried again until the alias moves)",
                wanted,
                serving,
                type(exc).__name__,
                exc,
            )
            return
        self.retry_version = wanted
        self.retry_failures += 1
        gap = min(2 ** (self.retry_failures - 1), RETRY_MAX_CHECKS)
        self._retry_wait = gap - 1
        logger.error(
            "champion v%s not loaded (try %d), %s: %s: %s; trying again in %s",
            wanted,
            self.retry_failures,
            serving,
            type(exc).__name__,
            exc,
            f"{gap * self.interval_s:g} s" if self.interval_s > 0 else f"{gap} check(s)",
        )

    def _check_thresholds(self, ref: ChampionRef) -> ThresholdsSwitch | None:
        """Install the tag's thresholds on the running version if they are new to it."""
        from features.errors import ParcelriskError
        from models.thresholds import parse_thresholds

        text = ref.lane_thresholds
        if (
            text is None
            or self._install_thresholds is None
            or self._current_thresholds is None
            or text == self.failed_thresholds
        ):
            return None
        serving = self._current_thresholds()
        try:
            thresholds = parse_thresholds(text)
            if thresholds.version == serving:
                return None
            self._install_thresholds(thresholds)
        except (ParcelriskError, ValueError, TypeError) as exc:
            self.failed_thresholds = text
            logger.error(
                "lane thresholds tag on v%s ignored, thresholds %s go on serving: %s",
                ref.version,
                serving,
                exc,
            )
            return None
        self.failed_thresholds = None
        logger.info(
            "lane thresholds %s in force on v%s (were %s): red >= %.6g (%.4g of traffic), "
            "yellow >= %.6g (%.4g)",
            thresholds.version,
            ref.version,
            serving,
            thresholds.red_cutoff,
            thresholds.red_rate,
            thresholds.yellow_cutoff,
            thresholds.yellow_rate,
        )
        return ThresholdsSwitch(ref.version, serving, thresholds.version)

    def start(self) -> None:
        """Check every ``interval_s`` in a daemon thread (a worker exits without waiting)."""
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 60)
            self._thread = None
