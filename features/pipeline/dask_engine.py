"""The Dask engine of ``features build``: the families' own code on a history no process holds.

A build (``build_dask``) runs in passes over Parquet files in a work directory, so that no
worker ever holds the whole history and no pass is recomputed by a later one:

1. **stage**: the contract Parquet is read in row groups and put in canonical dtypes partition
   by partition, sorted by declaration time into ``n`` partitions (an instant's rows all in
   one, ties by id inside it), and numbered 0..n-1 in that global order (``ROW``). Each
   partition's rows are prepared once here to hash every partition key (an entity spec of
   prepared columns) into a column.
2. **aggregates**: one pass collects what no partition can learn alone, as small partial
   aggregates merged on the client: the fields holding values, categorical levels with the row
   they first appear at, every recorded result (for the global hit-rate prior), the text
   evidence (distinct declarations per refit period and results per period of recording, with
   counts), the first declaration with a value per item, each HS6 code's first row.
3. **rows**: the "rows" families (``Family.distribution``) on each staged partition alone, the
   text features looked up per (period, description, chapter, HS6) in the table the text family
   computed from the aggregates, and the ids, labels and reason context.
4. **keys**: for each partition key, the rows shuffled on its hash, so a partition holds every
   row of its keys; the "keys" families of that key (``Family.batch_keys``) run on it, told
   what they need of the rest (``History.whole``). Values go back to their rows' partitions.
5. **write**: the partitions of every pass, aligned by row number, joined in manifest order and
   streamed into one ``features.parquet`` (one partition in memory at a time).

Every pass calls the same family code as the pandas engine on a ``History`` of a partition's
rows, so the features are the same (tests hold the two equal); only the global parts (prior,
text models, category levels, which fields are present) are merged from aggregates.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.families import active_families, build_manifest
from features.families.categories import PREFIX as CATEGORY_PREFIX
from features.families.entity_history import ALL_OUTCOMES
from features.families.text import FAMILY as TEXT
from features.families.valuation import FIRST_PER_ITEM_US
from features.intake.contract import FIELDS, Contract, coerce_declarations
from features.params import FeatureParams
from features.pipeline.family import Family, History, SpecContext
from features.pipeline.frame import meta_columns
from features.pipeline.history import US_PER_DAY
from features.pipeline.manifest import FeatureManifest
from features.pipeline.prepare import (
    as_known_at,
    available_inputs,
    categorical_columns,
    entity_of,
    evidence_period,
    outcome_events,
    outcome_rows,
    period_of,
    prepare,
    refit_start_us,
    result_times,
)
from features.pipeline.refit import RefitPart

log = logging.getLogger(__name__)

ROW = "_row"  # the row's position in the history's (declared_at, declaration_id) order
T_US = "_t_us"  # declared_at in UTC microseconds: the sort key of the stage pass
KEY_PREFIX = "_key:"  # a partition key's hash column
# (evidence_period: the last refit period whose fit does not learn from the declaration)
TEXT_KEYS = ("period", "evidence_period", "description", "hs_chapter", "hs6")
DEFAULT_PARTITION_ROWS = 250_000
NEVER = np.iinfo(np.int64).max


class DaskEngineError(ParcelriskError):
    """The Dask engine cannot build these features (cluster, input or a family it cannot split)."""


@dataclass
class Plan:
    """What the build computes, decided on the client from the aggregates."""

    contract: Contract
    params: FeatureParams
    manifest: FeatureManifest
    row_families: list[Family]
    keyed: dict[str, list[Family]]  # partition key -> the families computed after its shuffle
    text: bool  # the text family is in the manifest
    whole: dict[str, Any] = field(default_factory=dict)  # History.whole of every partition


# ---------------------------------------------------------------------------------------------
# the cluster


@contextlib.contextmanager
def dask_client(scheduler: str | None, *, n_workers: int = 2) -> Iterator[Any]:
    """A ``distributed.Client``: on ``scheduler`` (an address) or on a ``LocalCluster`` of
    ``n_workers`` single-threaded processes (the families' numpy code holds the GIL). Dask's
    own logging is kept to errors: its shuffle and connection notices are not the user's."""
    from distributed import Client, LocalCluster

    with _quiet_dask():
        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise DaskEngineError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc}"
                ) from exc
            try:
                yield client
            finally:
                client.close()
            return
        with (
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                # no dashboard; its HTTP server on a free port, never a clash with another cluster
                dashboard_address=":0",
                scheduler_kwargs={"dashboard": False},
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("distributed", "dask")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# ---------------------------------------------------------------------------------------------
# pass 1: stage


def _canonical(
    raw: pd.DataFrame, contract: Contract, pseudonym_key: bytes, as_of: pd.Timestamp | None
) -> pd.DataFrame:
    """A partition of the contract file in canonical dtypes (as known at ``as_of``), with its
    sort key."""
    frame = coerce_declarations(
        raw.reset_index(drop=True),
        with_outcomes=True,
        contract=contract,
        pseudonym_key=pseudonym_key,
    )
    if as_of is not None:
        frame = as_known_at(frame, as_of)
    frame[T_US] = frame["declared_at"].astype("datetime64[us, UTC]").astype("int64").to_numpy()
    return frame


def _local_order(part: pd.DataFrame) -> pd.DataFrame:
    """A partition of one time range in the history's order (ties at an instant by id)."""
    if part.index.name == T_US:  # set_index put the sort key in the index: back, last
        part = part.reset_index()
        part = part[[*part.columns.drop(T_US), T_US]]
    return part.sort_values([T_US, "declaration_id"], kind="stable").reset_index(drop=True)


def _time_sample(part: pd.DataFrame) -> np.ndarray:
    """Quantiles of a part's declaration times (where its rows are, for the boundaries)."""
    t = part[T_US].to_numpy(np.int64)
    return np.quantile(t, np.linspace(0, 1, 101)).astype(np.int64) if len(t) else t


def _boundaries(sample: np.ndarray, n_parts: int) -> list[int]:
    """Time boundaries of about ``n_parts`` ranges holding as many rows each (an instant is
    never split: its rows are equal keys); at least one range."""
    if not len(sample):
        return [0, 0]
    cuts = np.unique(np.quantile(sample, np.linspace(0, 1, n_parts + 1)).astype(np.int64))
    cuts[0], cuts[-1] = sample.min(), sample.max()
    return cuts.tolist() if len(cuts) > 1 else [int(cuts[0]), int(cuts[0])]


def _number_and_key(
    part: pd.DataFrame,
    offsets: list[int],
    keys: tuple[str, ...],
    contract: Contract,
    params: FeatureParams,
    partition_info: dict | None = None,
) -> pd.DataFrame:
    """Row numbers in the global order and each partition key's hash (a row with a part of
    a key missing has no history under it: it is spread by its row number instead)."""
    start = offsets[partition_info["number"]] if partition_info else 0
    part = part.reset_index(drop=True)
    rows = np.arange(start, start + len(part), dtype=np.int64)
    prep = prepare(part, contract, params)
    out = part.assign(**{ROW: rows})
    spread = pd.util.hash_array(rows)
    for key in keys:
        values = pd.DataFrame({p: pd.array(prep[p], dtype=object) for p in entity_of(key).parts})
        hashed = pd.util.hash_pandas_object(values, index=False).to_numpy()
        missing = values.isna().any(axis=1).to_numpy()
        out[KEY_PREFIX + key] = np.where(missing, spread, hashed).astype(np.int64)
    return out


def stage(
    declarations: Path,
    contract: Contract,
    params: FeatureParams,
    keys: tuple[str, ...],
    work: Path,
    *,
    partition_rows: int,
    pseudonym_key: bytes,
    as_of: pd.Timestamp | None = None,
) -> tuple[Path, list[int]]:
    """Pass 1: the history sorted, numbered and keyed into ``work/staged``; the first row of
    each partition (and the total after the last)."""
    import dask
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    n_rows = pq.ParquetFile(declarations).metadata.num_rows
    n_parts = max(1, -(-n_rows // partition_rows))
    raw = dd.read_parquet(str(declarations), split_row_groups=True)
    meta = _canonical(raw._meta, contract, pseudonym_key, as_of)
    canonical_dir = work / "canonical"
    raw.map_partitions(_canonical, contract, pseudonym_key, as_of, meta=meta).to_parquet(
        str(canonical_dir), write_index=False
    )
    # Range-partitioned by time on boundaries from each part's time quantiles (set_index with
    # given divisions): dask's sort_values computes them inside its own graph lowering, which
    # hung on a distributed cluster (dask 2026.8), and kept one input partition as one.
    times = dd.read_parquet(str(canonical_dir), columns=[T_US], split_row_groups=False)
    samples = dask.compute(*[dask.delayed(_time_sample)(p) for p in times.to_delayed()])
    boundaries = _boundaries(np.concatenate(samples), n_parts)
    canonical = dd.read_parquet(str(canonical_dir), split_row_groups=False)
    ordered = canonical.set_index(T_US, divisions=boundaries, sort=True).map_partitions(
        _local_order, meta=meta
    )
    sorted_dir = work / "sorted"
    ordered.to_parquet(str(sorted_dir), write_index=False)
    shutil.rmtree(canonical_dir)
    sorted_frame = dd.read_parquet(str(sorted_dir), split_row_groups=False)
    lengths = [
        pq.ParquetFile(path).metadata.num_rows for path in _parts(sorted_dir)
    ]  # the files, in partition order
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(int).tolist()
    sample = _number_and_key(sorted_frame._meta, [0], keys, contract, params)
    staged = sorted_frame.map_partitions(
        _number_and_key, offsets, keys, contract, params, meta=sample
    )
    staged_dir = work / "staged"
    staged.to_parquet(str(staged_dir), write_index=False)
    shutil.rmtree(sorted_dir)
    return staged_dir, offsets


def _parts(directory: Path) -> list[Path]:
    """A dataset's part files in partition order (dask names them part.<i>.parquet)."""
    files = list(Path(directory).glob("part.*.parquet"))
    return sorted(files, key=lambda p: int(p.name.split(".")[1]))


# ---------------------------------------------------------------------------------------------
# pass 2: aggregates


def _in_order(part: pd.DataFrame) -> pd.DataFrame:
    """A partition's rows in the history's order (a shuffle leaves them in any order)."""
    return part.sort_values(ROW, kind="stable").reset_index(drop=True)


def _history(part: pd.DataFrame, plan: Plan) -> History:
    """The rows of a partition, in the history's order (``_in_order``), as a history."""
    return History(
        prepare(part, plan.contract, plan.params),
        plan.params,
        plan.contract,
        plan.manifest,
        outcome_events(part),
        whole=plan.whole,
    )


def _partial(part: pd.DataFrame, contract: Contract, params: FeatureParams) -> dict[str, Any]:
    """What one partition says of the parts of the whole history no partition can learn."""
    part = _in_order(part)
    prep = prepare(part, contract, params)
    rows = part[ROW].to_numpy(np.int64)
    t = prep["t_us"]
    events = outcome_events(part)
    levels = {}
    for column in categorical_columns(params, contract):
        frame = pd.DataFrame({"level": pd.array(prep[column], dtype=object), "row": rows})
        levels[column] = frame.dropna().groupby("level", sort=False)["row"].min()
    declared = (
        _text_keys(prep, params)
        .groupby(list(TEXT_KEYS), dropna=False, sort=False)
        .size()
        .rename("n")
    )
    results = (
        pd.DataFrame(
            {
                "period": evidence_period(events["t_us"], params),  # the fits that learn it
                "description": prep["description"][events["rows"]],
                "illicit": events["illicit"],
            }
        )
        .groupby(["period", "description", "illicit"], sort=False)
        .size()
        .rename("n")
    )
    # each result with its description: the text evidence of the results recorded before the
    # cutoff (``features.pipeline.refit``), which periods of recording cannot tell
    result_rows = pd.DataFrame(
        {
            "t_us": events["t_us"],
            "description": prep["description"][events["rows"]],
            "illicit": events["illicit"],
        }
    )
    hs6 = pd.DataFrame({"hs6": pd.array(prep["hs6"], dtype=object), "row": rows})
    per_item = np.flatnonzero(~np.isnan(prep["log_value_per_item"]))
    return {
        "inputs": set(available_inputs(part, contract)),
        "levels": levels,
        "outcomes": {name: events[name] for name in ("t_us", "illicit", "revenue_cents")},
        "declared": declared,
        "results": results,
        "result_rows": result_rows,
        "hs6_first": hs6.dropna().groupby("hs6", sort=False)["row"].min(),
        "first_per_item_us": int(t[per_item[0]]) if len(per_item) else NEVER,
        "last_t_us": int(t[-1]) if len(t) else None,
        "last_ids": part["declaration_id"].to_numpy(object)[t == t[-1]].tolist() if len(t) else [],
    }


@dataclass
class Aggregates:
    """The partial aggregates of every partition, merged (as the whole history gives them)."""

    inputs: tuple[str, ...]  # fields holding values, in contract order
    categories: dict[str, tuple[str, ...]]  # cat_<column> -> levels in order of first row
    outcomes: dict[str, np.ndarray]  # every recorded result (t_us, illicit, revenue_cents)
    declared: pd.DataFrame  # TEXT_KEYS + n: distinct declarations per refit period
    results: pd.DataFrame  # period, description, illicit, n: results per evidence period
    result_rows: pd.DataFrame  # t_us, description, illicit: every recorded result
    hs6_vocabulary: np.ndarray  # HS6 codes in order of first row
    first_per_item_us: int  # the first declaration with a value per item (NEVER: none)
    last_t_us: int  # the last declaration
    last_ids: tuple[str, ...]  # the ids declared at it


def _merged(
    partials: list[dict[str, Any]], contract: Contract, params: FeatureParams
) -> Aggregates:
    """The partial aggregates of every partition merged (as the whole history gives them)."""
    present = set().union(*(p["inputs"] for p in partials))
    names = [f.name for f in FIELDS] + [e.name for e in contract.extras]
    inputs = tuple(n for n in names if n in present)
    categories = {}
    for column in categorical_columns(params, contract):
        first = pd.concat([p["levels"][column] for p in partials]).groupby(level=0).min()
        levels = first.sort_values(kind="stable").index[: params.max_categories]
        if len(levels):
            categories[f"{CATEGORY_PREFIX}{column}"] = tuple(str(v) for v in levels)
    outcomes = {
        name: np.concatenate([p["outcomes"][name] for p in partials])
        for name in ("t_us", "illicit", "revenue_cents")
    }
    declared = (
        pd.concat([p["declared"] for p in partials])
        .groupby(level=list(range(len(TEXT_KEYS))), dropna=False, sort=False)
        .sum()
        .reset_index()
    )
    results = pd.concat([p["results"] for p in partials])
    results = (
        results.groupby(level=[0, 1, 2], sort=False).sum().reset_index()
        if len(results)
        else pd.DataFrame({"period": [], "description": [], "illicit": [], "n": []})
    )
    result_rows = pd.concat([p["result_rows"] for p in partials], ignore_index=True)
    hs6_first = pd.concat([p["hs6_first"] for p in partials]).groupby(level=0).min()
    hs6_vocabulary = np.asarray(hs6_first.sort_values(kind="stable").index, dtype=object)
    first_per_item = min(p["first_per_item_us"] for p in partials)
    last_t_us = max(p["last_t_us"] for p in partials if p["last_t_us"] is not None)
    # the instant's declarations may span partitions (a date-only day at its local midnight)
    last_ids = tuple(
        sorted(i for p in partials if p["last_t_us"] == last_t_us for i in p["last_ids"])
    )
    return Aggregates(
        inputs,
        categories,
        outcomes,
        declared,
        results,
        result_rows,
        hs6_vocabulary,
        first_per_item,
        last_t_us,
        last_ids,
    )


def _plan(
    contract: Contract,
    params: FeatureParams,
    inputs: tuple[str, ...],
    categories: dict[str, tuple[str, ...]],
) -> Plan:
    ctx = SpecContext(params, contract, inputs, categories)
    manifest = build_manifest(ctx)
    rows, keyed, text = [], {}, False
    for family in active_families(ctx):
        if family.distribution == "rows":
            rows.append(family)
        elif family.distribution == "keys":
            for key in family.partition_keys(ctx):
                keyed.setdefault(key, []).append(family)
        elif family is TEXT:
            text = True
        else:
            raise DaskEngineError(
                f"feature family {family.name!r} does not say how to compute it on partitions "
                "(Family.distribution): build these features with --engine pandas"
            )
    return Plan(contract, params, manifest, rows, keyed, text)


def partition_keys_of(contract: Contract, params: FeatureParams) -> tuple[str, ...]:
    """Every key any "keys" family may shuffle on under these settings (before the data says
    which fields hold values: a key whose fields are empty is hashed, never used)."""
    ctx = SpecContext(params, contract, None, {})
    keys: dict[str, None] = {}
    for family in active_families(ctx):
        if family.distribution == "keys":
            keys.update(dict.fromkeys(family.partition_keys(ctx)))
    return tuple(keys)


# ---------------------------------------------------------------------------------------------
# passes 3 and 4: rows and keys


def _text_keys(prep: Any, params: FeatureParams) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "period": period_of(prep["t_us"], params.refit_period_days),
            "evidence_period": evidence_period(prep["t_us"], params),
            "description": prep["description"],
            "hs_chapter": prep["hs_chapter"],
            "hs6": prep["hs6"],
        }
    )


def _rows_pass(part: pd.DataFrame, plan: Plan, text_table: pd.DataFrame | None) -> pd.DataFrame:
    """Ids, labels, reason context, the "rows" families and the text features of a partition."""
    part = _in_order(part)
    history = _history(part, plan)
    values: dict[str, Any] = {}
    for family in plan.row_families:
        values.update(family.batch(history))
    if text_table is not None:
        looked_up = _text_keys(history.prep, plan.params).merge(
            text_table, on=list(TEXT_KEYS), how="left", sort=False
        )
        values.update({c: looked_up[c].to_numpy(np.float64) for c in text_table.columns[4:]})
    declarations = part.drop(columns=[c for c in part.columns if c == ROW or c.startswith("_")])
    frame = pd.DataFrame(meta_columns(history.prep, declarations))
    for name in plan.manifest.names:
        if name in values:
            frame[name] = np.asarray(values[name], dtype=np.float64)
    frame.index = pd.Index(part[ROW].to_numpy(np.int64), name=ROW)
    return frame


def _keys_pass(
    part: pd.DataFrame,
    plan: Plan,
    key: str,
    snapshot: tuple[int, Path] | None = None,
    partition_info: dict | None = None,
) -> pd.DataFrame:
    """The features of ``key``'s families on rows holding every row of their keys; with
    ``snapshot`` (cutoff, directory), their entity-state pieces as known at the cutoff are
    written there, one file per partition (a retried task writes the same file again)."""
    part = _in_order(part)
    history = _history(part, plan)
    values: dict[str, np.ndarray] = {}
    for family in plan.keyed[key]:
        values.update(family.batch_keys(history, key))
    names = [n for n in plan.manifest.names if n in values]
    frame = pd.DataFrame({n: np.asarray(values[n], dtype=np.float64) for n in names})
    rows = part[ROW].to_numpy(np.int64)
    frame[ROW] = rows
    if snapshot is not None and partition_info is not None:
        cutoff_us, directory = snapshot
        outcomes = history.outcomes
        recorded = outcomes["t_us"] < cutoff_us  # as known at the cutoff
        known = History(
            history.prep,
            plan.params,
            plan.contract,
            plan.manifest,
            {name: values_[recorded] for name, values_ in outcomes.items()},
            whole=plan.whole,
        )
        known.share_codes(history)
        pieces = {
            family.name: family.snapshot_piece(known, key, cutoff_us, rows)
            for family in plan.keyed[key]
        }
        path = Path(directory) / f"{partition_info['number']:06d}.pkl"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(pieces, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(path)
    return frame


# ---------------------------------------------------------------------------------------------
# the build


@dataclass
class DaskBuild:
    manifest: FeatureManifest
    n_rows: int
    n_partitions: int
    state: Any  # features.pipeline.snapshot.EntityState


def build_dask(
    declarations: Path,
    contract: Contract,
    params: FeatureParams,
    out_file: Path,
    client: Any,
    *,
    work_dir: Path,
    pseudonym_key: bytes,
    pseudonym_key_id: str | None = None,
    as_of: pd.Timestamp | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
) -> DaskBuild:
    """Write the features of the history in ``declarations`` (a contract Parquet file) to
    ``out_file`` with the Dask engine on ``client``'s cluster, and give the manifest and the
    entity state (as known at ``as_of``, by default just after the last declaration).

    ``work_dir``: where the passes write their partitions (a directory every worker can
    reach: on a remote cluster, a shared file system)."""
    import dask
    import dask.dataframe as dd

    from features.pipeline.snapshot import (
        LATE_ENTRY_DAYS,
        EntityState,
        id_hashes,
        last_result_of,
        pending_results_of,
        recent_ids_of,
    )

    work = Path(tempfile.mkdtemp(prefix="dask-features-", dir=work_dir))
    try:
        started = time.perf_counter()
        keys = partition_keys_of(contract, params)
        staged_dir, offsets = stage(
            declarations,
            contract,
            params,
            keys,
            work,
            partition_rows=partition_rows,
            pseudonym_key=pseudonym_key,
            as_of=as_of,
        )
        n_rows = offsets[-1]
        if n_rows == 0:
            when = f" before --as-of {as_of}" if as_of is not None else ""
            raise DaskEngineError(f"{declarations}: no declarations{when} to build features from")
        log.debug("dask stage: %.2f s", time.perf_counter() - started)
        staged = dd.read_parquet(str(staged_dir), split_row_groups=False)
        partials = dask.compute(
            *[dask.delayed(_partial)(p, contract, params) for p in staged.to_delayed()]
        )
        agg = _merged(list(partials), contract, params)
        plan = _plan(contract, params, agg.inputs, agg.categories)
        plan.whole = {ALL_OUTCOMES: agg.outcomes, FIRST_PER_ITEM_US: agg.first_per_item_us}
        # as the pandas engine: the entity state just after the last declaration
        cutoff_us = int(as_of.value // 1000) if as_of is not None else agg.last_t_us + 1
        text_table = None
        if plan.text:
            scores = TEXT.batch_of_counts(agg.declared, agg.results, agg.hs6_vocabulary, params)
            text_table = pd.concat([agg.declared[list(TEXT_KEYS)], scores], axis=1)
        log.debug("dask aggregates: %.2f s", time.perf_counter() - started)

        divisions = (*offsets[:-1], offsets[-1] - 1)  # the staged partitions' row ranges
        base_meta = _rows_pass(staged._meta, plan, text_table)
        # sent to every worker once, not inside each graph (the plan carries every result:
        # tens of MB at 10M parcels)
        plan_arg = client.scatter(plan, broadcast=True)
        text_arg = client.scatter(text_table, broadcast=True) if text_table is not None else None
        base = staged.map_partitions(_rows_pass, plan_arg, text_arg, meta=base_meta)
        base_dir = work / "rows"
        base.to_parquet(str(base_dir), write_index=True)
        outputs = [dd.read_parquet(str(base_dir), index=ROW, calculate_divisions=True)]
        pieces_dirs = {}
        for i, key in enumerate(plan.keyed):
            pieces_dirs[key] = work / f"pieces-{i}"
            pieces_dirs[key].mkdir()
            shuffled = staged.shuffle(on=KEY_PREFIX + key, npartitions=staged.npartitions)
            sample = _keys_pass(staged._meta, plan, key)
            values = shuffled.map_partitions(
                _keys_pass, plan_arg, key, (cutoff_us, pieces_dirs[key]), meta=sample
            )
            aligned = values.set_index(ROW, divisions=divisions)
            key_dir = work / f"keys-{i}"
            aligned.to_parquet(str(key_dir), write_index=True)
            outputs.append(dd.read_parquet(str(key_dir), index=ROW, calculate_divisions=True))
            log.debug("dask key %s: %.2f s", key, time.perf_counter() - started)
        _write_joined(outputs, plan.manifest, out_file)
        log.debug("dask written: %.2f s", time.perf_counter() - started)

        ctx = SpecContext(params, contract, agg.inputs, plan.manifest.categories)
        recorded = agg.outcomes["t_us"] < cutoff_us
        known_outcomes = {name: v[recorded] for name, v in agg.outcomes.items()}
        empty = _history(_in_order(staged._meta), plan)  # "rows" families learn nothing from rows
        parts: dict[str, Any] = {}
        families = active_families(ctx)
        for family in families:
            if family.distribution == "keys":
                pieces = {
                    key: _read_pieces(pieces_dirs[key], family.name)
                    for key in family.partition_keys(ctx)
                }
                parts[family.name] = family.merge_snapshot(pieces, ctx, known_outcomes, cutoff_us)
            elif family is TEXT:
                parts[family.name] = RefitPart(
                    TEXT.part_of_counts(
                        agg.declared, agg.results, agg.hs6_vocabulary, params, cutoff_us
                    ),
                    int(period_of(np.array([cutoff_us]), params.refit_period_days)[0]),
                    TEXT.evidence_of_aggregates(
                        agg.declared,
                        agg.result_rows[agg.result_rows["t_us"] < cutoff_us],
                        params,
                    ),
                    name=TEXT.name,
                )
            else:
                parts[family.name] = family.fit_part(empty, cutoff_us)
        # the ids of the last days (the partitions are time ranges: most give none)
        recent_from = agg.last_t_us - LATE_ENTRY_DAYS * US_PER_DAY
        ids = staged[[T_US, "declaration_id"]]
        recent_rows = ids.map_partitions(_declared_from, recent_from, meta=ids._meta)
        recent = pd.concat(dask.compute(*recent_rows.to_delayed()), ignore_index=True)
        # the ids of the declarations with a result (of the cut history, with an --as-of)
        outcome = staged[
            ["declaration_id", "inspected", "inspected_at", "illicit"]
        ]  # read only these (which results exist, not when known)
        inspected = outcome.map_partitions(_with_result, meta=staged._meta[["declaration_id"]])
        inspected_ids = pd.concat(dask.compute(*inspected.to_delayed()), ignore_index=True)
        pending: tuple[dict[str, Any], ...] = ()
        if as_of is None:  # as the pandas engine: an --as-of state is the history as known then
            later = staged.map_partitions(_recorded_from, cutoff_us, meta=staged._meta)
            pending = pending_results_of(
                pd.concat(dask.compute(*later.to_delayed()), ignore_index=True),
                contract,
                cutoff_us,
            )
        state = EntityState(
            cutoff_us=cutoff_us,
            period_start_us=refit_start_us(cutoff_us, params.refit_period_days),
            params=params,
            contract=contract,
            manifest=plan.manifest,
            parts=parts,
            families=families,
            pseudonym_key_id=pseudonym_key_id,
            last_declared_us=agg.last_t_us,
            last_declared_ids=agg.last_ids,
            pending_results=pending,
            recent_ids=recent_ids_of(
                recent["declaration_id"].to_numpy(dtype=object),
                recent[T_US].to_numpy(np.int64),
                agg.last_t_us,
            ),
            result_ids=np.unique(id_hashes(inspected_ids["declaration_id"].to_numpy(dtype=object))),
            last_result_us=last_result_of(agg.outcomes["t_us"], cutoff_us),
        )
        log.debug("dask entity state: %.2f s", time.perf_counter() - started)
        return DaskBuild(plan.manifest, n_rows, len(offsets) - 1, state)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _with_result(part: pd.DataFrame) -> pd.DataFrame:
    """A staged partition's ids of declarations with a recorded inspection result."""
    return part.loc[outcome_rows(part), ["declaration_id"]]


def _declared_from(part: pd.DataFrame, from_us: int) -> pd.DataFrame:
    """A staged partition's rows declared from ``from_us`` on."""
    return part.loc[part[T_US].to_numpy() >= from_us]


def _recorded_from(part: pd.DataFrame, cutoff_us: int) -> pd.DataFrame:
    """A staged partition's rows whose inspection result is recorded from ``cutoff_us`` on."""
    recorded = part.loc[outcome_rows(part)]
    t_us = result_times(recorded).astype("datetime64[us, UTC]").astype("int64").to_numpy()
    return recorded.loc[t_us >= cutoff_us]


def _read_pieces(directory: Path, family: str) -> list[Any]:
    """A family's snapshot pieces of every partition of one shuffle, in partition order."""
    return [
        pickle.loads(path.read_bytes())[family] for path in sorted(Path(directory).glob("*.pkl"))
    ]


def _write_joined(outputs: list[Any], manifest: FeatureManifest, out_file: Path) -> None:
    """The passes' partitions side by side, columns in the pandas engine's order (ids, labels,
    reason context, then the manifest's features), streamed into one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_parts = outputs[0].npartitions
    if any(o.npartitions != n_parts for o in outputs):
        raise DaskEngineError("the passes' partitions do not line up by row number")
    writer = None
    try:
        for i in range(n_parts):
            frames = [o.get_partition(i).compute() for o in outputs]
            joined = pd.concat(frames, axis=1)
            if len(frames[0]) != len(joined) or any(len(f) != len(joined) for f in frames):
                raise DaskEngineError(f"partition {i}: the passes do not hold the same rows")
            meta = [c for c in frames[0].columns if c not in manifest.names]
            joined = joined[meta + list(manifest.names)].reset_index(drop=True)
            for name, dtype in joined.dtypes.items():  # Parquet reads text back as "string"
                if isinstance(dtype, pd.StringDtype) and dtype != "str":
                    joined[name] = joined[name].astype("str")
            table = pa.Table.from_pandas(joined, preserve_index=False)
            if writer is None:
                keep = [name for name, dtype in joined.dtypes.items() if dtype.kind != "f"]
                writer = pq.ParquetWriter(  # as the pandas engine's ``write_frame``
                    out_file, table.schema, use_dictionary=keep, write_statistics=keep
                )
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
