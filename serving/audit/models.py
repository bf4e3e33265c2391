"""The model versions recorded decisions were made with, loaded from the registry for an auditor.

A decision names its model (name, version); the champion may have moved on since, so explaining
or recomputing an old decision must use that version's own bundle and entity-state snapshot.
``RecordedModels`` downloads each version once per session into a temporary directory;
``explain_record`` reads a stored decision's full contribution vector off it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError
from serving.audit.safe_text import display_uri

if TYPE_CHECKING:
    from features.pipeline.snapshot import EntityState
    from models.bundle import LaneThresholds, RiskModel
    from serving.decision import DecisionRecord


@dataclass
class LoadedModel:
    """One registered model version as downloaded: the bundle, its snapshot dir, its run."""

    name: str
    version: str
    run_id: str
    model: RiskModel
    state_dir: Path
    run_url: str | None = None  # the run in the MLflow UI, when the tracking URI serves one
    bundle_sha256: str = ""  # of its bundle.json, as decisions record it
    _state: EntityState | None = field(default=None, repr=False)

    def entity_state(self) -> EntityState:
        """The version's entity-state snapshot (loaded on first use: only recompute needs it)."""
        if self._state is None:
            from features.pipeline.snapshot import EntityState

            self._state = EntityState.load(self.state_dir)
        return self._state


def run_url(tracking_uri: str, experiment_id: str | None, run_id: str) -> str:
    """Where a person finds the run: the MLflow UI page for an HTTP tracking server (without
    the URI's user and password: the link is shown), else the ``runs:/`` URI MLflow's own
    tools resolve against that tracking URI."""
    if tracking_uri.startswith(("http://", "https://")) and experiment_id is not None:
        base = display_uri(tracking_uri).rstrip("/")
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"runs:/{run_id}"


class RecordedModels:
    """Model versions by (name, version), each downloaded from the registry at most once.

    A version that cannot be loaded (deleted, artifacts gone, fingerprints disagree) raises
    ``ParcelriskError`` with the reason, every time it is asked for, without asking MLflow
    again. Use as a context manager, or call ``close`` to remove the downloaded files.
    """

    def __init__(self, tracking_uri: str | None, root: Path | None = None) -> None:
        # an auditor's terminal, not a progress bar per artifact
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from models.registry import require_tracking_store

        # the store the recorded versions are in: a mistyped path must not become a new one
        self.tracking_uri = require_tracking_store(tracking_uri)
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="parcelrisk-audit-")) if root is None else root
        self._loaded: dict[tuple[str, str], LoadedModel | ParcelriskError] = {}
        self._thresholds: dict[tuple[str, str], LaneThresholds | None] = {}
        self._client: Any = None

    def get(
        self, name: str, version: str, run_id: str = "", bundle_sha256: str = ""
    ) -> LoadedModel:
        """The model version ``name`` v``version``; ``ParcelriskError`` if it cannot be loaded.

        ``run_id`` and ``bundle_sha256``: what a decision recorded of its model. When the
        registry no longer holds the version (deleted in a clean-up) or names another run for
        it, that recorded run is loaded, checked against the recorded digest (probe 30: a
        deleted version made every decision of it unexplainable, its run intact)."""
        key = (str(name), str(version), str(run_id), str(bundle_sha256))
        if key not in self._loaded:
            try:
                self._loaded[key] = self._load(*key)
            except ParcelriskError as exc:
                self._loaded[key] = exc
        found = self._loaded[key]
        if isinstance(found, ParcelriskError):
            raise found
        return found

    def _load(self, name: str, version: str, run_id: str, bundle_sha256: str) -> LoadedModel:
        from mlflow.exceptions import MlflowException

        from models.registry import load_recorded_run, load_version, registry_client

        if self._client is None:
            self._client = registry_client(self.tracking_uri)
        dst = self.root / f"{_safe(name)}-v{_safe(version)}-{_safe(run_id or 'registry')}"
        try:
            model, state_dir, info = load_version(self._client, name, version, dst, lane_tag=False)
            if run_id and bundle_sha256 and str(info["run_id"]) != run_id:
                raise ParcelriskError(
                    f"the decision was made by run {run_id}, and the registry's {name} "
                    f"v{version} is run {info['run_id']} today (the registry was rebuilt or "
                    "the version registered again)"
                )
        except ParcelriskError as exc:
            if not (run_id and bundle_sha256):
                raise
            try:
                model, state_dir, info = load_recorded_run(
                    self._client, name, version, run_id, bundle_sha256, dst
                )
            except ParcelriskError as recorded:
                raise ParcelriskError(
                    f"{exc}; the run the decision recorded ({run_id}) does not load either: "
                    f"{recorded}"
                ) from None
        run_id = str(info["run_id"])
        try:
            experiment_id = self._client.get_run(run_id).info.experiment_id
        except MlflowException:  # the URL is a convenience: the run id is what matters
            experiment_id = None
        return LoadedModel(
            name=name,
            version=version,
            run_id=run_id,
            model=model,
            state_dir=Path(state_dir),
            run_url=run_url(self.tracking_uri, experiment_id, run_id),
            bundle_sha256=str(info.get("bundle_sha256") or ""),
        )

    def run_of(self, name: str, version: str) -> str | None:
        """The run a registered version names, read from the registry alone: what `show`
        still says when the version's artifacts cannot be loaded (None: no such version)."""
        from mlflow.exceptions import MlflowException

        from models.registry import registry_client

        if self._client is None:
            self._client = registry_client(self.tracking_uri)
        try:
            return str(self._client.get_model_version(name, str(version)).run_id)
        except MlflowException:
            return None

    def thresholds(self, loaded: LoadedModel, version: str) -> LaneThresholds | None:
        """The lane thresholds ``version`` of a loaded model: its bundle's, or one set later
        (``parcelrisk lanes set``) as recorded on its run; None when the run holds no such
        version."""
        if version == loaded.model.thresholds.version:
            return loaded.model.thresholds
        key = (loaded.run_id, str(version))
        if key not in self._thresholds:
            from models.lane_versions import resolve_thresholds
            from models.registry import registry_client

            if self._client is None:
                self._client = registry_client(self.tracking_uri)
            self._thresholds[key] = resolve_thresholds(self._client, loaded.run_id, version)
        return self._thresholds[key]

    def close(self) -> None:
        self._loaded.clear()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RecordedModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def explain_record(record: DecisionRecord, loaded: LoadedModel) -> dict[str, Any]:
    """The full TreeSHAP explanation of a stored decision, from its stored feature vector and
    its own model version (``loaded``, from ``RecordedModels.get(record.model_name,
    record.model_version)``), whatever the champion is now.

    Returns ``{base_value, raw_score, risk, contributions, reasons}``: ``contributions`` lists
    every feature of the model's manifest, in manifest order, as ``{feature, value,
    contribution}`` (value as a person reads it: category label, int, float, None for missing;
    contribution in log-odds of the raw risk score, which is ``base_value`` plus their sum).
    ``raw_score`` and ``risk`` are recomputed; ``reasons`` are the ones the decision gave, as
    stored. Raises ``ParcelriskError`` when the vector does not fit the model's manifest.
    """
    from serving.reasons import contribution_table

    model = loaded.model
    _check_fits(record, loaded)
    X = record.feature_vector.reshape(1, -1)
    contrib = model.contributions(X)
    raw = model.raw_score(X)
    return {
        "base_value": float(contrib[0, -1]),
        "raw_score": float(raw[0]),
        "risk": float(model.risk(X, raw)[0]),
        "contributions": contribution_table(contrib[0, :-1], X[0], model.manifest),
        "reasons": record.reasons,
    }


def not_the_model(record: DecisionRecord, loaded: LoadedModel) -> str | None:
    """Why ``loaded`` (the registry's version of the name and version ``record`` names) is
    not the model that made the decision; None when it is, or when the record predates
    recording its model's run and bundle (the name and version are then all it says).

    A registry rebuilt, restored from another backup or re-registered gives "v3" to another
    run: explained or recomputed with it, an old decision would be justified by a model that
    never saw it (probe 12). The run id and the bundle digest are under the decision's MAC."""
    recorded = f"{record.model_name} v{record.model_version}"
    if record.model_run_id and record.model_run_id != loaded.run_id:
        return (
            f"decision {record.decision_id} was made by run {record.model_run_id} (recorded "
            f"under its MAC); the registry's {recorded} is run {loaded.run_id}: the registry "
            "was rebuilt or the version registered again; point --tracking-uri at the registry "
            "the decision was made with"
        )
    if (
        record.model_bundle_sha256
        and loaded.bundle_sha256
        and record.model_bundle_sha256 != loaded.bundle_sha256
    ):
        return (
            f"decision {record.decision_id} was made by a bundle with SHA-256 "
            f"{record.model_bundle_sha256[:12]} (recorded under its MAC); the registry's "
            f"{recorded} (run {loaded.run_id}) loads {loaded.bundle_sha256[:12]}: not the model "
            "that decided"
        )
    return None


def _check_fits(record: DecisionRecord, loaded: LoadedModel) -> None:
    if (problem := not_the_model(record, loaded)) is not None:
        raise ParcelriskError(problem)
    manifest = loaded.model.manifest
    if record.manifest_fingerprint != manifest.fingerprint:
        raise ParcelriskError(
            f"decision {record.decision_id}: its features were stored in manifest "
            f"{record.manifest_fingerprint}, model {loaded.name} v{loaded.version} reads "
            f"{manifest.fingerprint}"
        )
    n = len(record.features) // 8
    if n != len(manifest.features):
        raise ParcelriskError(
            f"decision {record.decision_id}: {n} stored feature values, model {loaded.name} "
            f"v{loaded.version} takes {len(manifest.features)}"
        )
