"""Scale: features and training with each engine at 1M, 3M and 10M generated parcels.

Each step runs as the CLI a user runs (`parcelrisk features build|train --engine E`) in a
subprocess of its own, while a sampler reads the resident memory of every process of its tree
every 0.2 s: the peak of the CLI process (the client, or the whole job with pandas) and of each
Dask worker are reported apart, as ``peak_mb``. A step over ``--memory-limit-gb`` of address
space (RLIMIT_AS on the CLI process and everything it starts) stops there: that is where an
engine "stops" on this machine, reported with the error it gave instead of swapping or taking
the machine down with it.

The histories are generated once per size into ``--work`` (reused by later runs: the generator
is not what is measured) with 365 days, so a bigger history is more parcels per day as at a
bigger hub. Cost per row is reported against the smallest size of the run.

    python benchmarks/scale.py [--sizes 1000000 3000000 10000000] [--engines pandas dask]
        [--steps features train] [--work /tmp/parcelrisk-scale] [--memory-limit-gb 20]

Prints one JSON document: the table rows, and per engine and step the cost-per-row ratio of
each size to the smallest. Run it on a quiet machine: at 10M it takes about an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "serving.main"]
DAYS = 365

# Throwaway keys when none are configured: the benchmark makes its own data.
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-" + "0" * 32)
os.environ.setdefault("PARCELRISK_AUDIT_KEY", "benchmark-throwaway-audit-key-" + "0" * 32)


def _limit(gb: float):
    def apply() -> None:
        limit = int(gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def run(args: list[str], *, memory_limit_gb: float | None, log: Path) -> dict:
    """Run a CLI step; wall time, exit status and the peak resident memory of each process."""
    peaks: dict[int, tuple[str, int]] = {}
    done = threading.Event()
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            CLI + args,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit(memory_limit_gb) if memory_limit_gb else None,
        )

        def sample() -> None:
            root = psutil.Process(proc.pid)
            while not done.is_set():
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    break
                for p in tree:
                    try:
                        rss = p.memory_info().rss
                        role = "cli" if p.pid == proc.pid else _role(p)
                    except psutil.Error:
                        continue
                    if rss > peaks.get(p.pid, ("", 0))[1]:
                        peaks[p.pid] = (role, rss)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    by_role: dict[str, list[int]] = {}
    for role, rss in peaks.values():
        by_role.setdefault(role, []).append(rss // 2**20)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return {
        "ok": code == 0,
        "exit": code,
        "seconds": round(seconds, 1),
        "peak_mb": {role: sorted(v, reverse=True) for role, v in by_role.items()},
        "error": None if code == 0 else " | ".join(tail)[-400:],
    }


def _role(p: psutil.Process) -> str:
    command = " ".join(p.cmdline())
    if "spawn_main" in command or "distributed" in command:
        return "dask_worker"  # a worker process (the nanny is the CLI's thread)
    return "other"


def generate(rows: int, work: Path) -> Path:
    out = work / f"history-{rows}"
    if not (out / "declarations.parquet").exists():
        subprocess.run(
            [
                *CLI,
                "generate",
                "--parcels",
                str(rows),
                "--days",
                str(DAYS),
                "--out",
                str(out),
                "--seed",
                "7",
                # a year that lies in the past (with its inspection results): the default
                # start, 2026-01-01, runs 365 days into the future from December 2026 on
                "--start",
                "2025-01-01",
                "--quiet",
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--engines", nargs="+", default=["pandas", "dask"])
    parser.add_argument("--steps", nargs="+", default=["features", "train"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/parcelrisk-scale"))
    parser.add_argument("--memory-limit-gb", type=float, default=20.0)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    table = []
    for rows in sorted(args.sizes):
        history = generate(rows, args.work)
        for engine in args.engines:
            features = args.work / f"features-{rows}-{engine}"
            for step in args.steps:
                if step == "features":
                    cli = [
                        "features",
                        "build",
                        "--declarations",
                        str(history / "declarations.parquet"),
                        "--out",
                        str(features),
                        "--engine",
                        engine,
                        "--no-validate",
                        "--quiet",
                    ]
                else:
                    if not (features / "features.parquet").exists():
                        table.append(
                            {
                                "rows": rows,
                                "engine": engine,
                                "step": step,
                                "ok": False,
                                "error": "no features to train on",
                            }
                        )
                        continue
                    store = args.work / f"mlflow-{rows}-{engine}.db"
                    store.unlink(missing_ok=True)
                    cli = [
                        "train",
                        "--features",
                        str(features),
                        "--engine",
                        engine,
                        "--tracking-uri",
                        f"sqlite:///{store}",
                        "--quiet",
                        "--no-validate",  # the features were built --no-validate (recorded)
                        "--metrics-out",
                        str(args.work / f"metrics-{rows}-{engine}.json"),
                    ]
                log = args.work / f"{step}-{rows}-{engine}.log"
                result = run(cli, memory_limit_gb=args.memory_limit_gb, log=log)
                result.update(rows=rows, engine=engine, step=step)
                if result["ok"]:
                    result["rows_per_s"] = round(rows / result["seconds"])
                table.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
    growth = {}
    for engine in args.engines:
        for step in args.steps:
            done = [r for r in table if r["engine"] == engine and r["step"] == step and r["ok"]]
            if len(done) > 1:
                base = done[0]["seconds"] / done[0]["rows"]
                growth[f"{engine}/{step}"] = {
                    str(r["rows"]): round(r["seconds"] / r["rows"] / base, 2) for r in done
                }
    print(json.dumps({"table": table, "cost_per_row_vs_smallest": growth}, indent=1))


if __name__ == "__main__":
    main()
