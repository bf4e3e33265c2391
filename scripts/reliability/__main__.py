"""`make reliability`: every promise of docs/RELIABILITY.md against the real server; one JSON.

    python -m scripts.reliability [--quick] [--only schema,hostile,...] [--work DIR]

Builds one small champion (generate -> features build -> train -> promote, about a minute),
then runs each check, which starts its own `parcelrisk serve` on its own decision store:

    schema       schemathesis over the served OpenAPI document, every role and no key
    hostile      the hostile-request corpus of tests/corpus/hostile.py
    data_faults  the corrupted files of tests/corpus/data_faults.py through the CLI
    kill         SIGKILL under load, restart, every acknowledged decision intact (x3)
    overload     10x the unloaded load: 429s, probes, memory, recovery
    sustained    2 minutes of load: decision store and its log bounded

Prints one JSON document (also written to WORK/reliability.json); exit 1 if any check fails.
A check that breaks (a bug in the harness, not a broken promise) is reported as failed with
its error; its traceback goes to WORK/reliability.log, never to the JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.reliability.server import Champion, build_champion

# name -> (module, function): run in this order (the quick, independent ones first)
CHECKS: dict[str, tuple[str, str]] = {
    "schema": ("scripts.reliability.schema", "run"),
    "hostile": ("scripts.reliability.hostile", "run"),
    "data_faults": ("scripts.reliability.data_faults", "run"),
    "kill": ("scripts.reliability.load", "run_kill"),
    "overload": ("scripts.reliability.load", "run_overload"),
    "sustained": ("scripts.reliability.load", "run_sustained"),
}


def _check(name: str) -> Callable[..., dict[str, Any]]:
    module, function = CHECKS[name]
    return getattr(importlib.import_module(module), function)


def run_checks(
    names: list[str], champion: Champion, work: Path, quick: bool, log: logging.Logger
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        started = time.monotonic()
        log.info("check %s: started", name)
        try:
            result = dict(_check(name)(champion, work / name, quick=quick))
        # the harness broke (a BaseExceptionGroup too: schemathesis raises those): say so,
        # keep going with the others
        except (Exception, BaseExceptionGroup) as exc:
            log.error("check %s broke:\n%s", name, traceback.format_exc())
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        result.setdefault("seconds", round(time.monotonic() - started, 1))
        result["ok"] = bool(result.get("ok"))
        log.info(
            "check %s: %s in %.0f s", name, "ok" if result["ok"] else "FAILED", result["seconds"]
        )
        results[name] = result
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.reliability", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="short runs of every check (minutes)")
    parser.add_argument("--only", help=f"comma-separated checks among: {', '.join(CHECKS)}")
    parser.add_argument("--work", type=Path, help="working directory (default: a new temp dir)")
    parser.add_argument(
        "--champion", type=Path, help="a directory where a previous run built its champion"
    )
    args = parser.parse_args(argv)
    names = (
        list(CHECKS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    )
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown check(s) {', '.join(unknown)}; choose among {', '.join(CHECKS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="parcelrisk-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("reliability")
    handler = logging.FileHandler(work / "reliability.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.addHandler(logging.StreamHandler(sys.stderr))  # progress on stderr, the JSON on stdout
    log.setLevel(logging.INFO)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("MPLBACKEND", "Agg")

    started = time.monotonic()
    champion_dir = args.champion or work / "champion"
    if (champion_dir / "mlflow.db").exists():
        champion = Champion(
            f"sqlite:///{champion_dir / 'mlflow.db'}",
            champion_dir / "raw" / "declarations.parquet",
            champion_dir / "params.yaml",
        )
    else:
        log.info("building the champion in %s", champion_dir)
        champion = build_champion(champion_dir)
    results = run_checks(names, champion, work, args.quick, log)
    summary = {
        "reliability": "ok" if all(r["ok"] for r in results.values()) else "FAILED",
        "quick": args.quick,
        "failed": [name for name, r in results.items() if not r["ok"]],
        "seconds": round(time.monotonic() - started, 1),
        "cpus": os.cpu_count(),
        "work": str(work),
        "checks": results,
    }
    text = json.dumps(summary, indent=1, default=str)
    (work / "reliability.json").write_text(text + "\n")
    print(text)
    return 0 if not summary["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
