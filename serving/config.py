"""The ``serve`` settings: ``ServeConfig`` from ``params.yaml`` and the environment variables
``parcelrisk serve`` hands its worker processes.

The service reads its options from the environment because BentoML starts the workers itself:

- ``PARCELRISK_TRACKING_URI``: MLflow tracking URI of the registry (default: MLflow's own);
- ``PARCELRISK_PARAMS``: params.yaml to read the ``serve`` section from (default ``params.yaml``);
- ``PARCELRISK_MODEL_DIR``: where the champion bundle is materialised (default: a temp dir);
- ``PARCELRISK_AUDIT_DB``: the decision store (default ``serve.audit_db``; ``serving.store``);
- ``PARCELRISK_WORKERS``: worker processes (one model copy each);
- ``PARCELRISK_ACCESS_LOG``, ``PARCELRISK_TRACING``: ``1`` turns on per-request access log
  lines / OpenTelemetry spans (``serve.access_log`` / ``serve.tracing``);
- ``PARCELRISK_REQUEST_TIMEOUT``, ``PARCELRISK_MAX_CONCURRENCY``: 504 after this many seconds,
  429 beyond this many requests in flight (``serve.request_timeout_s`` / ``max_concurrency``);
- the API-key variables of ``serving.auth``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.errors import ParcelriskError
from serving.lanes import LanePolicy

DEFAULT_PARAMS = Path("params.yaml")

TRACKING_URI_ENV = "PARCELRISK_TRACKING_URI"
PARAMS_ENV = "PARCELRISK_PARAMS"
MODEL_DIR_ENV = "PARCELRISK_MODEL_DIR"
AUDIT_DB_ENV = "PARCELRISK_AUDIT_DB"
WORKERS_ENV = "PARCELRISK_WORKERS"
ACCESS_LOG_ENV = "PARCELRISK_ACCESS_LOG"
TRACING_ENV = "PARCELRISK_TRACING"
REQUEST_TIMEOUT_ENV = "PARCELRISK_REQUEST_TIMEOUT"
MAX_CONCURRENCY_ENV = "PARCELRISK_MAX_CONCURRENCY"


@dataclass(frozen=True)
class ServeConfig:
    """``params.yaml`` section ``serve``."""

    lanes: LanePolicy = field(default_factory=LanePolicy)
    max_batch: int = 1000
    max_body_bytes: int = 5_000_000
    reasons_per_decision: int = 5
    model_name: str = "parcel-risk"
    model_alias: str = "champion"
    audit_db: str = "audit.db"
    workers: int = 2
    # Score concurrently waiting requests as one batch (see serving.batching). Online features
    # let a parcel see the other parcels of its batch declared before it, so with merging it
    # may also see those of a concurrent request; the audit store keeps each feature vector.
    merge_concurrent_requests: bool = True
    # Under load, how long a merged batch may wait for the clients the previous batch just
    # answered (serving.batching.MicroBatcher); an idle service never waits. 0 = never wait.
    batch_linger_ms: float = 2.0
    # Batches up to this many rows are scored on the worker's event loop (no thread hop, no
    # GIL hand-off), bigger ones in a thread so the loop keeps answering; 0 = always a thread.
    inline_batch_rows: int = 32
    # One log line per HTTP request. Off by default: writing it costs ~10% of a worker's event
    # loop on single-declaration traffic, and every decision is already in the audit store and
    # every request in /metrics.
    access_log: bool = False
    # OpenTelemetry server spans per request. BentoML samples none unless tracing is configured
    # (BENTOML_CONFIG), yet building them costs ~10% of the event loop; turn on with exporting.
    tracing: bool = False
    # A request not answered in this time gets 504, so the clearance system can fall back to
    # its default lane instead of holding the parcel; minutes would help nobody.
    request_timeout_s: float = 10.0
    # Requests in flight across all workers; beyond it the service answers 429 at once (load
    # shedding) instead of queueing work that would only time out.
    max_concurrency: int = 512

    def __post_init__(self) -> None:
        positive = ("max_batch", "max_body_bytes", "workers", "max_concurrency")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.inline_batch_rows, int) or not 0 <= self.inline_batch_rows <= 256:
            raise ValueError(
                f"inline_batch_rows must be within 0..256, got {self.inline_batch_rows!r}"
            )
        if not 0 <= self.batch_linger_ms <= 100:
            raise ValueError(f"batch_linger_ms must be within 0..100, got {self.batch_linger_ms}")
        if not 0 < self.request_timeout_s <= 3600:
            raise ValueError(
                f"request_timeout_s must be within 0..3600 seconds, got {self.request_timeout_s}"
            )
        if self.max_concurrency < self.workers:
            raise ValueError(
                f"max_concurrency ({self.max_concurrency}) must be at least workers ({self.workers})"
            )


def load_serve_config(params_path: Path | None = DEFAULT_PARAMS) -> ServeConfig:
    """The ``serve`` section of ``params.yaml``; defaults if the file or section is absent."""
    import yaml

    section: dict[str, Any] = {}
    if params_path is not None and Path(params_path).exists():
        params = yaml.safe_load(Path(params_path).read_text()) or {}
        section = dict(params.get("serve") or {})
        # the registered name is promote's; serve only says which alias to load
        if "model_name" not in section and (params.get("promote") or {}).get("model_name"):
            section["model_name"] = params["promote"]["model_name"]
    lane_keys = {"exploration_rate", "exploration_seed", "exploration_lane", "aeo_risk_discount"}
    known = lane_keys | {f for f in ServeConfig.__dataclass_fields__ if f != "lanes"}
    unknown = set(section) - known
    if unknown:
        raise ParcelriskError(f"params 'serve': unknown key(s) {', '.join(sorted(unknown))}")
    try:
        lanes = LanePolicy(**{k: v for k, v in section.items() if k in lane_keys})
        return ServeConfig(lanes=lanes, **{k: v for k, v in section.items() if k not in lane_keys})
    except (TypeError, ValueError) as exc:
        raise ParcelriskError(f"params 'serve': {exc}") from exc
