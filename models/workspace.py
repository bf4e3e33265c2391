"""What the analysts' notebooks read: an analyst's own outputs, named in the environment, or the
sandbox (``models.sandbox``) when none is named.

``open_workspace()`` is the notebooks' first call. With none of the ``PARCELRISK_NOTEBOOK_*``
variables below set it builds (or reuses) the sandbox in ``$PARCELRISK_NOTEBOOK_DIR``; with any
of them set it builds nothing and reads only what they name, each path checked at once. A
notebook then asks for what it needs (``Workspace.require``): what was not named is a one-line
error saying which variable to set. The ground truth exists only for generated data: a notebook
shows its truth-based views only when ``ground_truth`` is set, and says so when it is not.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import ParcelriskError
from features.params import Settings, load_settings
from models.sandbox import (
    NOTEBOOK_DIR_ENV,
    RECIPE_FILE,
    REPO_PARAMS,
    Sandbox,
    build_sandbox,
    notebook_dir,
)

if TYPE_CHECKING:
    import pandas as pd

    from models.bundle import RiskModel

FEATURES_ENV = "PARCELRISK_NOTEBOOK_FEATURES"
DECLARATIONS_ENV = "PARCELRISK_NOTEBOOK_DECLARATIONS"
TRACKING_ENV = "PARCELRISK_NOTEBOOK_TRACKING_URI"
STORE_ENV = "PARCELRISK_NOTEBOOK_STORE"
PARAMS_ENV = "PARCELRISK_NOTEBOOK_PARAMS"
TRUTH_ENV = "PARCELRISK_NOTEBOOK_GROUND_TRUTH"
CHALLENGER_ENV = "PARCELRISK_NOTEBOOK_CHALLENGER"
# Any of these set: the analyst's outputs, no sandbox. PARAMS alone changes nothing to read.
OUTPUT_ENVS = (FEATURES_ENV, DECLARATIONS_ENV, TRACKING_ENV, STORE_ENV)
# What each workspace field is, and the variable that names it, for the errors.
NEEDS: dict[str, tuple[str, str]] = {
    "features": (FEATURES_ENV, "a `parcelrisk features build --out` directory"),
    "declarations": (DECLARATIONS_ENV, "the declarations file (`parcelrisk ingest` output)"),
    "tracking_uri": (TRACKING_ENV, "the MLflow tracking URI the models were trained into"),
    "store": (STORE_ENV, "the decision store (the service's serve.audit_db)"),
}

# Below this many parcels the report's views (precision at 5%, ten calibration bins, rates by
# group) would say more about chance than about either model.
MIN_COMPARED_PARCELS = 200


@dataclass(frozen=True)
class Workspace:
    """Where a notebook's data lies; a field is None when it was not named (or, for the ground
    truth, when the data has none)."""

    origin: str  # said in the notebooks' first line: the sandbox's directory, or "your outputs"
    params: Path
    features: Path | None
    declarations: Path | None
    ground_truth: Path | None  # the generator's truth of the history's parcels
    traffic_truth: Path | None  # ... of the decision store's parcels
    tracking_uri: str | None
    store: str | None  # a SQLite file or a postgresql:// URL
    challenger: str | None = None  # the version notebook 02 compares (default: the latest)
    sandbox: Sandbox | None = None

    def settings(self) -> Settings:
        return load_settings(self.params, must_exist=True)

    @property
    def model_name(self) -> str:
        return self.settings().promote.model_name

    def require(self, *names: str) -> None:
        """Refuse, naming the variable to set, when a field a notebook needs was not named."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            wanted = "; ".join(f"{NEEDS[n][0]} ({NEEDS[n][1]})" for n in missing)
            raise ParcelriskError(f"this notebook needs {wanted}: set it and run again")

    def versions(self) -> dict[str, str]:
        """The champion and the version compared with it: the sandbox's challenger, or
        ``$PARCELRISK_NOTEBOOK_CHALLENGER``, else the latest version (``parcelrisk promote``'s)."""
        if self.sandbox is not None and self.sandbox.challenger is not None:
            return {"champion": self.sandbox.champion, "challenger": self.sandbox.challenger}
        from models.registry import CHAMPION_ALIAS, alias_version, latest_version, registry_client

        self.require("tracking_uri")
        client = registry_client(self.tracking_uri)
        champion = alias_version(client, self.model_name, CHAMPION_ALIAS)
        if champion is None:
            raise ParcelriskError(f"{self.tracking_uri}: {self.model_name} has no champion")
        challenger = self.challenger or latest_version(client, self.model_name)
        if challenger == champion:
            raise ParcelriskError(
                f"{self.model_name} version {champion} is the champion and the latest version: "
                f"set {CHALLENGER_ENV} to the version to compare it with"
            )
        return {"champion": champion, "challenger": challenger}

    def load_model(self, version: str) -> RiskModel:
        """A registered version's bundle (kept under the sandbox's ``versions/<version>``)."""
        from models.registry import load_version, registry_client

        self.require("tracking_uri")
        client = registry_client(self.tracking_uri)
        if self.sandbox is not None:
            dst = self.sandbox.root / "versions" / str(version)
            return load_version(client, self.model_name, str(version), dst)[0]
        # the bundle is read into memory: its download need not outlive the call (as in promote)
        with tempfile.TemporaryDirectory(prefix="parcelrisk-notebook-") as tmp:
            return load_version(client, self.model_name, str(version), Path(tmp))[0]

    def run_metrics(self, version: str) -> dict[str, float]:
        """The metrics the version's training run logged to MLflow (first-pass holdout)."""
        from models.registry import registry_client

        self.require("tracking_uri")
        client = registry_client(self.tracking_uri)
        run_id = client.get_model_version(self.model_name, str(version)).run_id
        return dict(client.get_run(run_id).data.metrics)

    def compared_holdout(self, models: Mapping[str, RiskModel]) -> ComparedHoldout:
        """The feature rows ``parcelrisk promote`` compares the champion and the challenger on
        (``models``: role -> its model); with the generator's truth (``truth_*`` columns) when the
        workspace has it.

        The parcels neither version was fitted or calibrated on: those declared from the later
        of their test starts, as ``models.promotion.compare_versions`` cuts them. A retrained
        challenger's own train and validation periods lie inside the champion's test period:
        scored there it looked better calibrated than the gate measured it (probe, 2026-12).
        Refused, saying why, when fewer than ``MIN_COMPARED_PARCELS`` are left.
        """
        import pandas as pd

        from features.pipeline.build import FEATURES_FILE
        from features.pipeline.manifest import FeatureManifest
        from models.evaluation import attach_truth

        self.require("features")
        periods = {role: recorded_test_period(model) for role, model in models.items()}
        start = max(begin for begin, _ in periods.values())
        frame = pd.read_parquet(self.features / FEATURES_FILE)
        frame = frame.loc[frame["declared_at"] >= start].reset_index(drop=True)
        if len(frame) < MIN_COMPARED_PARCELS:
            starts = ", ".join(f"{role} {begin:%Y-%m-%d}" for role, (begin, _) in periods.items())
            raise ParcelriskError(
                f"{self.features}: only {len(frame):,} parcel(s) declared from "
                f"{start:%Y-%m-%d %H:%M}, the later of the two test starts ({starts}), fewer "
                f"than {MIN_COMPARED_PARCELS}: too few that neither version was fitted or "
                "calibrated on to compare them (on earlier parcels one of them would be scored "
                "in-sample). The views below are not drawn: compare on features of a history "
                "that runs further past both test starts"
            )
        if self.ground_truth is not None:
            frame = attach_truth(frame, pd.read_parquet(self.ground_truth))
        return ComparedHoldout(
            frame, start, periods, FeatureManifest.read(self.features).categories
        )


def recorded_test_period(model: RiskModel) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last declaration time of the test period ``model``'s training run measured
    its recorded metrics on (its first pass was fitted and calibrated before the first)."""
    from models.split import SplitBoundaries

    split = model.metadata.get("split")
    if not split:
        raise ParcelriskError("the model records no split: cannot find its test period")
    boundaries = SplitBoundaries.from_dict(split)
    return boundaries.test_start, boundaries.end


@dataclass(frozen=True)
class ComparedHoldout:
    """The parcels two versions are compared on, and where they lie against each one's own
    test period."""

    frame: pd.DataFrame
    start: pd.Timestamp  # the later of the versions' test starts
    periods: dict[str, tuple[pd.Timestamp, pd.Timestamp]]  # role -> its recorded test period
    categories: dict[str, tuple[str, ...]]  # the levels the features were built with

    def rows_for(self, model: RiskModel) -> pd.DataFrame:
        """``frame`` with its category codes in ``model``'s levels, as the gate scores it
        (``models.promotion.recode_categories``: two builds code the same level apart)."""
        from models.promotion import recode_categories

        return recode_categories(self.frame, self.categories, model.manifest.categories)

    def is_recorded_period(self, role: str) -> bool:
        """Whether these are the parcels ``role``'s training run measured its metrics on: then,
        and only then, the figures recomputed here should equal the recorded ones."""
        begin, end = self.periods[role]
        return begin == self.start and self.frame["declared_at"].max() <= end


def sandbox_workspace(sandbox: Sandbox) -> Workspace:
    """The sandbox's files; its decision store is ``serving.live_period.score_live_period``'s
    (the notebooks that read it call that: ``models`` does not import ``serving``)."""
    return Workspace(
        origin=f"the sandbox in {sandbox.root}",
        params=sandbox.params,
        features=sandbox.features,
        declarations=sandbox.declarations,
        ground_truth=sandbox.ground_truth,
        traffic_truth=sandbox.traffic_truth,
        tracking_uri=sandbox.tracking_uri,
        store=None,
        sandbox=sandbox,
    )


def workspace_from_env(environ: Mapping[str, str] | None = None) -> Workspace | None:
    """The analyst's outputs the environment names, each checked; None when it names none."""
    env = os.environ if environ is None else environ
    named = {k: env[k] for k in (*OUTPUT_ENVS, PARAMS_ENV, TRUTH_ENV, CHALLENGER_ENV) if env.get(k)}
    if not any(k in named for k in OUTPUT_ENVS):
        return None
    params = _existing(named.get(PARAMS_ENV), PARAMS_ENV) or REPO_PARAMS
    features = _features_dir(named.get(FEATURES_ENV))
    declarations = _existing(named.get(DECLARATIONS_ENV), DECLARATIONS_ENV)
    if declarations is None and features is not None:
        declarations = declarations_of(features, params.parent)
    truth = _existing(named.get(TRUTH_ENV), TRUTH_ENV)
    return Workspace(
        origin="your outputs",
        params=params,
        features=features,
        declarations=declarations,
        ground_truth=truth,
        traffic_truth=truth,
        tracking_uri=_tracking_store(named.get(TRACKING_ENV)),
        store=_store(named.get(STORE_ENV)),
        challenger=named.get(CHALLENGER_ENV),
    )


def open_workspace(environ: Mapping[str, str] | None = None) -> Workspace:
    """The analyst's outputs when the environment names any; else the sandbox, built on first use
    (``build_sandbox``, in ``$PARCELRISK_NOTEBOOK_DIR`` or ``notebooks/.sandbox``)."""
    named = workspace_from_env(environ)
    if named is not None:
        return named
    root = notebook_dir(dict(os.environ if environ is None else environ))
    # a directory of other files is an analyst's outputs pointed at the wrong variable: a
    # sandbox generated among them would be reported on as if it were theirs (probe, 2026-12)
    if root.is_dir() and not (root / RECIPE_FILE).exists():
        held = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        if held:
            raise ParcelriskError(
                f"{NOTEBOOK_DIR_ENV}={root} holds {', '.join(held[:3])}"
                f"{', ...' if len(held) > 3 else ''} but no sandbox: to read your own outputs set "
                f"{', '.join(OUTPUT_ENVS)}; for the sandbox choose an empty or new directory"
            )
    return sandbox_workspace(build_sandbox(root))


def declarations_of(features: Path, base: Path) -> Path:
    """The declarations file ``features`` was built from, as its ``source.json`` records it (a
    relative path is the command's: relative to ``base``, where params.yaml and the commands
    sit, when it is not found from here)."""
    from features.pipeline.build import SOURCE_FILE

    source = features / SOURCE_FILE
    try:
        recorded = json.loads(source.read_text()).get("declarations")
    except (OSError, ValueError):
        recorded = None
    if not recorded:
        raise ParcelriskError(
            f"{source} names no declarations file: set {DECLARATIONS_ENV} to the file the "
            "features were built from"
        )
    path = Path(recorded)
    for candidate in (path, base / path):
        if candidate.is_file():
            return candidate.resolve()
    raise ParcelriskError(
        f"{source} names the declarations {recorded}, which is not found: set "
        f"{DECLARATIONS_ENV} to where the file is now"
    )


def _existing(value: str | None, variable: str) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise ParcelriskError(f"{variable}={value}: does not exist")
    return path.resolve()


def _features_dir(value: str | None) -> Path | None:
    from features.pipeline.build import FEATURES_FILE

    path = _existing(value, FEATURES_ENV)
    if path is not None and not (path / FEATURES_FILE).is_file():
        raise ParcelriskError(
            f"{FEATURES_ENV}={value}: no {FEATURES_FILE} in it (give the directory "
            "`parcelrisk features build --out` wrote)"
        )
    return path


def _tracking_store(value: str | None) -> str | None:
    if value is None:
        return None
    from models.registry import require_tracking_store

    try:
        return require_tracking_store(value)  # a missing SQLite store is not made empty here
    except ParcelriskError as exc:
        raise ParcelriskError(f"{TRACKING_ENV}={value}: {exc}") from None


def _store(value: str | None) -> str | None:
    if value is None or "://" in value:  # a database URL: its reader says what is wrong
        return value
    return str(_existing(value, STORE_ENV))


def one_line_errors() -> None:
    """In a notebook, show a ``ParcelriskError`` as its one-line message, as the CLI does:
    a missing file named in the environment is the analyst's to fix, not a code fault. Other
    errors keep their traceback; outside IPython nothing changes."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def show(shell, etype, value, tb, tb_offset=None):  # IPython's custom_exc signature
        shell.showtraceback((etype, value, tb), exception_only=True)

    shell.set_custom_exc((ParcelriskError,), show)
