"""Benchmark: generate a synthetic history (default 1,000,000 parcels) and write both files.

Prints JSON: seconds (generate + write), peak RSS of the process and parcels per second.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
# run as a script, the benchmarks folder comes first on sys.path, where benchmarks/features.py
# and benchmarks/serving.py would shadow the packages they measure
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

# A throwaway consignee pseudonym key when none is configured: the benchmark makes its own
# data, so no key file is needed (a PARCELRISK_PSEUDONYM_KEY already set is used instead).
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)


def main() -> None:
    from features.synthetic import generate_to_dir

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="parcelrisk-gen-") as tmp:
        summary = generate_to_dir(
            parcels=args.parcels, days=args.days, seed=args.seed, out=Path(tmp), start="2026-01-01"
        )
    # generate_to_dir's own clock: generate + write + summary, without scikit-learn's import
    # (the summary's metrics), which is start-up rather than generation.
    seconds = summary["seconds"]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "benchmark": "generate",
        "parcels": args.parcels,
        "days": args.days,
        "seconds": round(seconds, 2),
        "seconds_generate_in_memory": summary["seconds_generate"],
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "parcels_per_second": round(args.parcels / seconds),
        "prevalence": summary["prevalence"],
        "oracle_roc_auc": summary["oracle_roc_auc"],
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
