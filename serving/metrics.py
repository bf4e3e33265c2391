"""The service's own Prometheus metrics (beside BentoML's), served on ``/metrics``."""

from __future__ import annotations

import bentoml
import numpy as np

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
CHAMPION_SWITCHES = bentoml.metrics.Counter(
    name="parcelrisk_champion_switches_total",
    documentation="Newly promoted champions this worker loaded and swapped in while serving.",
)
QUEUE_REFUSALS = bentoml.metrics.Counter(
    name="parcelrisk_queue_refusals_total",
    documentation="Requests answered 429 because their declarations would wait too long.",
)

UNDELIVERED = bentoml.metrics.Counter(
    name="parcelrisk_undelivered_decisions_total",
    documentation="Decisions recorded whose answer was not sent (request timed out or cancelled).",
)

# The live entity state grows with every declaration scored (by any worker: each catches up on
# the others') until a new champion's snapshot takes them in or they fold after the longest
# window: about 0.46 KB each per worker (docs/RELIABILITY.md). One value per worker process.
LIVE_DECLARATIONS = bentoml.metrics.Gauge(
    name="parcelrisk_live_declarations",
    documentation="Declarations this worker's live entity state holds beyond its snapshot "
    "(as of the last batch's catch-up, which appends the batch before it).",
    multiprocess_mode="liveall",
)
# Reference prices and description models refitted for refit periods after the snapshot's
# (features.pipeline.refit): one per period per family normally; a count climbing within a
# period means evidence keeps arriving over refit_lag_days late, each costing a refit.
LIVE_REFITS = bentoml.metrics.Gauge(
    name="parcelrisk_live_refits",
    documentation="Refits of reference prices and description models this worker's live "
    "entity state has made since it started (kept fits, all families).",
    multiprocess_mode="liveall",
)


def observe_batch(
    seconds: float,
    lanes: np.ndarray,
    exploration: np.ndarray,
    live_declarations: int,
    live_refits: int = 0,
) -> None:
    """Count one scored and recorded batch: its time, its size, its decisions by lane, and
    what the live state holds after it."""
    LIVE_DECLARATIONS.set(live_declarations)
    LIVE_REFITS.set(live_refits)
    SCORING_SECONDS.labels(endpoint="score").observe(seconds)
    BATCH_ROWS.observe(len(lanes))
    keys, counts = np.unique(
        np.char.add(lanes.astype(str), np.where(exploration, "|1", "|0")), return_counts=True
    )
    for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
        lane, flag = key.split("|")
        DECISIONS.labels(lane=lane, exploration="true" if flag == "1" else "false").inc(count)
