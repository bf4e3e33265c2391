"""A small, complete pipeline in one directory: what the analysts' notebooks (``notebooks/``) run on.

``build_sandbox(root)`` generates one world (``features.synthetic.live.generate_cut_world``) cut
in two: ``days`` of history, and ``live_days`` of traffic after the cut in which the generator's
drift arrives (``drift_after`` / ``partner_after`` days after the cut). It builds the history's
features as known at the cut (``features.pipeline.build``), trains and registers a champion and,
optionally, a challenger with other LightGBM settings (``models.cli.run_training``) in a SQLite
MLflow store under ``root``, and promotes the first (``run_promotion``). The traffic and its
ground truth are saved under ``root/live`` for ``serving.live_period`` to score. The same calls as ``make demo``, at a size
that builds in under a minute; later calls reuse what ``root`` already holds, so a notebook that
starts with ``build_sandbox`` costs only reading once the sandbox exists.

A sibling module may extend a ``Sandbox`` (a decision store, a monitor report) by taking one and
writing beside it under ``root``; this module stays at the ``models`` edge (it imports
``models.cli``, like the CLI).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from features.errors import ParcelriskError
from features.params import Settings, load_settings, params_for_copy

log = logging.getLogger(__name__)

# Where the notebooks build their sandbox; unset: notebooks/.sandbox (git-ignored).
NOTEBOOK_DIR_ENV = "PARCELRISK_NOTEBOOK_DIR"
# The repository's params.yaml (the sandbox runs a copy of it with fewer trees).
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
RECIPE_FILE = "sandbox.json"
# Written when a build completes: a later call returns it without opening MLflow (whose client
# takes seconds to import and connect), as long as the files it names are still there.
BUILT_FILE = "sandbox_built.json"
TRAFFIC_FILE = "traffic.parquet"  # under live/
TRAFFIC_TRUTH_FILE = "truth.parquet"
CUT_FILE = "cut.txt"
ROLE_TAG = "sandbox_role"  # on each registered version: champion | challenger
# train.* overrides of the params copy. Small trees and few of them, and the pooled revenue
# model (the per-offence mixture triples the fit): both versions train in seconds on 20k parcels.
CHAMPION_TRAIN: dict[str, Any] = {"revenue_by_offence": False, "lightgbm": {"n_estimators": 80}}
# The challenger differs in capacity (bigger leaves, fewer samples per leaf): a plausible
# "what if" an analyst would compare, not a deliberately broken model.
CHALLENGER_TRAIN: dict[str, Any] = {
    "revenue_by_offence": False,
    "lightgbm": {"n_estimators": 80, "num_leaves": 31, "min_child_samples": 10},
}


@dataclass(frozen=True)
class Sandbox:
    """The files and registered versions of one sandbox directory (all paths absolute)."""

    root: Path
    params: Path  # the champion's params copy; the challenger's is params_challenger.yaml
    declarations: Path  # raw/declarations.parquet, with outcomes where inspected
    ground_truth: Path  # the generator's truth of every parcel
    features: Path  # `features build` output directory (entity state cut at ``cut``)
    traffic: Path  # live/traffic.parquet: declarations from the cut on, declaration columns
    traffic_truth: Path  # live/truth.parquet: their ground truth and ``inspected_at``
    cut: str  # ISO time: the end of the history, the snapshot's cutoff, the start of traffic
    live_until: str  # ISO time: the end of the traffic (cut + live_days)
    drift_at: str  # ISO time: the TR sellers turn to undervaluation (cut + drift_after days)
    partner_at: str  # ISO time: PLT09 becomes partnered (cut + partner_after days)
    tracking_uri: str
    model_name: str
    champion: str  # registered version behind @champion
    challenger: str | None  # None when built with challenger=False

    def settings(self) -> Settings:
        return load_settings(self.params, must_exist=True)


def notebook_dir(environ: dict[str, str] | None = None) -> Path:
    """The notebooks' sandbox directory: ``$PARCELRISK_NOTEBOOK_DIR`` or ``notebooks/.sandbox``."""
    value = (os.environ if environ is None else environ).get(NOTEBOOK_DIR_ENV)
    return Path(value) if value else REPO_PARAMS.parent / "notebooks" / ".sandbox"


def build_sandbox(
    root: Path,
    *,
    parcels: int = 20_000,
    days: int = 60,
    live_days: int = 14,
    drift_after: int = 7,
    partner_after: int = 9,
    seed: int = 5,
    start: str = "2026-01-01",
    challenger: bool = True,
    params: Path = REPO_PARAMS,
) -> Sandbox:
    """Build (or reuse) the sandbox in ``root`` and return where everything is.

    ``parcels`` and ``days`` size the history; the traffic after it runs at the same daily
    volume for ``live_days``. Each step runs only if its output is missing: the world, the
    features, each registered
    version (found by its ``sandbox_role`` tag), the champion alias. A directory built with
    another recipe (sizes, seed, challenger) is refused rather than mixed or deleted. Concurrent
    calls on one directory wait for each other (a file lock), so two notebooks started together
    build once. Needs the pseudonym key like ``features build`` (``parcelrisk keys new``).
    """
    root, params = Path(root).resolve(), Path(params)
    if not params.is_file():
        raise ParcelriskError(f"params file not found: {params}")
    recipe = {
        # a sandbox trained under other params (a pulled change to params.yaml) is refused, not
        # silently reused
        "params_sha256": hashlib.sha256(params.read_bytes()).hexdigest()[:16],
        "parcels": parcels,
        "days": days,
        "live_days": live_days,
        "drift_after": drift_after,
        "partner_after": partner_after,
        "seed": seed,
        "start": start,
        "challenger": challenger,
        "champion_train": CHAMPION_TRAIN,
        "challenger_train": CHALLENGER_TRAIN if challenger else None,
    }
    if days < 1 or live_days < 1 or min(drift_after, partner_after) < 0:
        raise ParcelriskError(
            f"sandbox: days and live_days must be at least 1, drift_after and partner_after at "
            f"least 0 (got days={days}, live_days={live_days}, drift_after={drift_after}, "
            f"partner_after={partner_after})"
        )
    root.mkdir(parents=True, exist_ok=True)
    with locked(root):
        _check_recipe(root, recipe)
        built = _read_built(root)
        if built is not None:
            return built
        sandbox = _build(root, recipe, params)
        record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(sandbox).items()}
        (root / BUILT_FILE).write_text(json.dumps(record, indent=1))
        return sandbox


def _read_built(root: Path) -> Sandbox | None:
    """The sandbox a completed build recorded, if its files are all still there."""
    path = root / BUILT_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if set(record) != {f.name for f in fields(Sandbox)}:
        return None  # recorded by an older build: the steps below find what it left
    names = ("root", "params", "declarations", "ground_truth", "features", "traffic")
    paths = {k: Path(record[k]) for k in (*names, "traffic_truth")}
    if paths["root"] != root or not all(p.exists() for p in [*paths.values(), root / "mlflow.db"]):
        return None
    return Sandbox(**{**record, **paths})


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the sandbox directory's lock: concurrent builders (and extenders) wait in turn."""
    with (Path(root) / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_recipe(root: Path, recipe: dict[str, Any]) -> None:
    path = root / RECIPE_FILE
    if path.exists():
        built = json.loads(path.read_text())
        if built != recipe:
            differs = sorted(k for k in {*built, *recipe} if built.get(k) != recipe.get(k))
            raise ParcelriskError(
                f"sandbox {root} was built with other settings ({', '.join(differs)}): "
                "remove the directory or choose another one"
            )
    else:
        path.write_text(json.dumps(recipe, indent=1))


def _write_params(source: Path, target: Path, train: dict[str, Any]) -> Path:
    import yaml

    raw = params_for_copy(source)  # the files it names made absolute
    section = raw.setdefault("train", {})
    for key, value in train.items():
        if isinstance(value, dict):
            section.setdefault(key, {}).update(value)
        else:
            section[key] = value
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


def _build(root: Path, recipe: dict[str, Any], source_params: Path) -> Sandbox:
    from features.pipeline.build import FEATURES_FILE, SOURCE_FILE, STATE_DIR, build_to_dir
    from features.pipeline.snapshot import META_FILE
    from features.synthetic.history import DECLARATIONS_FILE, GROUND_TRUTH_FILE
    from models.registry import CHAMPION_ALIAS, alias_version, registry_client

    raw_dir, features_dir, live_dir = root / "raw", root / "processed", root / "live"
    world_files = [
        raw_dir / DECLARATIONS_FILE,
        raw_dir / GROUND_TRUTH_FILE,
        live_dir / TRAFFIC_FILE,
        live_dir / TRAFFIC_TRUTH_FILE,
        live_dir / CUT_FILE,
    ]
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    params = _write_params(source_params, root / "params.yaml", recipe["champion_train"])
    settings = load_settings(params, must_exist=True)
    if not all(p.exists() for p in world_files):
        _write_world(recipe, raw_dir, live_dir)
    cut = (live_dir / CUT_FILE).read_text().strip()
    built = [features_dir / FEATURES_FILE, features_dir / SOURCE_FILE]
    if not all(p.exists() for p in [*built, features_dir / STATE_DIR / META_FILE]):
        log.info("sandbox: building features as known at %s", cut)
        build_to_dir(
            declarations_path=raw_dir / DECLARATIONS_FILE,
            out=features_dir,
            settings=settings,
            as_of=cut,
        )
    name = settings.promote.model_name
    versions = _versions_by_role(registry_client(tracking_uri), name)
    roles = {"champion": (params, settings)}
    if recipe["challenger"]:
        challenger_params = _write_params(
            source_params, root / "params_challenger.yaml", recipe["challenger_train"]
        )
        roles["challenger"] = (challenger_params, load_settings(challenger_params))
    for role, (_, role_settings) in roles.items():
        if role in versions:
            continue
        log.info("sandbox: training the %s", role)
        trained = _train(features_dir, raw_dir / GROUND_TRUTH_FILE, role_settings, tracking_uri)
        versions[role] = str(trained["version"])
        registry_client(tracking_uri).set_model_version_tag(name, versions[role], ROLE_TAG, role)
    client = registry_client(tracking_uri)
    if alias_version(client, name, CHAMPION_ALIAS) is None:
        _promote(settings, tracking_uri, versions["champion"])
    return Sandbox(
        root=root,
        params=params,
        declarations=raw_dir / DECLARATIONS_FILE,
        ground_truth=raw_dir / GROUND_TRUTH_FILE,
        features=features_dir,
        traffic=live_dir / TRAFFIC_FILE,
        traffic_truth=live_dir / TRAFFIC_TRUTH_FILE,
        cut=cut,
        live_until=_days_after(cut, recipe["live_days"]),
        drift_at=_days_after(cut, recipe["drift_after"]),
        partner_at=_days_after(cut, recipe["partner_after"]),
        tracking_uri=tracking_uri,
        model_name=name,
        champion=str(alias_version(client, name, CHAMPION_ALIAS)),
        challenger=versions.get("challenger"),
    )


def _days_after(moment: str, days: int) -> str:
    import pandas as pd

    return (pd.Timestamp(moment) + pd.Timedelta(days=days)).isoformat()


def _write_world(recipe: dict[str, Any], raw_dir: Path, live_dir: Path) -> None:
    """The history (as known at the cut) and its truth in ``raw_dir``; the traffic, its truth
    with ``inspected_at``, and the cut in ``live_dir``. The cut file is written last: it marks
    a complete world."""
    from features.intake.io import atomic_write, write_declarations
    from features.synthetic.history import DECLARATIONS_FILE, GROUND_TRUTH_FILE, write_ground_truth
    from features.synthetic.live import generate_cut_world

    days, live_days = recipe["days"], recipe["live_days"]
    # the same daily volume before and after the cut: ``parcels`` is the history's
    parcels = round(recipe["parcels"] * (days + live_days) / days)
    log.info("sandbox: generating %d parcels over %d + %d days", parcels, days, live_days)
    world = generate_cut_world(
        seed=recipe["seed"],
        parcels=parcels,
        history_days=days,
        live_days=live_days,
        drift_after=recipe["drift_after"],
        partner_after=recipe["partner_after"],
        start=recipe["start"],
    )
    raw_dir.mkdir(parents=True, exist_ok=True)
    live_dir.mkdir(parents=True, exist_ok=True)
    write_declarations(world.history, raw_dir / DECLARATIONS_FILE)
    write_ground_truth(world.history_truth, raw_dir / GROUND_TRUTH_FILE)
    write_declarations(world.traffic, live_dir / TRAFFIC_FILE)
    truth = world.truth.assign(inspected_at=world.inspected_at.to_numpy())
    atomic_write(live_dir / TRAFFIC_TRUTH_FILE, lambda tmp: truth.to_parquet(tmp, index=False))
    (live_dir / CUT_FILE).write_text(world.cut.isoformat())


def _versions_by_role(client: Any, name: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for version in client.search_model_versions(f"name='{name}'"):
        role = version.tags.get(ROLE_TAG)
        if role:
            found[role] = str(version.version)
    return found


def _train(
    features_dir: Path, ground_truth: Path, settings: Settings, tracking_uri: str
) -> dict[str, Any]:
    from models.cli import run_training

    return run_training(
        features_dir,
        ground_truth_path=ground_truth,
        settings=settings,
        tracking_uri=tracking_uri,
        metrics_out=None,
    )


def _promote(settings: Settings, tracking_uri: str, version: str) -> dict[str, Any]:
    from models.cli import run_promotion

    return run_promotion(settings=settings, tracking_uri=tracking_uri, version=version)
