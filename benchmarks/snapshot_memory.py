"""A serving worker's entity-state snapshot in memory, by family: what each loaded part holds.

Generates ``--parcels`` over ``--days``, builds the features and the snapshot at the last
declaration (``features build``'s path), saves it, then loads it as a worker does
(``EntityState.load`` then ``LiveState`` with the snapshot's event copies released) and measures,
with tracemalloc, the bytes each family's part holds once loaded. Prints one JSON document
(bytes per parcel of the history, by family, and the snapshot's size on disk).

    python benchmarks/snapshot_memory.py [--parcels 200000] [--days 180]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, its own folder comes first on sys.path, where benchmarks/features.py would
# shadow the features package: the repo root goes first and the script's folder goes.
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, Path(__file__).resolve().parent)
]
# The generator pseudonymises consignees: a throwaway key unless one is configured.
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)


def main() -> None:
    import pandas as pd

    from features.intake.contract import DECLARATION_COLUMNS, Contract
    from features.params import FeatureParams
    from features.pipeline.build import build_features
    from features.pipeline.live import LiveState
    from features.pipeline.snapshot import EntityState, build_entity_state
    from features.synthetic import SyntheticParams, generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    declarations, _ = generate(
        SyntheticParams(seed=args.seed, parcels=args.parcels, days=args.days)
    )
    params = FeatureParams()
    manifest = build_features(declarations, Contract(), params).manifest
    cutoff = declarations["declared_at"].max()
    state = build_entity_state(declarations, Contract(), params, cutoff=cutoff, manifest=manifest)
    with tempfile.TemporaryDirectory(prefix="snapshot-memory-") as tmp:
        directory = state.save(Path(tmp) / "entity_state")
        disk = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
        del state
        gc.collect()
        loaded = EntityState.load(directory)
        by_family: dict[str, int] = {}
        load_s: dict[str, float] = {}
        for family in loaded.families:
            gc.collect()
            tracemalloc.start()
            started = time.perf_counter()
            part = family.load_part(directory)
            live = part.with_live() if hasattr(part, "with_live") else part
            release = getattr(part, "release_event_copies", None)
            if release is not None:
                release()
            load_s[family.name] = round(time.perf_counter() - started, 3)
            by_family[family.name] = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            del part, live
        live_state = LiveState(loaded)  # the worker's path loads and releases without error
        live_state.release_snapshot_copies()
        # the first declaration of the next refit period refits valuation, heading and text
        # references on the whole history's evidence (features.pipeline.refit); the next one
        # of that period reuses the fit
        parcel = declarations.tail(1)[list(DECLARATION_COLUMNS)].reset_index(drop=True)
        later = parcel["declared_at"].iloc[0] + pd.Timedelta(days=params.refit_period_days)
        refit_s = []
        for i in range(2):
            started = time.perf_counter()
            live_state.features(parcel.assign(declared_at=later, declaration_id=f"refit-{i}"))
            refit_s.append(round(time.perf_counter() - started, 3))
    n = len(declarations)
    print(
        json.dumps(
            {
                "parcels": n,
                "days": args.days,
                "snapshot_disk_mb": round(disk / 1e6, 1),
                "family_mb": {k: round(v / 1e6, 1) for k, v in by_family.items()},
                "family_bytes_per_parcel": {k: round(v / n, 1) for k, v in by_family.items()},
                "total_bytes_per_parcel": round(sum(by_family.values()) / n, 1),
                "load_s": load_s,
                # features of one declaration in the next refit period: first (refits every
                # refit family), then cached
                "next_period_first_request_s": refit_s[0],
                "next_period_cached_request_s": refit_s[1],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
