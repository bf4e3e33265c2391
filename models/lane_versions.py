"""Lane thresholds versions of a registered model: set as a decision, not a retrain.

Training writes the first version into the bundle (and ``thresholds.json`` on the run). Each
``parcelrisk lanes set`` writes a new one on the same model version, in two places:

- a record on the run: the thresholds with why, when, by whom, on what traffic they were fitted
  and the version they replace (the history an auditor reads, and what recomputing a decision
  made under that version resolves its cut-offs from). Records are append-only: the version id
  is a hash of the cut-offs, so going back to earlier cut-offs repeats an earlier version, and
  that set is a record of its own. A version's first record is ``thresholds/<version>.json``,
  each later set of it ``thresholds/<version>/<UTC stamp>-<random>.json``;
- the model version's tags ``lane_thresholds`` (the thresholds as JSON: the one in force) and
  ``thresholds_version``. ``models.registry.load_version`` applies the tag, and a running
  service's champion check reads it with the alias (``serving.rollover``), so a set takes effect
  without a restart.

The artifact is written before the tag: a version can be in force only once its record exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError
from models.bundle import LaneThresholds
from models.run_records import read_run_json
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


def _listed_files(client: MlflowClient, run_id: str, path: str) -> list[str]:
    """The artifact paths of the files directly under ``path`` on a run (none: [])."""
    from mlflow.exceptions import MlflowException

    try:
        return [info.path for info in client.list_artifacts(run_id, path) if not info.is_dir]
    except MlflowException:
        return []


def _record_paths(client: MlflowClient, run_id: str) -> list[str]:
    """Every ``lanes set`` record on a run: first records and repeats (module docstring)."""
    from mlflow.exceptions import MlflowException

    try:
        listed = client.list_artifacts(run_id, THRESHOLDS_DIR)
    except MlflowException:
        return []
    paths = []
    for info in listed:
        if info.is_dir:
            paths += _listed_files(client, run_id, info.path)
        else:
            paths.append(info.path)
    return [path for path in paths if path.endswith(".json")]


def thresholds_history(client: MlflowClient, run_id: str) -> list[dict[str, Any]]:
    """Every thresholds record of a run, oldest first: training's (``thresholds.json``), then
    each ``lanes set`` record by ``set_at``, a version set twice appearing twice."""
    from mlflow.exceptions import MlflowException

    history: list[dict[str, Any]] = []
    try:
        trained = read_run_json(client, run_id, TRAINING_THRESHOLDS)
        history.append({**trained, "set_at": "", "set_by": "training", "reason": "trained"})
    except (MlflowException, OSError, ValueError):
        pass  # a run logged without it: the bundle's are still in force
    records = []  # (set_at, path, record): the path orders records of the same set_at
    for path in _record_paths(client, run_id):
        try:
            record = read_run_json(client, run_id, path)
        except (MlflowException, OSError, ValueError):
            continue  # one unreadable record must not hide the others
        records.append((str(record.get("set_at", "")), path, record))
    history += [record for *_, record in sorted(records, key=lambda r: r[:2])]
    return history


def _version_paths(client: MlflowClient, run_id: str, version: str) -> Iterator[str]:
    """The records of one version, earliest first, then training's; lazily, so that the
    repeats are listed only when the first record cannot be read."""
    yield f"{THRESHOLDS_DIR}/{version}.json"
    yield from sorted(_listed_files(client, run_id, f"{THRESHOLDS_DIR}/{version}"))
    yield TRAINING_THRESHOLDS


def resolve_thresholds(client: MlflowClient, run_id: str, version: str) -> LaneThresholds | None:
    """The thresholds recorded on a run under ``version`` (set or trained), from its earliest
    readable record (all records of a version hold the same cut-offs); None if none."""
    from mlflow.exceptions import MlflowException

    for path in _version_paths(client, run_id, version):
        try:
            data = read_run_json(client, run_id, path)
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


def _new_record_path(client: MlflowClient, run_id: str, version: str, now: datetime) -> str:
    """Where a new record of ``version`` goes: never onto an existing record.

    ``log_dict`` overwrites, and a set that repeated earlier cut-offs (the same version id)
    used to replace that version's record: who set it, when and why were lost while the
    decisions laned under it still point to it. The first record keeps the path every reader
    (older ones included) resolves a decision's version from; a repeat goes beside it under a
    name no other set can take. Listing errors propagate: unsure what exists, write nothing."""
    first = f"{THRESHOLDS_DIR}/{version}.json"
    listed = client.list_artifacts(run_id, THRESHOLDS_DIR)
    if all(info.path != first for info in listed):
        return first
    return f"{THRESHOLDS_DIR}/{version}/{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.json"


def write_thresholds_version(
    client: MlflowClient,
    name: str,
    version: str,
    thresholds: LaneThresholds,
    *,
    previous: str,
    reason: str,
    set_by: str,
) -> tuple[str, dict[str, Any]]:
    """Record ``thresholds`` on the model version's run and put them in force: the record's
    artifact path and the record."""
    mv = client.get_model_version(name, version)
    now = datetime.now(UTC)
    record = {
        **asdict(thresholds),
        "reason": reason,
        # to the microsecond: the history is ordered by it, and sets a second apart are common
        # in a script; older records' seconds sort before any record of their second
        "set_at": now.isoformat(timespec="microseconds"),
        "set_by": set_by,
        "previous_version": previous,
        "model": {"name": name, "version": str(version)},
    }
    path = _new_record_path(client, mv.run_id, thresholds.version, now)
    client.log_dict(mv.run_id, record, path)
    client.set_model_version_tag(name, version, LANE_THRESHOLDS_TAG, thresholds_json(thresholds))
    client.set_model_version_tag(name, version, THRESHOLDS_VERSION_TAG, thresholds.version)
    return path, record
