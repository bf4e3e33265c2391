"""What the model page shows of a model version, from its MLflow run: downloaded once per
version and kept for the life of the worker (a version's run never changes)."""

from __future__ import annotations

import base64
import csv
import json
import logging
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from serving.audit.safe_text import display_uri

logger = logging.getLogger(__name__)

SHAP_TABLE = "shap/shap_mean_abs.csv"
SHAP_SUMMARY = "shap/shap_summary.png"
CALIBRATION_TABLE = "tables/calibration_random.csv"
PLOTS = "plots"
PROMOTION_PREFIX = "promotion."


@dataclass(frozen=True)
class ModelEvidence:
    name: str
    version: str
    run_id: str
    run_link: str | None  # the run in the MLflow UI, when the tracking server has one
    tags: dict[str, str]
    shap_mean_abs: list[tuple[str, float]] = field(default_factory=list)
    calibration: list[dict[str, float]] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # artifact path -> data: URI (PNG)
    missing: list[str] = field(default_factory=list)  # artifacts the run does not have
    # every gate decision about the version, oldest first (``models.promotion``): None when
    # the registry could not be read for it just now (said on the page, never an error)
    history: list[dict[str, Any]] | None = field(default_factory=list)

    @property
    def promotion(self) -> dict[str, str]:
        return {
            k.removeprefix(PROMOTION_PREFIX): v
            for k, v in sorted(self.tags.items())
            if k.startswith(PROMOTION_PREFIX)
        }

    @property
    def promotion_metrics(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.promotion.get("metrics", "{}")))
        except (ValueError, TypeError):
            return {}


def web_link(url: str | None) -> str | None:
    """``url`` when a browser can open it (an MLflow UI page), without any user and password
    in it, else None (a ``runs:/`` URI)."""
    return display_uri(url) if url and url.startswith(("http://", "https://")) else None


def read_shap_table(path: Path) -> list[tuple[str, float]]:
    with path.open(newline="") as f:
        return [(row["feature"], float(row["mean_abs_shap"])) for row in csv.DictReader(f)]


def read_calibration_table(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as f:
        return [
            {k: float(row[k]) for k in ("parcels", "mean_prob", "hit_rate")}
            for row in csv.DictReader(f)
        ]


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def fetch_model_evidence(
    client: Any, tracking_uri: str | None, name: str, version: str, dst: Path
) -> ModelEvidence:
    """The version's run id, tags, SHAP table and summary, calibration bins and plots.

    Raises ``mlflow.exceptions.MlflowException`` when the version does not exist; an artifact
    the run lacks is listed in ``missing``."""
    from mlflow.exceptions import MlflowException

    from models.registry import resolve_tracking_uri
    from serving.audit.models import run_url

    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    dst.mkdir(parents=True, exist_ok=True)

    def download(artifact: str) -> Path | None:
        try:
            return Path(client.download_artifacts(mv.run_id, artifact, str(dst)))
        except (MlflowException, OSError) as exc:
            logger.info("model %s v%s: artifact %s unavailable: %s", name, version, artifact, exc)
            return None

    missing: list[str] = []
    images: dict[str, str] = {}
    shap_table: list[tuple[str, float]] = []
    calibration: list[dict[str, float]] = []
    if (path := download(SHAP_TABLE)) is not None:
        shap_table = read_shap_table(path)
    else:
        missing.append(SHAP_TABLE)
    if (path := download(CALIBRATION_TABLE)) is not None:
        calibration = read_calibration_table(path)
    else:
        missing.append(CALIBRATION_TABLE)
    if (path := download(SHAP_SUMMARY)) is not None:
        images[SHAP_SUMMARY] = png_data_uri(path)
    else:
        missing.append(SHAP_SUMMARY)
    if (plots := download(PLOTS)) is not None and plots.is_dir():
        for png in sorted(plots.glob("*.png")):
            images[f"{PLOTS}/{png.name}"] = png_data_uri(png)
    else:
        missing.append(PLOTS)
    return ModelEvidence(
        name=name,
        version=str(version),
        run_id=mv.run_id,
        run_link=web_link(
            run_url(resolve_tracking_uri(tracking_uri), run.info.experiment_id, mv.run_id)
        ),
        tags=dict(mv.tags or {}),
        shap_mean_abs=shap_table,
        calibration=calibration,
        images=images,
        missing=missing,
    )


class ModelEvidenceCache:
    """One download per (name, version) per worker; the promotion tags are read each time
    (a later promotion adds ``promotion.replaced_by`` to an older version)."""

    def __init__(self, tracking_uri: str | None, root: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None
        # under the worker's model root when given: removed with it at shutdown
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self._root = Path(tempfile.mkdtemp(prefix="parcelrisk-auditor-", dir=root))
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str], ModelEvidence] = {}

    def client(self) -> Any:
        from models.registry import registry_client

        if self._client is None:
            self._client = registry_client(self.tracking_uri)
        return self._client

    def get(self, name: str, version: str) -> ModelEvidence:
        key = (name, str(version))
        with self._lock:  # one download at a time: two pages of one version fetch it once
            if key not in self._versions:
                self._versions[key] = fetch_model_evidence(
                    self.client(),
                    self.tracking_uri,
                    name,
                    str(version),
                    self._root / f"{len(self._versions)}",
                )
            cached = self._versions[key]
        tags = dict(self.client().get_model_version(name, str(version)).tags or {})
        return replace(cached, tags=tags, history=self._history(name, str(version)))

    def _history(self, name: str, version: str) -> list[dict[str, Any]] | None:
        """Read each time, as the tags: a later promotion appends a 'replaced' record."""
        from models.promotion import promotion_history

        try:
            return promotion_history(self.client(), name, version)
        except Exception as exc:  # the page shows what it has; the history says it is missing
            logger.warning("promotion history of %s v%s unavailable: %s", name, version, exc)
            return None

    def run_id(self, name: str, version: str) -> str:
        """The run of a version, without downloading its artifacts."""
        with self._lock:
            if (name, str(version)) in self._versions:
                return self._versions[(name, str(version))].run_id
        return str(self.client().get_model_version(name, str(version)).run_id)
