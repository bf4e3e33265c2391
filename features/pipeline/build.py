"""Batch point-in-time features of a declaration history: the frame, its manifest, and the CLI edge.

1. ``prepare`` derives keys and values from the contract columns (``features.pipeline.prepare``).
2. Categorical levels are learned in order of first appearance and fixed in the manifest.
3. Each feature family (``features.families``) computes its features over the whole history,
   point in time: a parcel sees only declarations before it and results recorded before it;
   learned components are refitted every ``refit_period_days`` on an expanding window.

``features.pipeline.online`` computes the same features for new declarations from the snapshot
written by ``features.pipeline.snapshot``; both call the families' compute, so they cannot drift.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.families import active_families, build_manifest
from features.families.categories import learn_categories
from features.intake.contract import FIELDS, Contract, ContractError, utc_instant
from features.intake.io import atomic_write, read_declarations, read_results_seq
from features.params import FeatureParams, Settings
from features.pipeline.family import History, SpecContext
from features.pipeline.frame import assemble
from features.pipeline.manifest import FeatureManifest
from features.pipeline.prepare import (
    as_known_at,
    available_inputs,
    outcome_events,
    outcomes_known_at,
    prepare,
    sort_declarations,
    unused_inputs,
)

log = logging.getLogger(__name__)

FEATURES_FILE = "features.parquet"
SOURCE_FILE = "source.json"  # what the features were built from, and how it passed the gate
STATE_DIR = "entity_state"
SUMMARY_FILE = "features_summary.json"
ENGINES = ("pandas", "dask")


@dataclass
class FeatureSet:
    frame: pd.DataFrame  # ids, labels, reason context, features; sorted by (declared_at, id)
    manifest: FeatureManifest


def build_features(
    declarations: pd.DataFrame,
    contract: Contract,
    params: FeatureParams,
    categories: dict[str, tuple[str, ...]] | None = None,
    inputs: tuple[str, ...] | None = None,
    *,
    show_progress: bool = False,
) -> FeatureSet:
    """Point-in-time features of every declaration of a history (canonical contract frame).

    ``categories`` fixes the categorical codes (e.g. to a deployed model's); by default they are
    learned from the data. ``inputs`` fixes which fields the families may use; by default the
    fields holding values in ``declarations`` (``available_inputs``).
    """
    feature_set, _, _ = _build(
        declarations, contract, params, categories, inputs, show_progress=show_progress
    )
    return feature_set


def _build(
    declarations: pd.DataFrame,
    contract: Contract,
    params: FeatureParams,
    categories: dict[str, tuple[str, ...]] | None = None,
    inputs: tuple[str, ...] | None = None,
    *,
    show_progress: bool = False,
) -> tuple[FeatureSet, pd.DataFrame, History]:
    """``build_features``, also giving the sorted declarations and the prepared history (the
    entity state of the same history reuses them)."""
    declarations = sort_declarations(declarations)
    if inputs is None:
        inputs = available_inputs(declarations, contract)
    prep = prepare(declarations, contract, params)
    if categories is None:
        categories = learn_categories(prep, params, contract)
    ctx = SpecContext(params, contract, inputs, categories)
    manifest = build_manifest(ctx)
    history = History(prep, params, contract, manifest, outcome_events(declarations), show_progress)
    values: dict[str, np.ndarray] = {}
    for family in active_families(ctx):
        started = time.perf_counter()
        values.update(family.batch(history))
        log.debug("family %s: %.2f s", family.name, time.perf_counter() - started)
    frame = assemble(prep, declarations, values, manifest, one_block=False)
    return FeatureSet(frame=frame, manifest=manifest), declarations, history


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """The features as Parquet. Float columns are not dictionary-encoded: most hold near-distinct
    values, where Parquet fills a dictionary page only to fall back to plain encoding (~1.5 s of
    6.5 at 1M rows, for a file 25% larger); ids, text, categories and flags keep it. (Written
    in row-group slices, the peak is no lower: the whole frame's Arrow copy is ~50 MB more.)
    Float columns carry no min/max statistics either: nothing filters row groups on a feature's
    value, and computing them is ~8% of the write (1M rows, 155 float columns)."""
    keep = [name for name, dtype in frame.dtypes.items() if dtype.kind != "f"]
    frame.to_parquet(path, index=False, use_dictionary=keep, write_statistics=keep)


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A new directory beside ``out`` to write a build into, put in ``out``'s place only once
    the body finished: ``out`` holds one build whole, the last complete one, or nothing;
    entries of ``out`` the build does not write (a ``.gitkeep``, a user's file) are kept.

    Written file by file into ``out``, a build killed (or out of disk) half-way left the new
    features.parquet beside the old entity_state/ and source.json, and ``train`` registered a
    model serving with a snapshot of another history, unsaid (probe, 2026-12). A build that
    fails leaves ``out`` as it was; the swap is two renames in one directory (between them
    ``out`` is absent, never mixed), and a build killed between them leaves the old one
    under ``.<name>.old-*``, which the next build removes."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParcelriskError(f"--out {out} is a file: give a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.building-*"):
        if not _builder_alive(stale):  # a build killed before its swap; a running one stays
            shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-{os.getpid()}-", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        try:
            os.rename(out, old / out.name)
        except OSError:  # a mount point (a container's volume) cannot be renamed: its content
            shutil.rmtree(old, ignore_errors=True)
            _replace_content(out, stage)
            return
        # what the build does not write stays (a .gitkeep, a file the user keeps there): moved
        # into the new build's directory, never mixed with its files (none has their names)
        for entry in (old / out.name).iterdir():
            if not (stage / entry.name).exists():
                os.rename(entry, stage / entry.name)
    os.rename(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for left in out.parent.glob(f".{out.name}.old-*"):
        shutil.rmtree(left, ignore_errors=True)


def _builder_alive(stage: Path) -> bool:
    """Whether the process that made a staging directory (its pid in the name) still runs."""
    pid = stage.name.rsplit(".building-", 1)[-1].split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's, alive
    return True


def _replace_content(out: Path, stage: Path) -> None:
    """``out``'s entries of the build's names replaced by ``stage``'s (``staged_dir`` where
    ``out`` itself cannot be renamed); the others stay, as they do when it can. Moved, not
    renamed: a mount point is another file system than the folder ``stage`` is in."""
    for entry in stage.iterdir():
        kept = out / entry.name
        if kept.is_dir() and not kept.is_symlink():
            shutil.rmtree(kept)
        elif kept.exists() or kept.is_symlink():
            kept.unlink()
        shutil.move(str(entry), str(kept))
    stage.rmdir()


def build_to_dir(
    *,
    declarations_path: Path,
    out: Path,
    settings: Settings,
    no_validate: bool = False,
    validated_by: Path | None = None,
    as_of: str | None = None,
    show_progress: bool = False,
    engine: str = "pandas",
    scheduler: str | None = None,
    partition_rows: int | None = None,
) -> dict[str, Any]:
    """CLI edge: gate, read, build, write features.parquet + manifest + entity_state atomically.

    ``as_of``: build as known at that instant (declarations before it, results recorded before
    it) and cut the entity state there; by default just after the last declaration.
    ``engine``: "pandas" (one process) or "dask" (``features.pipeline.dask_engine``: the same
    features and state, on a ``LocalCluster`` or the cluster at ``scheduler``, in partitions
    of about ``partition_rows`` rows).
    """
    if engine not in ENGINES:
        raise ParcelriskError(f"unknown engine {engine!r} (choose {' or '.join(ENGINES)})")
    final = Path(out)
    with staged_dir(final) as stage:
        summary = _build_into(
            declarations_path=Path(declarations_path),
            out=stage,
            settings=settings,
            no_validate=no_validate,
            validated_by=validated_by,
            as_of=as_of,
            show_progress=show_progress,
            engine=engine,
            scheduler=scheduler,
            partition_rows=partition_rows,
        )
        summary["out"] = str(final)
        # the file holds what was built, not how long it took (``_write_record``): the same
        # history and code give the same bytes; the duration is only printed
        recorded = {k: v for k, v in summary.items() if k != "seconds"}
        atomic_write(
            stage / SUMMARY_FILE, lambda tmp: tmp.write_text(json.dumps(recorded, indent=1))
        )
    return summary


def _build_into(
    *,
    declarations_path: Path,
    out: Path,
    settings: Settings,
    no_validate: bool,
    validated_by: Path | None,
    as_of: str | None,
    show_progress: bool,
    engine: str,
    scheduler: str | None,
    partition_rows: int | None,
) -> dict[str, Any]:
    """``build_to_dir``'s work, written into ``out`` (its staging directory)."""
    from features.intake.pseudonym import process_key_id
    from features.intake.rules import Limits
    from features.intake.validation import require_valid
    from features.pipeline.snapshot import (
        entity_state_of,
        last_declared,
        pending_results_of,
        recent_ids_of,
        result_ids_of,
    )

    started = time.perf_counter()
    params = settings.features
    gate = require_valid(
        Path(declarations_path),
        Limits.from_settings(settings),
        no_validate=no_validate,
        validated_by=validated_by,
        what="features build",
        in_chunks=engine == "dask",  # the cluster reads the file in parts: so does the gate
    )
    if engine == "dask":
        return _dask_to_dir(
            Path(declarations_path),
            Path(out),
            settings,
            gate,
            as_of,
            scheduler,
            started,
            partition_rows=partition_rows,
        )
    if gate.declarations is not None and gate.contract is not None:  # read by the gate
        declarations, contract = gate.declarations, gate.contract
    else:
        declarations, contract = read_declarations(Path(declarations_path), with_outcomes=True)
    left_out: dict[str, Any] = {}
    if as_of is not None:
        cutoff = utc_instant(as_of, "--as-of")
        read = len(declarations)
        declarations = as_known_at(declarations, cutoff)
        if declarations.empty:
            raise ContractError(f"{declarations_path}: no declarations before --as-of {cutoff}")
        left_out = _left_out_by_as_of(read, len(declarations), cutoff)
    if declarations.empty:
        raise ContractError(f"{declarations_path}: no declarations to build features from")
    step = time.perf_counter()
    feature_set, declarations, history = _build(
        declarations, contract, params, show_progress=show_progress
    )
    log.debug("features: %.2f s", time.perf_counter() - step)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_rows, manifest = len(feature_set.frame), feature_set.manifest
    left_out["inputs_unused"] = unused_inputs(params, contract, manifest.inputs)
    left_out.update(_said_of_dates_only(dates_only(declarations["declared_at"])))
    step = time.perf_counter()
    atomic_write(out / FEATURES_FILE, functools.partial(write_frame, feature_set.frame))
    manifest.write(out)
    del feature_set  # written: the frame (GBs at 1M rows) need not outlive it in memory
    log.debug("features written: %.2f s", time.perf_counter() - step)
    if as_of is None:
        cutoff = declarations["declared_at"].max() + pd.Timedelta(microseconds=1)
    step = time.perf_counter()
    # Every declaration is before the cutoff (--as-of cut them, or it is just after the last):
    # the state's history is the build's prepared rows, with only the results recorded by then.
    outcomes = outcomes_known_at(declarations, history.outcomes, cutoff)
    known = History(history.prep, params, contract, manifest, outcomes, show_progress)
    known.share_codes(history)  # the same rows: the same codes of every key column
    last = last_declared(declarations)
    recent = recent_ids_of(
        declarations["declaration_id"].to_numpy(dtype=object),
        history.prep["t_us"],
        last[0],
    )
    # results recorded after the cutoff ride beside the state for the live one to append; an
    # --as-of state is the history as known then, without them
    pending = (
        pending_results_of(declarations, contract, int(cutoff.value // 1000))
        if as_of is None
        else ()
    )
    # every result of the cut history: those the state counts at the cutoff and those carried
    held_results = result_ids_of(declarations)
    del history, declarations
    gate = dataclasses.replace(gate, declarations=None)  # nor by the gate's record
    state = entity_state_of(
        known,
        cutoff=cutoff,
        # the key read_declarations pseudonymised with: serving checks it has the same one
        pseudonym_key_id=process_key_id(),
        last_declared=last,
        # a cut history no longer holds every result up to the store's last one
        results_seq=read_results_seq(Path(declarations_path)) if as_of is None else None,
        pending_results=pending,
        recent_ids=recent,
        result_ids=held_results,
    )
    log.debug("entity state: %.2f s", time.perf_counter() - step)
    state.save(out / STATE_DIR)
    return _write_record(
        out, declarations_path, gate, as_of, cutoff, n_rows, manifest, state, started, **left_out
    )


# A history is one of dates alone when its declarations sit at this many times of day at most
# (local midnight, read in UTC on either side of a clock change), and it has rows enough to tell
_DATE_ONLY_TIMES = 2
_DATE_ONLY_MIN_ROWS = 50


def dates_only(declared_at: pd.Series) -> bool:
    """Whether a history's declaration times are dates alone. A postal export's posting dates
    hid the same-day parcels of a split order from every window, unsaid (probe 11)."""
    if len(declared_at) < _DATE_ONLY_MIN_ROWS:
        return False
    t_us = declared_at.to_numpy(dtype="datetime64[us]").view(np.int64)
    return len(np.unique(t_us % (86_400 * 1_000_000))) <= _DATE_ONLY_TIMES


def dates_only_in(path: Path) -> bool:
    """``dates_only`` of a Parquet history, read a batch of one column at a time (the Dask
    engine's client holds no whole column), stopping at the first third time of day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if parquet.metadata.num_rows < _DATE_ONLY_MIN_ROWS:
        return False
    times: set[int] = set()
    for batch in parquet.iter_batches(columns=["declared_at"], batch_size=1_000_000):
        column = batch.column(0).drop_null().cast(pa.timestamp("us", tz="UTC"))
        t_us = column.to_numpy(zero_copy_only=False)
        times.update(np.unique(t_us.view(np.int64) % (86_400 * 1_000_000)).tolist())
        if len(times) > _DATE_ONLY_TIMES:
            return False
    return True


def _said_of_dates_only(dated: bool) -> dict[str, bool]:
    if not dated:
        return {}
    log.warning(
        "declared_at holds dates without times (every declaration at one time of day): "
        "parcels of one day share an instant, so the split-shipment and split-order windows "
        "count the parcels of earlier days only, never a day's other parcels; export the "
        "times of lodgement if the system has them"
    )
    return {"declared_at_dates_only": True}


def _left_out_by_as_of(read: int, kept: int, cutoff: pd.Timestamp) -> dict[str, int]:
    """The summary's count of declarations the cut left out (declared at or after it), said
    in the log too: a cut that drops most of a file should not pass unnoticed."""
    log.info(
        "--as-of %s: %d of %d declarations declared at or after it left out",
        cutoff,
        read - kept,
        read,
    )
    return {"declarations_after_as_of": read - kept}


def _write_record(
    out: Path,
    declarations_path: Path,
    gate: Any,
    as_of: str | None,
    cutoff: pd.Timestamp,
    n_rows: int,
    manifest: FeatureManifest,
    state: Any,
    started: float,
    **more: Any,
) -> dict[str, Any]:
    """source.json (what the features were built from) and features_summary.json; the summary."""
    source = {
        "declarations": str(declarations_path),
        **gate.to_dict(),
        "as_of": str(cutoff) if as_of is not None else None,
    }
    atomic_write(out / SOURCE_FILE, lambda tmp: tmp.write_text(json.dumps(source, indent=1)))
    # result_known_at switches nothing off: without it a result is known at its inspected_at
    absent = [
        f.name
        for f in FIELDS
        if f.name not in (manifest.inputs or ()) and f.name != "result_known_at"
    ]
    summary = {
        "rows": n_rows,
        "features": len(manifest.names),
        "groups": manifest.groups(),
        "inputs_absent": absent,
        "gate": gate.status,
        "entity_state_cutoff": str(cutoff),
        "entity_state_fingerprint": state.fingerprint,
        # results recorded after the cutoff, carried for the live state to append
        "entity_state_pending_results": len(state.pending_results),
        "pseudonym_key_id": state.pseudonym_key_id,
        **more,
        "out": str(out),
    }
    # the file holds what was built, not how long it took: the same history and code give the
    # same bytes (the stage's hash in dvc.lock stays); the duration is printed
    atomic_write(out / SUMMARY_FILE, lambda tmp: tmp.write_text(json.dumps(summary, indent=1)))
    return {**summary, "seconds": round(time.perf_counter() - started, 2)}


def _dask_to_dir(
    declarations_path: Path,
    out: Path,
    settings: Settings,
    gate: Any,
    as_of: str | None,
    scheduler: str | None,
    started: float,
    *,
    partition_rows: int | None = None,
) -> dict[str, Any]:
    """``build_to_dir`` on the Dask engine: the history is read, built and snapshotted in
    partitions by the cluster's workers; this process writes the joined features and the state."""
    from features.intake.io import read_contract
    from features.intake.pseudonym import process_key, process_key_id
    from features.pipeline.dask_engine import DEFAULT_PARTITION_ROWS, build_dask, dask_client

    if declarations_path.suffix.lower() not in (".parquet", ".pq"):
        raise ContractError(
            f"{declarations_path}: --engine dask reads a contract Parquet file "
            "(`parcelrisk ingest` writes one from a CSV export)"
        )
    cutoff = utc_instant(as_of, "--as-of") if as_of is not None else None
    out.mkdir(parents=True, exist_ok=True)
    built = []
    with dask_client(scheduler) as client:
        atomic_write(
            out / FEATURES_FILE,
            lambda tmp: built.append(
                build_dask(
                    declarations_path,
                    read_contract(declarations_path),
                    settings.features,
                    tmp,
                    client,
                    work_dir=out,
                    # the workers pseudonymise as this process does (on a remote cluster the
                    # key travels with the tasks: use TLS between client and scheduler)
                    pseudonym_key=process_key(),
                    pseudonym_key_id=process_key_id(),
                    as_of=cutoff,
                    partition_rows=partition_rows or DEFAULT_PARTITION_ROWS,
                )
            ),
        )
    result = built[0]
    result.manifest.write(out)
    if cutoff is None:  # a cut history no longer holds every result up to the store's last
        result.state.results_seq = read_results_seq(declarations_path)
    result.state.save(out / STATE_DIR)
    left_out: dict[str, Any] = dict(_said_of_dates_only(dates_only_in(declarations_path)))
    if cutoff is not None:
        import pyarrow.parquet as pq

        read = pq.ParquetFile(declarations_path).metadata.num_rows
        left_out.update(_left_out_by_as_of(read, result.n_rows, cutoff))
    return _write_record(
        out,
        declarations_path,
        gate,
        as_of,
        result.state.cutoff,
        result.n_rows,
        result.manifest,
        result.state,
        started,
        engine="dask",
        partitions=result.n_partitions,
        scheduler=scheduler or "LocalCluster",
        inputs_unused=unused_inputs(
            settings.features, read_contract(declarations_path), result.manifest.inputs
        ),
        **left_out,
    )
