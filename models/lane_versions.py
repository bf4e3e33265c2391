"""Lane thresholds versions of a registered model: set as a decision, not a retrain.

Training writes the first version into the bundle (and ``thresholds.json`` on the run). Each
``parcelrisk lanes set`` writes a new one on the same model version, in two places:

- the run's artifact ``thresholds/<version>.json``: the thresholds with why, when, by whom, on
  what traffic they were fitted and the version they replace (the history an auditor reads, and
  what recomputing a decision made under that version resolves its cut-offs from);
- the model version's tags ``lane_thresholds`` (the thresholds as JSON: the one in force) and
  ``thresholds_version``. ``models.registry.load_version`` applies the tag, and a running
  service's champion check reads it with the alias (``serving.rollover``), so a set takes effect
  without a restart.

The artifact is written before the tag: a version can be in force only once its record exists.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError
from models.bundle import LaneThresholds
from models.thresholds import parse_thresholds, thresholds_from_dict, thresholds_json

if TYPE_CHECKING:
    from mlflow import MlflowClient

LANE_THRESHOLDS_TAG = "lane_thresholds"
THRESHOLDS_VERSION_TAG = "thresholds_version"
THRESHOLDS_DIR = "thresholds"
TRAINING_THRESHOLDS = "thresholds.json"  # what training logged (models.registry.log_training)


def tagged_thresholds(tags: dict[str, str]) -> LaneThresholds | None:
    """The thresholds a model version's ``lane_thresholds`` tag puts in force (None: no tag,
    the bundle's apply); ``ParcelriskError`` if the tag cannot be read."""
    text = tags.get(LANE_THRESHOLDS_TAG)
    if text is None:
        return None
    try:
        return parse_thresholds(text)
    except ParcelriskError as exc:
        raise ParcelriskError(f"tag {LANE_THRESHOLDS_TAG} unreadable: {exc}") from None


def check_applies(thresholds: LaneThresholds, model_thresholds: LaneThresholds) -> None:
    """Refuse thresholds on a model that ranks on another priority (risk vs revenue)."""
    if thresholds.objective != model_thresholds.objective:
        raise ParcelriskError(
            f"lane thresholds {thresholds.version} rank on {thresholds.objective}, the model "
            f"ranks on {model_thresholds.objective}"
        )


def _read_json(client: MlflowClient, run_id: str, path: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="parcelrisk-thresholds-") as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        return json.loads(Path(local).read_text())


def thresholds_history(client: MlflowClient, run_id: str) -> list[dict[str, Any]]:
    """Every thresholds version of a run, oldest first: training's (``thresholds.json``), then
    each ``lanes set`` record (``thresholds/<version>.json``) by ``set_at``."""
    from mlflow.exceptions import MlflowException

    history: list[dict[str, Any]] = []
    try:
        trained = _read_json(client, run_id, TRAINING_THRESHOLDS)
        history.append({**trained, "set_at": "", "set_by": "training", "reason": "trained"})
    except (MlflowException, OSError, ValueError):
        pass  # a run logged without it: the bundle's are still in force
    try:
        listed = client.list_artifacts(run_id, THRESHOLDS_DIR)
    except MlflowException:
        listed = []
    records = []
    for info in listed:
        if info.is_dir or not info.path.endswith(".json"):
            continue
        try:
            records.append(_read_json(client, run_id, info.path))
        except (MlflowException, OSError, ValueError):
            continue  # one unreadable record must not hide the others
    history += sorted(records, key=lambda r: str(r.get("set_at", "")))
    return history


def resolve_thresholds(client: MlflowClient, run_id: str, version: str) -> LaneThresholds | None:
    """The thresholds recorded on a run under ``version`` (set or trained); None if none."""
    from mlflow.exceptions import MlflowException

    for path in (f"{THRESHOLDS_DIR}/{version}.json", TRAINING_THRESHOLDS):
        try:
            data = _read_json(client, run_id, path)
        except (MlflowException, OSError, ValueError):
            continue
        if isinstance(data, dict) and str(data.get("version")) == str(version):
            return thresholds_from_dict(data)
    return None


def last_recorded_thresholds(
    client: MlflowClient, run_id: str, model_thresholds: LaneThresholds
) -> LaneThresholds | None:
    """The newest readable thresholds version recorded on a run (``thresholds_history``) that
    fits the model; None when there is none."""
    for record in reversed(thresholds_history(client, run_id)):
        try:
            thresholds = thresholds_from_dict(record)
            check_applies(thresholds, model_thresholds)
        except (ParcelriskError, KeyError, TypeError, ValueError):
            continue
        return thresholds
    return None


def write_thresholds_version(
    client: MlflowClient,
    name: str,
    version: str,
    thresholds: LaneThresholds,
    *,
    previous: str,
    reason: str,
    set_by: str,
) -> dict[str, Any]:
    """Record ``thresholds`` on the model version's run and put them in force; the record."""
    mv = client.get_model_version(name, version)
    record = {
        **asdict(thresholds),
        "reason": reason,
        "set_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "set_by": set_by,
        "previous_version": previous,
        "model": {"name": name, "version": str(version)},
    }
    client.log_dict(mv.run_id, record, f"{THRESHOLDS_DIR}/{thresholds.version}.json")
    client.set_model_version_tag(name, version, LANE_THRESHOLDS_TAG, thresholds_json(thresholds))
    client.set_model_version_tag(name, version, THRESHOLDS_VERSION_TAG, thresholds.version)
    return record
