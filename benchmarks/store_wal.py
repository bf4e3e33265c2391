"""The decision store's write-ahead log under sustained writes: its size over time, and what
``record()`` costs the scoring path.

Several writer processes (as the service's workers) each open their own store on one file and
loop as a worker does per batch: read what is new (``since``, the live state's catch-up), then
record a batch. The parent samples the size of the WAL and of the database every
``--sample-s`` while they write, then once more after ``--idle-s`` of silence and after the
writers closed their stores. Prints one JSON document.

    python benchmarks/store_wal.py [--seconds 60] [--writers 2] [--batch 2] [--rate 0]
                                   [--wal-max-mb 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

# A throwaway key for the store's integrity chain when none is configured (a key already set
# is used instead): without one the store refuses to open on a fresh machine.
os.environ.setdefault("PARCELRISK_AUDIT_KEY", "benchmark-throwaway-audit-key-" + "0" * 32)

MB = 1024 * 1024


def _record(worker: int, i: int, n_features: int):
    import numpy as np

    from serving.decision import DecisionRecord

    rng = np.random.default_rng(worker * 1_000_003 + i)
    declaration = {
        "declaration_id": f"W{worker}-{i}",
        "declared_at": "2026-05-01T10:00:00.000000Z",
        "hs_code": "610910",
        "description": "cotton t-shirts, printed, assorted sizes " * 4,
        "declared_value": float(rng.uniform(1, 500)),
        "origin_country": "CN",
        "consignor": f"shipper-{rng.integers(1000)}",
        "consignee": f"buyer-{rng.integers(100_000)}",
    }
    return DecisionRecord(
        decision_id=f"dec-{worker}-{i}",
        scored_at="2026-05-01T10:00:00.000000Z",
        declaration_id=declaration["declaration_id"],
        declaration_json=json.dumps(declaration),
        features=rng.random(n_features).tobytes(),
        manifest_fingerprint="f" * 64,
        model_name="parcel-risk",
        model_version="3",
        thresholds_version="t" * 16,
        lane_policy='{"aeo_risk_discount": 0.5, "exploration_rate": 0.01}',
        raw_score=float(rng.normal()),
        risk=float(rng.random()),
        expected_revenue=float(rng.random() * 10),
        lane="yellow",
        exploration=False,
        reasons=[{"feature": f"f{k}", "text": "t" * 40, "contribution": 0.1} for k in range(5)],
        warnings=[],
    )


def open_store(path: Path, wal_max_mb: float | None, checkpoint_interval_s: float | None):
    """The store, with the WAL limit when this version of it has one."""
    from serving.sqlite_store import SqliteDecisionStore

    options = {"wal_max_mb": wal_max_mb, "checkpoint_interval_s": checkpoint_interval_s}
    accepted = inspect.signature(SqliteDecisionStore).parameters
    return SqliteDecisionStore(
        path, **{k: v for k, v in options.items() if v is not None and k in accepted}
    )


def write_for(
    path: Path,
    worker: int,
    seconds: float,
    batch: int,
    n_features: int,
    wal_max_mb: float | None,
    checkpoint_interval_s: float | None,
    start: float,
    rate: float,
) -> dict[str, object]:
    """One writer process: catch up, record a batch, until ``seconds`` after ``start``."""
    store = open_store(path, wal_max_mb, checkpoint_interval_s)
    pool = [_record(worker, i, n_features) for i in range(256)]
    seq, rows, latencies = 0, 0, []
    while time.time() < start:
        time.sleep(0.001)
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        if rate:  # paced: this writer's share of ``rate`` rows/s
            ahead = began + rows / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        for found, _ in store.since(seq):
            seq = found
        records = [
            dataclasses.replace(pool[(rows + k) % len(pool)], decision_id=f"d{worker}-{rows + k}")
            for k in range(batch)
        ]
        started = time.perf_counter()
        store.record(records)
        latencies.append(time.perf_counter() - started)
        rows += batch
    return {"store": store, "rows": rows, "latencies": latencies}


def _writer(args: tuple, results: multiprocessing.Queue, closed: multiprocessing.Event) -> None:
    out = write_for(*args)
    store = out.pop("store")
    results.put(out)
    closed.wait()  # stay open through the idle sample, as a running service does
    store.close()
    results.put("closed")


def sizes(path: Path) -> tuple[float, float]:
    """(database MB, WAL MB)."""
    wal = Path(f"{path}-wal")
    return (
        os.path.getsize(path) / MB if path.exists() else 0.0,
        os.path.getsize(wal) / MB if wal.exists() else 0.0,
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    from features.params import ServeParams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="declarations per record()")
    parser.add_argument("--features", type=int, default=120, help="feature vector length")
    parser.add_argument("--wal-max-mb", type=float, default=ServeParams().audit_wal_max_mb)
    parser.add_argument("--checkpoint-interval-s", type=float, default=None)
    parser.add_argument("--rate", type=float, default=0.0, help="rows/s in all; 0: flat out")
    parser.add_argument("--sample-s", type=float, default=1.0)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, default=None, help="where the store is (tmp dir)")
    args = parser.parse_args()

    directory = Path(args.dir or tempfile.mkdtemp(prefix="store-wal-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "audit.db"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    open_store(path, args.wal_max_mb, args.checkpoint_interval_s).close()  # schema first

    context = multiprocessing.get_context("spawn")
    results, closed = context.Queue(), context.Event()
    start = time.time() + 3.0  # every writer spawned and open before the clock starts
    writers = [
        context.Process(
            target=_writer,
            args=(
                (
                    path,
                    w,
                    args.seconds,
                    args.batch,
                    args.features,
                    args.wal_max_mb,
                    args.checkpoint_interval_s,
                    start,
                    args.rate / args.writers,
                ),
                results,
                closed,
            ),
        )
        for w in range(args.writers)
    ]
    for process in writers:
        process.start()
    while time.time() < start:
        time.sleep(0.01)
    samples = []
    while time.time() < start + args.seconds:
        time.sleep(args.sample_s)
        db_mb, wal_mb = sizes(path)
        samples.append((round(time.time() - start, 1), round(db_mb, 1), round(wal_mb, 1)))
    outs = [results.get() for _ in writers]
    time.sleep(args.idle_s)
    idle = sizes(path)
    closed.set()
    for _ in writers:
        results.get()
    for process in writers:
        process.join()
    stopped = sizes(path)

    latencies = [x for out in outs for x in out["latencies"]]
    rows = sum(out["rows"] for out in outs)
    print(
        json.dumps(
            {
                "seconds": args.seconds,
                "writers": args.writers,
                "batch": args.batch,
                "rate": args.rate,
                "wal_max_mb": args.wal_max_mb,
                "rows": rows,
                "rows_per_s": round(rows / args.seconds),
                "record_ms": {
                    "p50": round(_percentile(latencies, 0.5) * 1e3, 3),
                    "p99": round(_percentile(latencies, 0.99) * 1e3, 3),
                    "p999": round(_percentile(latencies, 0.999) * 1e3, 3),
                    "max": round(max(latencies) * 1e3, 3),
                },
                "wal_mb_max": max(s[2] for s in samples),
                "db_mb": round(stopped[0], 1),
                "wal_mb_after_idle": round(idle[1], 1),
                "wal_mb_after_stop": round(stopped[1], 1),
                "samples_t_db_wal_mb": samples,
            }
        )
    )


if __name__ == "__main__":
    main()
