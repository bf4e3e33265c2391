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

A version that fails to load (a broken bundle, a snapshot that does not match) is logged and
left alone until the alias moves again: the current champion goes on serving. A worker that
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.bundle import LaneThresholds
    from serving.scoring import ScoringRuntime

logger = logging.getLogger(__name__)


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
            logger.info(
                "champion moved to v%s (%s): loading it",
                wanted,
                f"serving v{current}" if current is not None else "nothing served yet",
            )
            started = time.perf_counter()
            try:
                runtime = self._load()
            except Exception as exc:  # a broken version must not take the worker down
                self.failed_version = wanted
                logger.error(
                    "champion v%s not loaded, %s: %s: %s",
                    wanted,
                    f"v{current} goes on serving"
                    if current is not None
                    else "nothing is served (/readyz stays 503)",
                    type(exc).__name__,
                    exc,
                )
                return None
            self.failed_version = None
            self._install(runtime)
            switch = Switch(current, runtime.model_version, time.perf_counter() - started)
            logger.info(
                "now serving v%s (was v%s): loaded and caught up in %.1f s",
                switch.to_version,
                switch.from_version,
                switch.load_s,
            )
            return switch

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
