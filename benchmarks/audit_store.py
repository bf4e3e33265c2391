"""The audit store's chain: what it costs to record and verify, and the bytes a decision takes
in the hot store and once archived. Prints one JSON document.

Records realistic decisions (the demo's champion scoring the generated history, when its files
are here: ``data/processed/sample_to_score.parquet`` and ``mlflow.db``; else synthetic ones of
the demo's width) in batches, then verifies the whole chain and archives all but the last day.

    python benchmarks/audit_store.py [--decisions 20000] [--batch 8]
    python benchmarks/audit_store.py --store postgresql://USER@HOST:PORT/EMPTY_DB [--writers 2]

With ``--store postgresql://...`` (an empty database: the benchmark writes into it) the same
decisions are recorded on the PostgreSQL store instead, by ``--writers`` threads with a pool
each (as replicas), and the chain verified; the archive is the SQLite store's and is skipped.
Both ways report the batch's record latency (p50, p99).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
# a benchmark's store: a throwaway key when none is configured
os.environ.setdefault("PARCELRISK_AUDIT_KEY", os.urandom(24).hex())


def _decisions(n: int) -> list:
    """Decisions like the demo's: 164 features (about 70% exact in float32), a declaration of
    ~500 bytes, reasons on the red/yellow ones."""
    import numpy as np

    from serving.decision import DecisionRecord, features_for_storage

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 164))
    X[:, :115] = np.round(np.abs(X[:, :115]) * 7)  # counts, flags, codes
    X[rng.random(X.shape) < 0.02] = np.nan
    rows = features_for_storage(X)
    declaration = json.dumps(
        {
            "declaration_id": "D",
            "declared_at": "2026-06-01T10:00:00.000000Z",
            "description": "cotton t-shirt printed, mens, size L " * 3,
            **{f"field_{k}": f"value-{k}" for k in range(18)},
        }
    )
    lanes = np.where(rng.random(n) < 0.05, "red", "green")
    return [
        DecisionRecord(
            decision_id=f"{i:032x}",
            scored_at="2026-06-01T10:00:00.000000+00:00",
            declaration_id=f"D{i}",
            declaration_json=declaration.replace('"D"', f'"D{i}"'),
            features=rows[i],
            manifest_fingerprint="f" * 16,
            model_name="parcel-risk",
            model_version="3",
            thresholds_version="t" * 12,
            lane_policy='{"aeo_discount": 0.5, "exploration_lane": "yellow", "exploration_rate": 0.025, "exploration_seed": "x"}',
            raw_score=float(rng.normal()),
            risk=float(rng.random()),
            expected_revenue=float(rng.random() * 50),
            lane=str(lanes[i]),
            exploration=False,
            reasons=[{"feature": "f", "text": "reason text " * 4, "contribution": 0.3}]
            if lanes[i] == "red"
            else [],
            warnings=[],
            request_id=f"req-{i // 8}",
            api_key_id="0123456789abcdef",
            known_seq=i,
            model_run_id="e" * 32,  # an MLflow run id's length
            model_bundle_sha256="b" * 64,
        )
        for i in range(n)
    ]


# The child reports its own peak (VmHWM: this process's memory since exec). ru_maxrss of
# children would count the benchmark's own memory, copied into the child at fork.
_PEAK_AT_EXIT = (
    "import atexit, sys; atexit.register(lambda: sys.stderr.write(next(line for line in "
    "open('/proc/self/status') if line.startswith('VmHWM')))); "
    "from serving.main import main; main()"
)


def _export_cost(db: Path, days: tuple[str, str]) -> dict[str, float]:
    """``parcelrisk audit export --format html`` of every decision, in a process of its own:
    its wall time and peak RSS (it reads the period page by page, so the peak should not grow
    with the period)."""
    import re
    import subprocess

    command = [
        sys.executable,
        "-c",
        _PEAK_AT_EXIT,
        "audit",
        "export",
        "--from",
        days[0],
        "--to",
        days[1],
        "--format",
        "html",
        "--db",
        str(db),
        "--out",
        str(db.with_suffix(".html")),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_kb = int(re.search(r"VmHWM:\s+(\d+) kB", done.stderr).group(1))
    return {"export_html_s": round(seconds, 2), "export_html_peak_rss_mb": round(peak_kb / 1024)}


def _latency(seconds: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(seconds) * 1000
    return {
        "record_batch_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "record_batch_p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def _postgres(args: argparse.Namespace) -> dict:
    """Record with ``--writers`` stores at once (a pool each, as replicas), then verify."""
    import threading

    from serving.audit.verify import verify_store
    from serving.store import open_store

    stores = [open_store(args.store) for _ in range(args.writers)]
    if stores[0].count():
        raise SystemExit(f"{args.store}: not empty; give the benchmark an empty database")
    decisions = _decisions(args.decisions)
    latencies: list[list[float]] = [[] for _ in stores]

    def write(k: int) -> None:
        for i in range(k * args.batch, len(decisions), args.batch * len(stores)):
            t0 = time.perf_counter()
            stores[k].record(decisions[i : i + args.batch])
            latencies[k].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(len(stores))]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record_s = time.perf_counter() - started
    started = time.perf_counter()
    report = verify_store(stores[0])
    verify_s = time.perf_counter() - started
    for store in stores:
        store.close()
    return {
        "store": "postgresql",
        "decisions": len(decisions),
        "batch": args.batch,
        "writers": args.writers,
        "record_decisions_per_s": round(len(decisions) / record_s),
        **_latency([x for per in latencies for x in per]),
        "verify_decisions_per_s": round(report.checked / verify_s),
        "intact": report.intact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--store", help="postgresql://... (an empty database) instead of SQLite")
    parser.add_argument("--writers", type=int, default=1, help="threads recording at once")
    args = parser.parse_args()
    if args.store:
        print(json.dumps(_postgres(args), indent=2))
        return

    import serving.sqlite_store as sqlite_store
    from serving.audit.archive import archive_before
    from serving.audit.chain import decision_mac
    from serving.audit.verify import verify_store
    from serving.decision import pack_feature_rows

    decisions = _decisions(args.decisions)
    values = [d.stored_values() for d in decisions[:2000]]
    key = os.environ["PARCELRISK_AUDIT_KEY"].encode()
    started = time.perf_counter()
    for v in values:
        decision_mac(key, 1, "2026-06-01T10:00:00.000000Z", bytes(32), v)
    mac_us = (time.perf_counter() - started) / len(values) * 1e6
    started = time.perf_counter()
    for i in range(0, 2000, args.batch):
        pack_feature_rows([v[4] for v in values[i : i + args.batch]])
    pack_us = (time.perf_counter() - started) / 2000 * 1e6

    with tempfile.TemporaryDirectory(prefix="parcelrisk-audit-bench-") as tmp:
        store = sqlite_store.SqliteDecisionStore(Path(tmp) / "audit.db")
        days = ("2026-06-01", "2026-06-02")
        original = sqlite_store._now_iso
        started = time.perf_counter()
        latencies = []
        for i in range(0, len(decisions), args.batch):
            day = days[0] if i < len(decisions) // 2 else days[1]
            sqlite_store._now_iso = lambda day=day: f"{day}T10:00:00.000000Z"
            t0 = time.perf_counter()
            store.record(decisions[i : i + args.batch])
            latencies.append(time.perf_counter() - t0)
        record_s = time.perf_counter() - started
        sqlite_store._now_iso = original
        store._restart_log(store._conn, "TRUNCATE")
        page_size, pages, free = (
            store._conn.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_size", "page_count", "freelist_count")
        )
        hot_bytes = page_size * (pages - free)
        started = time.perf_counter()
        report = verify_store(store)
        verify_s = time.perf_counter() - started
        export = _export_cost(Path(tmp) / "audit.db", days)
        archived = archive_before(store, f"{days[1]}T00:00:00.000000Z")
        started = time.perf_counter()
        after = verify_store(store)
        verify_archived_s = time.perf_counter() - started
        store.close()
    print(
        json.dumps(
            {
                "decisions": len(decisions),
                "batch": args.batch,
                "mac_us_per_decision": round(mac_us, 2),
                "pack_features_us_per_decision": round(pack_us, 2),
                "record_decisions_per_s": round(len(decisions) / record_s),
                **_latency(latencies),
                "hot_bytes_per_decision": round(hot_bytes / len(decisions)),
                "verify_decisions_per_s": round(report.checked / verify_s),
                "intact": report.intact and after.intact,
                "archived": archived["archived"],
                "archived_bytes_per_decision": archived["bytes_per_decision"],
                "verify_with_archive_decisions_per_s": round(after.checked / verify_archived_s),
                **export,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
