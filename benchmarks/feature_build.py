"""Benchmark: batch feature build time and peak memory for 100k, 300k and 1M declarations.

Each size runs in its own process so peak RSS is that size's alone. Generation time is excluded.
Prints one JSON document. Usage: python benchmarks/feature_build.py [--sizes 100000,300000,1000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time

# A throwaway consignee pseudonym key when none is configured: the benchmark makes its own
# data, so no key file is needed (a PARCELRISK_PSEUDONYM_KEY already set is used instead).
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)


def _run(size: int, queue: mp.Queue) -> None:
    from features.intake.contract import Contract
    from features.params import FeatureParams
    from features.pipeline.build import build_features
    from features.synthetic import SyntheticParams, generate

    declarations, _ = generate(SyntheticParams(seed=1, parcels=size, days=180))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = build_features(declarations, Contract(), FeatureParams())
    seconds = time.perf_counter() - started
    queue.put(
        {
            "declarations": size,
            "seconds": round(seconds, 2),
            "rows_per_second": round(size / seconds),
            "features": len(result.manifest.names),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_after_generation_mb": round(rss_before),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,300000,1000000")
    args = parser.parse_args()
    runs = []
    ctx = mp.get_context("spawn")
    for size in (int(s) for s in args.sizes.split(",")):
        queue = ctx.Queue()
        proc = ctx.Process(target=_run, args=(size, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"benchmark run for {size} declarations failed (exit {proc.exitcode})")
        runs.append(queue.get(timeout=5))
    targets = {"seconds_1m_max": 60, "peak_rss_mb_max": 6144}
    big = [r for r in runs if r["declarations"] >= 1_000_000]
    ok = all(
        r["seconds"] <= targets["seconds_1m_max"] and r["peak_rss_mb"] <= targets["peak_rss_mb_max"]
        for r in big
    )
    print(
        json.dumps(
            {
                "benchmark": "features.pipeline.build",
                "runs": runs,
                "targets": targets,
                "meets_targets": ok,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
