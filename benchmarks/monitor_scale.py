"""``parcelrisk monitor``'s memory per decision of the period it reads. Prints one JSON document.

Builds a SQLite decision store per size (``--sizes``) of synthetic decisions written through the
store API: the generator's declarations as the contract's JSON, a feature vector of 99 values
(counts and codes, flags, amounts with some missing: packed as the service packs them), a lane
policy, two model versions and thresholds versions (a promotion mid-period), and the results of
the red and exploration parcels stored with ``serving.outcomes.store_outcomes``. With
``--previous`` the store also holds as many decisions in the period of the same length before
(a month-over-month run reads both). Then, in a process of its own per size, the CLI's own
``serving.monitor.cli.monitor_store`` (the period, its lane counts, the model versions that
decided it, the period before, ``monitor_period``) and the HTML report it renders, against a
stand-in champion (its thresholds, manifest fingerprint and a training reference of the same
99 features) put where the registry's would be, not an MLflow one: loading a bundle costs the
same whatever the period, and training one would take longer than the measurement. Reported
per size: wall time; the reads' times and frames' bytes (``memory_usage(deep=True)``), the
monitor's and the report's time; peak RSS (VmHWM) and KB per decision, the peak above an empty
period's (the same process, a period holding no decision) over N; KB per added decision, the
peak's growth from the size before over the decisions added (the vectors stop growing at
``DRIFT_VECTORS``: beyond it, this is what a longer period costs); and the SHA-256 of the
summary JSON as the CLI writes it (the same store must give the same hash before and after a
change that should compute the same figures).

    python -P benchmarks/monitor_scale.py [--sizes 100000 300000] [--previous] [--stores DIR]

``--stores DIR`` keeps the stores there and reuses them (the same seed makes the same store),
so a before/after comparison reads the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, its own folder comes first on sys.path, where benchmarks/features.py would
# shadow the features package: the repo root goes first and the script's folder goes.
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, Path(__file__).resolve().parent)
]
# a benchmark's store: throwaway keys when none is configured
os.environ.setdefault("PARCELRISK_AUDIT_KEY", "benchmark-throwaway-audit-key-" + "0" * 32)
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)

FEATURES = 99
FINGERPRINT = "3f9a1c07d2b84e6a"  # the champion's manifest (a manifest fingerprint's length)
STORED = "%Y-%m-%dT%H:%M:%S.%fZ"
_BATCH = 10_000


def _vectors(rng, n: int):
    """``n`` feature vectors like a champion's: 60 counts and codes, 20 flags, 19 amounts
    (float64, 5% missing)."""
    import numpy as np

    X = np.empty((n, FEATURES))
    X[:, :60] = rng.poisson(4.0, size=(n, 60))
    X[:, 60:80] = rng.random((n, 20)) < 0.2
    amounts = rng.lognormal(3.0, 1.2, size=(n, FEATURES - 80))
    amounts[rng.random(amounts.shape) < 0.05] = np.nan
    X[:, 80:] = amounts
    return X


def _champion():
    """The stand-in champion: thresholds in force, manifest fingerprint, training reference."""
    from types import SimpleNamespace

    import numpy as np

    from models.bundle import LaneThresholds
    from models.reference import ModelReference, describe_values

    rng = np.random.default_rng(1)
    X = _vectors(rng, 20_000)
    features = tuple(
        describe_values(f"f{j:02d}", X[:, j], categorical=50 <= j < 60) for j in range(FEATURES)
    )
    reference = ModelReference(
        features=features,
        score=describe_values("risk", rng.beta(1.0, 12.0, 20_000)),
        rows=20_000,
        period={"name": "test", "from": "2026-01-01", "to": "2026-02-01"},
        mean_risk=0.08,
        mean_expected_revenue=3.5,
        manifest_fingerprint=FINGERPRINT,
    )
    thresholds = LaneThresholds("risk", 0.42, 0.21, 0.03, 0.07, "thr-" + "a" * 12)
    return SimpleNamespace(
        thresholds=thresholds,
        reference=reference,
        manifest=SimpleNamespace(fingerprint=FINGERPRINT, categories={}, params={}),
    )


def build_store(db: Path, n: int, days: int, seed: int, previous: bool = False) -> dict[str, str]:
    """``n`` decisions declared over ``days`` days from 2026-03-01, and the results of the red
    and exploration parcels; the period that holds them. ``previous``: as many again declared
    over the ``days`` days before (the period returned is the later one)."""
    import numpy as np
    import pandas as pd

    from features.intake.contract import OUTCOME_COLUMNS
    from features.synthetic import SyntheticParams, generate
    from serving.decision import DecisionRecord, features_for_storage
    from serving.outcomes import store_outcomes
    from serving.scoring import declarations_as_json
    from serving.store import open_outcome_store, open_store

    periods = 2 if previous else 1
    first = pd.Timestamp("2026-03-01") - pd.Timedelta(days=days * (periods - 1))
    declarations, _ = generate(
        SyntheticParams(
            seed=seed, parcels=n * periods, days=days * periods, start=first.strftime("%Y-%m-%d")
        )
    )
    n = len(declarations)
    declarations = declarations.drop(columns=[c for c in declarations if c in OUTCOME_COLUMNS])
    rng = np.random.default_rng(seed)
    policies = [
        json.dumps({"aeo_risk_discount": 0.5, "exploration_lane": "yellow",
                    "exploration_rate": rate, "exploration_seed_version": "9c2e41d0a7b3f865"})
        for rate in (0.02, 0.025)
    ]  # fmt: skip
    # the first 30% of the (last) period decided by the previous champion
    promoted = int(n * (0.65 if previous else 0.3))
    store = open_store(db)
    inspected: list[tuple[str, str, bool]] = []
    try:
        for lo in range(0, n, _BATCH):
            part = declarations.iloc[lo : lo + _BATCH]
            texts = declarations_as_json(part)
            rows = features_for_storage(_vectors(rng, len(part)))
            risk = rng.beta(1.0, 12.0, len(part))
            exploration = rng.random(len(part)) < 0.02
            lane = np.where(risk >= 0.42, "red", np.where(risk >= 0.21, "yellow", "green"))
            lane = np.where(exploration & (lane == "green"), "yellow", lane)
            records = []
            for i, (declaration_id, text) in enumerate(
                zip(part["declaration_id"], texts, strict=True)
            ):
                old = lo + i < promoted
                records.append(
                    DecisionRecord(
                        decision_id=f"{rng.integers(2**63):016x}{lo + i:016x}",
                        scored_at="2026-04-02T00:00:00.000000+00:00",
                        declaration_id=declaration_id,
                        declaration_json=text,
                        features=rows[i],
                        manifest_fingerprint="0b7d22e95c41fa38" if old else FINGERPRINT,
                        model_name="parcel-risk",
                        model_version="6" if old else "7",
                        thresholds_version="thr-" + ("b" if old else "a") * 12,
                        lane_policy=policies[old],
                        raw_score=float(np.log(risk[i] / (1 - risk[i]))),
                        risk=float(risk[i]),
                        expected_revenue=float(risk[i] * 40.0),
                        lane=str(lane[i]),
                        exploration=bool(exploration[i]),
                        reasons=[],
                        warnings=[],
                    )
                )
                if lane[i] == "red" or exploration[i]:
                    inspected.append((declaration_id, text, bool(rng.random() < 0.3)))
            store.record(records)
        results = open_outcome_store(db, store)
        try:
            at = [
                (pd.Timestamp(json.loads(text)["declared_at"]) + pd.Timedelta(hours=6))
                for _, text, _ in inspected
            ]
            store_outcomes(
                results,
                pd.DataFrame(
                    {
                        "declaration_id": [d for d, _, _ in inspected],
                        "inspected_at": [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in at],
                        "illicit": ["true" if x else "false" for _, _, x in inspected],
                        "offence_type": ["undervaluation" if x else "" for _, _, x in inspected],
                        "revenue_recovered": ["40" if x else "" for _, _, x in inspected],
                    }
                ),
                source="benchmark",
                now=pd.Timestamp("2026-06-01", tz="UTC"),
            )
        finally:
            results.close()
    finally:
        store.close()
    since = pd.Timestamp(declarations["declared_at"].min()).normalize()
    since += pd.Timedelta(days=days * (periods - 1))
    until = pd.Timestamp(declarations["declared_at"].max()).normalize() + pd.Timedelta(days=1)
    return {"since": since.isoformat(), "until": until.isoformat()}


def measure(db: str, since: str, until: str) -> dict[str, float]:
    """``parcelrisk monitor`` on [since, until) (in this process): ``monitor_store`` with the
    stand-in champion where the registry's would be, then the report the CLI renders."""
    import hashlib

    import pandas as pd

    import serving.monitor.data as data
    from features.errors import ParcelriskError
    from features.params import Settings
    from serving.monitor.cli import _clean, monitor_store
    from serving.monitor.report import render_report

    settings = Settings()
    champion = _champion()
    old_thresholds = {"thr-" + "b" * 12: (0.03, 0.07)}

    def champion_bundle(tracking_uri, name, alias):
        return champion, {"name": name, "version": "7", "run_id": "r" * 32, "alias": alias}, None

    def earlier_targets(client, name, versions):
        # the previous champion's run holds its thresholds version's targets
        return old_thresholds if (name, "6") in versions else {}

    reads: list[dict[str, float]] = []
    read_period = data.read_period

    def timed_read(*args, **kwargs):
        started = time.perf_counter()
        frame = read_period(*args, **kwargs)
        mb = frame.memory_usage(deep=True).sum() / 2**20
        # the period itself or the one before (read first: monitor_store reduces it first)
        which = "previous" if kwargs.get("columns") is not None else "period"
        reads.append(
            {"which": which, "s": time.perf_counter() - started, "rows": len(frame), "mb": mb}
        )
        return frame

    # monitor_store imports these from serving.monitor.data when called
    data.load_champion_bundle = champion_bundle
    data.lane_targets_of_versions = earlier_targets
    data.read_lane_targets = lambda client, run_id: {}
    data.read_period = timed_read
    started = time.perf_counter()
    try:
        summary, _, _ = monitor_store(db, pd.Timestamp(since), pd.Timestamp(until), settings)
    except ParcelriskError:  # an empty period: the imports, the champion and what reads it
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # the report's, in the baseline too

        return {"decisions": 0}
    out: dict[str, float | str] = {"decisions": summary["decisions"]}
    read = {r["which"]: r for r in reads}
    out["read_s"] = round(read["period"]["s"], 2)
    out["frame_mb"] = round(read["period"]["mb"], 1)
    if "previous" in read:
        out["previous_decisions"] = read["previous"]["rows"]
        out["previous_read_s"] = round(read["previous"]["s"], 2)
        out["previous_frame_mb"] = round(read["previous"]["mb"], 1)
    out["monitor_s"] = round(time.perf_counter() - started, 2)
    out["alerts"] = len(summary["alerts"])
    started = time.perf_counter()
    live = summary["drift"].pop("score_live", [])
    render_report(
        {**summary, "drift": {**summary["drift"], "score_live": live}},
        champion.reference.score,
        settings.monitor,
    )
    out["report_s"] = round(time.perf_counter() - started, 2)
    text = json.dumps(_clean(summary), indent=1)  # as the CLI writes summary.json
    out["summary_sha256"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def _measured(db: Path, since: str, until: str) -> dict[str, float]:
    """``measure`` in a process of its own, with its peak resident memory (VmHWM)."""
    command = [sys.executable, "-P", __file__, "--measure", str(db), since, until]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak = re.search(r"VmHWM:\s+(\d+) kB", done.stderr)
    if peak is None:
        raise SystemExit(f"the measuring process said nothing of its memory:\n{done.stderr}")
    peak_kb = int(peak.group(1))
    return {
        **json.loads(done.stdout),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--days", type=int, default=30, help="the period's days")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--stores", type=Path, help="keep (and reuse) the stores here")
    parser.add_argument(
        "--previous",
        action="store_true",
        help="the store also holds as many decisions in the period before (month over month)",
    )
    parser.add_argument(
        "--measure", nargs=3, metavar=("DB", "SINCE", "UNTIL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        sys.stderr.write(
            next(
                line
                for line in Path("/proc/self/status").read_text().splitlines(True)
                if line.startswith("VmHWM")
            )
        )
        return

    with tempfile.TemporaryDirectory(prefix="monitor-scale-") as tmp:
        where = args.stores or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        results: dict[str, object] = {"days": args.days, "features": FEATURES, "sizes": {}}
        baseline = previous = None
        for n in sorted(args.sizes):
            before = "-previous" if args.previous else ""
            db = where / f"decisions-{n}-{args.days}d-seed{args.seed}{before}.db"
            period_file = db.with_suffix(".period.json")
            started = time.perf_counter()
            if not period_file.exists():
                db.unlink(missing_ok=True)
                period_file.write_text(
                    json.dumps(build_store(db, n, args.days, args.seed, args.previous))
                )
                build_s = round(time.perf_counter() - started, 1)
            else:
                build_s = None  # reused
            period = json.loads(period_file.read_text())
            if baseline is None:  # a period before any decision: imports, champion, empty read
                baseline = _measured(db, "2025-01-01T00:00:00+00:00", "2025-01-02T00:00:00+00:00")
                results["empty_period_peak_rss_mb"] = baseline["peak_rss_mb"]
            got = _measured(db, period["since"], period["until"])
            above = got["peak_rss_mb"] - baseline["peak_rss_mb"]
            row = {**got, "kb_per_decision": round(above * 1024 / got["decisions"], 3)}
            if previous is not None:  # what one more decision costs, from the size before
                more = got["peak_rss_mb"] - previous["peak_rss_mb"]
                row["kb_per_added_decision"] = round(
                    more * 1024 / (got["decisions"] - previous["decisions"]), 3
                )
            results["sizes"][str(n)] = {
                **row,
                "store_mb": round(db.stat().st_size / 2**20),
                "build_s": build_s,
            }
            previous = got
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
