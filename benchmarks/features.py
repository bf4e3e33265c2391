"""Benchmark: the feature build beside a polars reference of the entity-history family.

For each size (default 300k, 1M and 3M generated declarations), in one fresh process per size:
- the project's entity-history family alone (``EntityHistoryFamily.batch``, keys included);
- a reference implementation of the same 99 features in polars, written here from the
  definitions (not from the project's code), checked equal to the project's columns: counts
  exactly, floats to 1e-12 relative;
- the whole ``features build`` path (build_features + the entity-state snapshot) and its peak
  memory, from the declarations Parquet as the CLI reads it.

Each timing is the best of ``--repeat`` runs (sizes above 1M run once: minutes each). Prints one JSON document with the ratios the issue
targets (family vs polars, whole build vs polars, growth 300k -> 1M). Needs polars (dev extra).

Usage: python benchmarks/features.py [--sizes 300000,1000000,3000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
# run as a script, the benchmarks folder comes first on sys.path, where benchmarks/features.py
# and benchmarks/serving.py would shadow the packages they measure
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)

US_PER_DAY = 86_400 * 1_000_000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the polars reference -----------------------------------------------------------------------


def polars_entity_history(
    columns: dict, entities: list[str], outcomes: dict, settings: dict
) -> dict:
    """The entity-history features by their definitions, in polars.

    ``columns``: key columns (str, None where missing) and ``t_us`` (declaration time, us);
    ``outcomes``: the recorded results (``rows``, ``t_us``, ``illicit``, ``revenue_cents``).
    An event counts for a parcel declared at t iff it happened strictly before t; a key with a
    missing part is unknown (every feature empty, the hit rate the prior).
    """
    import numpy as np
    import polars as pl

    windows, ow = settings["windows_days"], settings["outcome_window_days"]
    strength, default_prior = settings["prior_strength"], settings["default_prior"]
    t = pl.Series("t", columns["t_us"], dtype=pl.Int64)
    n = len(t)
    out_frame = pl.DataFrame(
        {
            "row": outcomes["rows"].astype(np.int64),
            "ot": outcomes["t_us"].astype(np.int64),
            "ill": outcomes["illicit"].astype(np.int64),
            "rev": outcomes["revenue_cents"].astype(np.int64),
        }
    )
    # the prior: hit rate of every result recorded strictly before t
    totals = (
        out_frame.group_by("ot")
        .agg(pl.len().alias("ins"), pl.col("ill").sum())
        .sort("ot")
        .with_columns(pl.col("ins").cum_sum(), pl.col("ill").cum_sum())
    )
    queries = pl.DataFrame({"t": t})
    prior_frame = queries.join_asof(
        totals, left_on="t", right_on="ot", strategy="backward", allow_exact_matches=False
    ).select(
        (
            (pl.col("ill").fill_null(0) + strength * default_prior)
            / (pl.col("ins").fill_null(0) + strength)
        ).alias("prior")
    )
    prior = prior_frame["prior"]
    frame = pl.DataFrame(
        {
            name: pl.Series(name, values, dtype=pl.String)
            for name, values in columns.items()
            if name != "t_us"
        }
    ).with_columns(t, pl.int_range(n, dtype=pl.Int64).alias("row"), prior)

    features: dict = {}
    for spec in entities:
        parts = spec.split("*")
        prefix = "_x_".join(_PREFIXES.get(p, p) for p in parts)
        # an integer code per key (null if a part is missing); rows stay in time order
        key = pl.concat_str([pl.col(p) for p in parts], separator="|")
        rows = frame.select(
            key.cast(pl.Categorical).to_physical().cast(pl.Int64).alias("k"), "t", "row"
        )
        # running count of the key's declarations, in (key, time) order: at an instant shared
        # by several parcels the as-of join below takes the last, which counts them all
        per_time = (
            rows.select("k", "t")
            .filter(pl.col("k").is_not_null())
            .sort("k", "t")
            .with_columns(pos=pl.int_range(pl.len(), dtype=pl.Int64))
            .select("k", "t", c=pl.col("pos") - _group_start(pl.col("k"), pl.col("pos")) + 1)
        )

        now = _before(rows, per_time, "t", 0, ["c"])["c"]
        for w in windows:
            then = _before(rows, per_time, "t", w * US_PER_DAY, ["c"])["c"]
            features[f"{prefix}_n_{w}d"] = (now - then).cast(pl.Float64)
        first_seen = rows.select(pl.col("t").min().over("k"))["t"]
        days = pl.select(pl.when(now > 0).then((t - first_seen) / US_PER_DAY).alias("d"))["d"]
        features[f"{prefix}_days_since_first"] = days

        # running totals of the key's results through each recording instant
        outs = (
            out_frame.with_columns(rows["k"].gather(out_frame["row"]).alias("k"))
            .filter(pl.col("k").is_not_null())
            .sort("k", "ot")
            .with_columns(pos=pl.int_range(pl.len(), dtype=pl.Int64))
            .with_columns(start=_group_start(pl.col("k"), pl.col("pos")))
            .with_columns(
                ins=pl.col("pos") - pl.col("start") + 1,
                ill=_running(pl.col("ill"), pl.col("start")),
                rev=_running(pl.col("rev"), pl.col("start")),
            )
        )
        known = _before(rows, outs, "ot", 0, ["ins", "ill", "rev"])
        recent = _before(rows, outs, "ot", ow * US_PER_DAY, ["ins", "ill"])
        n_ins, n_ill, rev = known["ins"], known["ill"], known["rev"]
        features[f"{prefix}_n_inspected"] = n_ins.cast(pl.Float64)
        features[f"{prefix}_n_illicit"] = n_ill.cast(pl.Float64)
        features[f"{prefix}_hit_rate"] = (n_ill + strength * prior) / (n_ins + strength)
        features[f"{prefix}_revenue_recovered_eur"] = rev / 100.0
        per_offence = pl.select(
            pl.when(n_ill > 0).then(rev / 100.0 / n_ill.clip(lower_bound=1)).alias("x")
        )["x"]
        features[f"{prefix}_revenue_per_offence_eur"] = per_offence
        features[f"{prefix}_illicit_{ow}d"] = (n_ill - recent["ill"]).cast(pl.Float64)
        features[f"{prefix}_inspected_{ow}d"] = (n_ins - recent["ins"]).cast(pl.Float64)
        unknown = rows["k"].is_null()
        if unknown.any():
            for name in [f for f in features if f.startswith(prefix + "_")]:
                value = prior if name.endswith("_hit_rate") else None
                features[name] = pl.select(
                    pl.when(unknown).then(value).otherwise(features[name]).alias("x")
                )["x"]
    return {name: series.to_numpy() for name, series in features.items()}


def _before(rows, right, on: str, shift: int, cols: list[str]):
    """Right's running totals of each row's key over the events strictly before t - shift
    (the rows are in time order, so the shifted times are too)."""
    import polars as pl

    q = rows.select("k", (pl.col("t") - shift).alias("q"))
    joined = q.join_asof(
        right.rename({on: "q"}),
        on="q",
        by="k",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    return joined.select([pl.col(c).fill_null(0) for c in cols])


def _group_start(key, pos):
    """Position of the first row of each row's key, in a frame sorted by key."""
    import polars as pl

    return pl.when(key != key.shift()).then(pos).forward_fill().fill_null(0)


def _running(values, start):
    """Running sum of ``values`` within each key (rows sorted by key, ``start`` its first)."""
    total = values.cum_sum()
    return total - total.gather(start) + values.gather(start)


_PREFIXES = {
    "seller_id": "seller",
    "consignee_id": "consignee",
    "platform_id": "platform",
    "operator_id": "operator",
    "origin_country": "origin",
    "seller_country": "seller_country",
    "hs_chapter": "hs_chapter",
    "hs6": "hs6",
}


# --- one size, in its own process ----------------------------------------------------------------


def _generate(size: int, out: str) -> None:
    from features.synthetic import generate_to_dir

    generate_to_dir(parcels=size, days=180, seed=1, out=Path(out), start="2026-01-01")


def _run(size: int, path: str, repeat: int, queue: mp.Queue) -> None:
    import numpy as np

    from features.families import active_families, build_manifest
    from features.families.categories import learn_categories
    from features.intake.io import read_declarations
    from features.params import load_settings
    from features.pipeline.build import build_to_dir
    from features.pipeline.family import History, SpecContext
    from features.pipeline.prepare import (
        available_inputs,
        entities_for,
        outcome_events,
        prepare,
        sort_declarations,
    )

    rss_before = _peak_mb()

    # the whole build as `parcelrisk features build --no-validate` runs it: read, features,
    # snapshot, files written (the validation gate is its own step, measured elsewhere)
    settings = load_settings(None)
    whole = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeat):
            started = time.perf_counter()
            build_to_dir(
                declarations_path=Path(path), out=Path(out), settings=settings, no_validate=True
            )
            whole.append(time.perf_counter() - started)
            gc.collect()
    peak_build = _peak_mb()

    # the entity-history family alone, on the prepared history
    declarations, contract = read_declarations(Path(path), with_outcomes=True)
    params = settings.features
    declarations = sort_declarations(declarations)
    inputs = available_inputs(declarations, contract)
    prep = prepare(declarations, contract, params)
    ctx = SpecContext(params, contract, inputs, learn_categories(prep, params, contract))
    manifest = build_manifest(ctx)
    outcomes = outcome_events(declarations)
    family = next(f for f in active_families(ctx) if f.name == "entity_history")
    project_times = []
    for _ in range(repeat):
        history = History(prep, params, contract, manifest, outcomes)
        started = time.perf_counter()
        ours = family.batch(history)
        project_times.append(time.perf_counter() - started)

    # the reference, from the same prepared key columns
    entities = [e.spec for e in entities_for(params, contract, inputs)]
    parts = sorted({p for spec in entities for p in spec.split("*")})
    columns = {p: prep[p] for p in parts} | {"t_us": prep["t_us"]}
    settings = {
        "windows_days": params.windows_days,
        "outcome_window_days": params.outcome_window_days,
        "prior_strength": params.prior_strength,
        "default_prior": params.default_prior,
    }
    polars_times = []
    for _ in range(repeat):
        started = time.perf_counter()
        reference = polars_entity_history(columns, entities, outcomes, settings)
        polars_times.append(time.perf_counter() - started)

    mismatched = []
    for name, expected in reference.items():
        got = np.asarray(ours.get(name), dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        if got.shape != expected.shape or not np.allclose(
            got, expected, rtol=1e-12, atol=0, equal_nan=True
        ):
            mismatched.append(name)
    missing = sorted(set(ours) - set(reference))
    queue.put(
        {
            "declarations": size,
            "repeats": repeat,
            "features_build_seconds": round(min(whole), 2),
            "features_build_rows_per_second": round(size / min(whole)),
            "features_build_peak_rss_mb": round(peak_build),
            "rss_before_build_mb": round(rss_before),
            "entity_history_seconds": round(min(project_times), 2),
            "polars_reference_seconds": round(min(polars_times), 2),
            "entity_history_vs_polars": round(min(project_times) / min(polars_times), 2),
            "features_build_vs_polars": round(min(whole) / min(polars_times), 2),
            "features_compared": len(reference),
            "mismatched_features": mismatched,
            "project_features_without_reference": missing,
        }
    )


def _in_process(ctx, target, size: int, *args) -> None:
    proc = ctx.Process(target=target, args=(size, *args))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"benchmark run for {size} declarations failed (exit {proc.exitcode})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="300000,1000000,3000000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = []
    ctx = mp.get_context("spawn")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            # generated in a process of its own: the measured process only reads and builds
            _in_process(ctx, _generate, size, tmp)
            queue = ctx.Queue()
            path = str(Path(tmp) / "declarations.parquet")
            repeat = args.repeat if size <= 1_000_000 else 1
            _in_process(ctx, _run, size, path, repeat, queue)
            runs.append(queue.get(timeout=5))
    by_size = {r["declarations"]: r for r in runs}
    growth = None
    if 300_000 in by_size and 1_000_000 in by_size:
        growth = round(
            by_size[1_000_000]["features_build_seconds"]
            / by_size[300_000]["features_build_seconds"],
            2,
        )
    targets = {
        "entity_history_vs_polars_max": 1.5,
        "features_build_vs_polars_max_at_1m": 3.0,
        "features_build_peak_rss_mb_max_at_1m": 2560,
        "growth_300k_to_1m_max": 3.6,
    }
    at_1m = by_size.get(1_000_000)
    meets = {
        "entity_history_vs_polars": all(
            r["entity_history_vs_polars"] <= targets["entity_history_vs_polars_max"] for r in runs
        ),
        "equal_to_reference": all(not r["mismatched_features"] for r in runs),
    }
    if at_1m:
        meets["features_build_vs_polars_at_1m"] = (
            at_1m["features_build_vs_polars"] <= targets["features_build_vs_polars_max_at_1m"]
        )
        meets["peak_at_1m"] = (
            at_1m["features_build_peak_rss_mb"] <= targets["features_build_peak_rss_mb_max_at_1m"]
        )
    if growth is not None:
        meets["growth_300k_to_1m"] = growth <= targets["growth_300k_to_1m_max"]
    print(
        json.dumps(
            {
                "benchmark": "features.entity_history vs polars",
                "cpu_count": os.cpu_count(),
                "runs": runs,
                "growth_300k_to_1m": growth,
                "targets": targets,
                "meets": meets,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
