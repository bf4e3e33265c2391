"""The closed loop, simulated: days of generated traffic scored, inspected, learnt from, retrained.

One generated world (``features.synthetic.generate``) is cut in two: the days before the cut are
the history as known at the cut (outcomes recorded before it); the days after are the traffic,
declaration columns only, with the generator's drift (TR sellers turn to undervaluation, PLT09
becomes partnered) placed a week or two after the cut. A champion is built from the history
(features build -> train -> promote, in process, SQLite MLflow in ``--work``), then every day of
traffic, in ``declared_at`` order and requests of ``--request-size``, goes through the service
worker's per-batch path in process (``serving.service._score_declarations`` without HTTP:
``catch_up`` -> ``score_frame`` -> ``decision_records`` -> ``store.record`` -> ``recorded``) in
each of these arms, each with its own decision and outcome store:

- ``frozen``: the initial champion with features from its snapshot alone (nothing appended);
- ``live``: the initial champion with the live entity state (decisions and results fed back);
- ``loop``: as ``live``, and every ``--retrain-every`` days the history plus the scored traffic
  with its results (``serving.outcomes.history_frame``) is built, trained and put to the
  promotion gate; a promoted champion is loaded, caught up from the stores and scores on;
- ``fresh``: the initial champion's model on batch features of history + traffic with the live
  arm's results (what rebuilding the snapshot every day would give), scored at the end;
- ``oracle``: the generator's true probability (and x revenue if illicit for revenue).

Red-lane and exploration parcels are inspected (the physical exam finds the truth: the label,
the offence, the revenue at stake); yellow is a documentary check that records no result. A
result is due at declared_at + ``draw_inspection_delay`` (the generator's own lag, 1 to 240 h)
and is posted at the end of the simulated day it falls due in, through the same check as
``POST /outcomes`` (``serving.outcomes.store_outcomes``). The promotion gate sees what an
administration would: no ground truth, so it decides on the exploration sample.

Per week of traffic (week 1 = the first 7 days after the cut) and arm, against the ground truth
of every parcel of that week: precision@5%, revenue@5%, ROC-AUC, calibration error (the gate's
``models.metrics.expected_calibration_error``), mean risk against the illicit rate, and the lane
shares of the scored arms. Prints one JSON document; ``--table`` also prints a markdown table to
stderr.

    python benchmarks/loop.py [--quick] [--work DIR] [--table]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

if TYPE_CHECKING:
    from features.synthetic.live import CutWorld
    from serving.outcome_store import SqliteOutcomeStore
    from serving.scoring import ScoredBatch, ScoringRuntime
    from serving.sqlite_store import SqliteDecisionStore

log = logging.getLogger("benchmarks.loop")

ARMS = ("frozen", "live", "loop", "fresh", "oracle")
SCORED_ARMS = ("frozen", "live", "loop")  # through the service path, with lanes
INSPECTED_ARMS = ("live", "loop")  # their inspection results come back into their stores
LANES = ("red", "yellow", "green")
MAX_CALIBRATION_ERROR = 0.05  # the promotion gate's bound (params.yaml promote)
MAX_AUC_GAP = 0.005  # live path vs fresh batch features
QUICK = {"parcels": 20_000, "days": 54, "history_days": 40, "trees": 150}


# A throwaway consignee pseudonym key when none is configured: the benchmark makes its own
# data, so no key file is needed (a PARCELRISK_PSEUDONYM_KEY already set is used instead).
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run: 20k parcels, 14 days")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--parcels", type=int, help="whole period (default 300,000)")
    parser.add_argument("--days", type=int, help="whole period (default 180)")
    parser.add_argument("--history-days", type=int, help="before the cut (default 150)")
    parser.add_argument("--drift-after", type=int, default=7, help="days after the cut: TR drift")
    parser.add_argument("--partner-after", type=int, default=12, help="days after the cut: PLT09")
    parser.add_argument("--trees", type=int, help="train.lightgbm.n_estimators (default 400)")
    parser.add_argument("--retrain-every", type=int, default=7, help="days (0: never)")
    parser.add_argument(
        "--always-promote",
        action="store_true",
        help="promote every retrained model whatever the gate says (recorded as forced)",
    )
    parser.add_argument("--request-size", type=int, default=100, help="declarations per request")
    parser.add_argument("--work", type=Path, help="working directory (default: a temp dir)")
    parser.add_argument("--table", action="store_true", help="markdown table on stderr")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"parcels": 300_000, "days": 180, "history_days": 150}
    defaults = {"trees": 400, **defaults}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    checks = {
        "--parcels": args.parcels >= 1000,
        "--days": args.days >= 2,
        "--history-days": 1 <= args.history_days < args.days,
        "--trees": args.trees >= 1,
        "--retrain-every": args.retrain_every >= 0,
        "--request-size": args.request_size >= 1,
        "--drift-after": args.drift_after >= 0,
        "--partner-after": args.partner_after >= 0,
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        parser.error(
            f"out of range: {', '.join(bad)} (need parcels >= 1000, 1 <= history-days < days, "
            "trees and request-size >= 1, retrain-every and the drift days >= 0)"
        )
    if args.history_days + max(args.drift_after, args.partner_after) >= args.days:
        log.warning("a drift event falls after the last day: the loop will not see it")
    return args


# --- the world -------------------------------------------------------------------------------


def make_world(args: argparse.Namespace) -> CutWorld:
    from features.synthetic.live import generate_cut_world

    return generate_cut_world(
        seed=args.seed,
        parcels=args.parcels,
        history_days=args.history_days,
        live_days=args.days - args.history_days,
        drift_after=args.drift_after,
        partner_after=args.partner_after,
    )


# --- champions: features build -> train -> promote, in process --------------------------------


def write_params(work: Path, trees: int) -> Path:
    import yaml

    from features.params import params_for_copy

    params = params_for_copy(ROOT / "params.yaml")  # files it names made absolute
    params["train"]["lightgbm"]["n_estimators"] = trees
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def train_and_promote(
    declarations: pd.DataFrame,
    out: Path,
    params_path: Path,
    uri: str,
    as_of: pd.Timestamp,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """Build features as known at ``as_of`` (the entity state cut there), train, run the gate."""
    from features.intake.io import write_declarations
    from features.params import load_settings
    from features.pipeline.build import build_to_dir
    from models.cli import run_promotion, run_training

    started = time.perf_counter()
    write_declarations(declarations, out / "raw" / "declarations.parquet")
    settings = load_settings(params_path)
    build_to_dir(
        declarations_path=out / "raw" / "declarations.parquet",
        out=out / "processed",
        settings=settings,
        as_of=as_of.isoformat(),
    )
    trained = run_training(out / "processed", settings=settings, tracking_uri=uri, metrics_out=None)
    decision = run_promotion(
        settings=settings,
        tracking_uri=uri,
        version=str(trained["version"]),
        force=force,
        reason="benchmarks/loop.py --always-promote" if force else None,
    )
    return {
        "version": str(trained["version"]),
        "labelled": trained["info"].get("labelled"),
        "outcome": decision["outcome"],
        "promoted": bool(decision["promote"]),
        "reasons": decision["reasons"],
        "gate_metrics": {k: round(v, 4) for k, v in decision.get("metrics", {}).items()},
        "retrain_seconds": round(time.perf_counter() - started, 1),
    }


# --- the scored arms -------------------------------------------------------------------------


@dataclass
class Arm:
    """One scorer in service: its runtime, its stores and what it decided."""

    name: str
    runtime: ScoringRuntime
    store: SqliteDecisionStore
    outcomes: SqliteOutcomeStore
    live: bool  # catch up and hand batches back (the service path); frozen: neither
    decided: list[pd.DataFrame] = field(default_factory=list)
    pending: list[pd.DataFrame] = field(default_factory=list)  # results not yet due
    results_posted: int = 0
    seconds: float = 0.0

    def score(self, frame: pd.DataFrame) -> ScoredBatch:
        """One request, as a service worker scores a merged batch."""
        from serving.scoring import decision_records, score_frame

        started = time.perf_counter()
        runtime = self.runtime
        if self.live:
            runtime.catch_up(self.store, self.outcomes)
        batch = score_frame(frame, runtime)
        records = decision_records(batch, runtime)
        self.store.record(records)
        if self.live:
            runtime.recorded(batch, records)
        self.seconds += time.perf_counter() - started
        self.decided.append(
            pd.DataFrame(
                {
                    "declaration_id": batch.declaration_ids,
                    "risk": batch.scores["risk"],
                    "value": batch.scores["expected_revenue"],
                    "lane": batch.lanes,
                    "exploration": batch.exploration,
                    "model_version": runtime.model_version,
                }
            )
        )
        return batch

    def close(self) -> None:
        self.store.close()
        self.outcomes.close()


def open_arm(name: str, runtime: ScoringRuntime, work: Path, *, live: bool) -> Arm:
    from serving.outcome_store import SqliteOutcomeStore
    from serving.sqlite_store import SqliteDecisionStore

    db = work / f"audit-{name}.db"
    return Arm(name, runtime, SqliteDecisionStore(db), SqliteOutcomeStore(db), live)


def frozen_runtime(runtime: ScoringRuntime) -> ScoringRuntime:
    """The champion with features from its snapshot alone, as before the live state existed."""
    from features.pipeline.online import online_features

    snapshot = runtime.live.snapshot

    def compute(declarations):
        warnings: list[tuple[int, str]] = []
        return online_features(declarations, snapshot, warnings), warnings

    runtime.compute_features = compute
    runtime.live = None  # nothing can be appended, whatever is called
    return runtime


def inspection_results(batch: ScoredBatch, rows: np.ndarray, world: CutWorld) -> pd.DataFrame:
    """What the physical exams of a request's red and exploration parcels will report.

    ``rows``: the request's positions in the traffic frame, row-aligned with ``batch``.
    """
    from serving.live_period import inspection_results as exam_results

    return exam_results(
        batch.lanes, batch.exploration, world.truth.iloc[rows], world.inspected_at.iloc[rows]
    )


def post_due_results(arm: Arm, clock: pd.Timestamp) -> int:
    """Post the results whose exam has reported by ``clock``, through the POST /outcomes check."""
    from serving.live_period import post_due_results as post_due

    if not arm.pending:
        return 0
    pending, stored = post_due(
        arm.outcomes, pd.concat(arm.pending, ignore_index=True), clock, source="loop"
    )
    arm.pending = [pending]
    arm.results_posted += stored
    return stored


# --- retraining the loop arm -----------------------------------------------------------------


def retrain(
    arm: Arm,
    world: CutWorld,
    k: int,
    clock: pd.Timestamp,
    work: Path,
    params_path: Path,
    uri: str,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """History + the loop's scored traffic with its results -> a challenger -> the gate; a
    promoted challenger replaces the arm's runtime after catching up from its stores."""
    from features.intake.contract import coerce_declarations
    from features.params import load_settings
    from serving.outcomes import history_frame
    from serving.scoring import load_runtime

    scored = history_frame(arm.outcomes.scored_history())
    declarations = coerce_declarations(
        pd.concat([world.history, scored], ignore_index=True), with_outcomes=True
    )
    record: dict[str, Any] = {
        "after_day": int((clock - world.cut) / pd.Timedelta(days=1)),
        "scored_parcels": len(scored),
        "labelled_traffic": int(scored["inspected"].sum()),
        "exploration_labels": int((scored["selection_reason"] == "random").sum()),
    }
    record.update(
        train_and_promote(declarations, work / f"retrain-{k}", params_path, uri, clock, force=force)
    )
    if not record["promoted"]:
        return record
    settings = load_settings(params_path)
    new = load_runtime(settings, uri, work / f"model-loop-{k}")
    started = time.perf_counter()
    replayed = new.catch_up(arm.store, arm.outcomes)
    record["replay_seconds"] = round(time.perf_counter() - started, 3)
    record["replayed_declarations"] = replayed
    # Everything in the stores was declared (and its result recorded) before the new
    # snapshot's cutoff (the clock): the replay skips it all, and results still to come for
    # those declarations enter at their inspected_at. Anything appended here counts twice.
    record["held_after_replay"] = len(new.live)
    arm.runtime = new
    return record


# --- the fresh arm: batch features over history + traffic ------------------------------------


def fresh_scores(runtime: ScoringRuntime, world: CutWorld, live_outcomes: SqliteOutcomeStore):
    """The initial champion's model on batch features of the history plus the traffic with the
    live arm's results: (risk, expected revenue), row-aligned with the traffic."""
    from features.intake.contract import coerce_declarations
    from features.pipeline.build import build_features
    from serving.outcomes import history_frame

    state = runtime.live.snapshot if runtime.live is not None else None
    assert state is not None, "the fresh arm needs a runtime with its snapshot"
    scored = history_frame(live_outcomes.scored_history())
    declarations = coerce_declarations(
        pd.concat([world.history, scored], ignore_index=True),
        with_outcomes=True,
        contract=state.contract,
    )
    categories = {s.name: s.categories for s in state.manifest.features if s.dtype == "category"}
    frame = build_features(
        declarations, state.contract, state.params, categories, state.manifest.inputs
    ).frame
    frame = frame.set_index("declaration_id").loc[world.traffic["declaration_id"]]
    model = runtime.model
    scores = model.score(model.manifest.matrix(frame.reset_index()))
    return scores["risk"], scores["expected_revenue"]


# --- measurements ----------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size of this process (every arm shares it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def live_layer_size(runtime: ScoringRuntime) -> tuple[int, float]:
    """Events held in the live layers' runs (declarations and results, every family) and the
    bytes of their arrays, in MB (the id table for de-duplication is not counted)."""
    from features.pipeline.history import EventRuns

    if runtime.live is None:
        return 0, 0.0
    events, nbytes = 0, 0
    for part in runtime.live.state.parts.values():
        layer = getattr(part, "live", None)
        if layer is None:
            continue
        for runs in (v for v in vars(layer).values() if isinstance(v, EventRuns)):
            events += len(runs)
            for run in runs.runs:
                for value in vars(run).values():
                    arrays = value.values() if isinstance(value, dict) else [value]
                    nbytes += sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
    return events, round(nbytes / 1e6, 1)


def weekly_metrics(
    world: CutWorld, scores: dict[str, pd.DataFrame], days: int
) -> dict[str, list[dict[str, Any]]]:
    """Per arm, one row per week of traffic against the ground truth of that week's parcels."""
    from models.metrics import ranking_metrics

    day = ((world.traffic["declared_at"] - world.cut) // pd.Timedelta(days=1)).to_numpy()
    week = day // 7 + 1
    y = world.truth["illicit"].to_numpy(dtype=np.float64)
    revenue = world.truth["revenue_at_stake"].to_numpy(dtype=np.float64)
    out: dict[str, list[dict[str, Any]]] = {}
    for arm, s in scores.items():
        rows = []
        for w in np.unique(week):
            m = week == w
            risk, value = s["risk"].to_numpy()[m], s["value"].to_numpy()[m]
            metrics = ranking_metrics(risk, y[m], revenue[m], value=value, prob=risk, levels=(5,))
            row: dict[str, Any] = {
                "week": int(w),
                "days": int(min(7, days - (w - 1) * 7)),
                "parcels": int(m.sum()),
                "precision_at_5": metrics["precision_at_5"],
                "revenue_at_5": metrics["revenue_at_5"],
                "roc_auc": metrics["roc_auc"],
                "ece": metrics["ece"],
                "mean_risk": float(risk.mean()),
                "illicit_rate": metrics["base_rate"],
            }
            if "lane" in s:
                lanes = s["lane"].to_numpy()[m]
                row.update({f"{lane}_share": float((lanes == lane).mean()) for lane in LANES})
                row["exploration_share"] = float(s["exploration"].to_numpy()[m].mean())
                row["model_versions"] = sorted(set(s["model_version"].to_numpy()[m].tolist()))
            rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        out[arm] = rows
    return out


def memory_summary(series: list[dict[str, Any]]) -> dict[str, Any]:
    """First, last and largest of each measure over the days, and the growth per day."""
    out: dict[str, Any] = {}
    for arm in INSPECTED_ARMS:
        for key in ("declarations_held", "live_events", "live_event_mb"):
            values = [d[arm][key] for d in series]
            out[f"{arm}.{key}"] = {
                "first": values[0],
                "last": values[-1],
                "max": max(values),
                "growth_per_day": round((values[-1] - values[0]) / max(1, len(values) - 1), 2),
            }
    # the whole process: three arms' models and snapshots, the retraining, the decided scores
    rss = [d["rss_mb"] for d in series]
    out["process_rss_mb"] = {
        "first": rss[0],
        "last": rss[-1],
        "max": max(rss),
        "growth_per_day": round((rss[-1] - rss[0]) / max(1, len(rss) - 1), 2),
    }
    return out


def targets(
    weeks: dict[str, list[dict[str, Any]]], memory: dict[str, Any], fold_after_days: int
) -> dict[str, Any]:
    live = weeks["live"]
    ece = [w["ece"] for w in live]
    gaps = [abs(a["roc_auc"] - b["roc_auc"]) for a, b in zip(live, weeks["fresh"], strict=True)]
    held = memory["live.declarations_held"]
    event_mb = memory["live.live_event_mb"]
    return {
        "live_calibration_error_below_0.05_every_week": bool(max(ece) < MAX_CALIBRATION_ERROR),
        "live_calibration_error_worst": round(max(ece), 4),
        "live_vs_fresh_auc_within_0.005_every_week": bool(max(gaps) <= MAX_AUC_GAP),
        "live_vs_fresh_auc_gap_worst": round(max(gaps), 4),
        "live_declarations_held": held,
        "live_event_mb": event_mb,
        "process_rss_mb": memory["process_rss_mb"],
        # Nothing folds before the longest window (plus the lag) has passed: over a shorter run
        # the live layer grows with the traffic, and levels off after that many days.
        "live_layer_folds_after_days": fold_after_days,
        "live_layer_folded_within_run": held["last"] < held["max"],
        "live_event_mb_at_fold_horizon": round(event_mb["growth_per_day"] * fold_after_days, 1),
    }


def markdown_table(weeks: dict[str, list[dict[str, Any]]]) -> str:
    """Week x arm: precision@5%, revenue@5%, AUC, ECE and, for scored arms, red/yellow/expl."""

    def cell(w: dict[str, Any]) -> str:
        text = (
            f"{w['precision_at_5']:.3f} / {w['revenue_at_5']:.3f} / {w['roc_auc']:.3f} / "
            f"{w['ece']:.3f}"
        )
        if "red_share" in w:
            text += f" / {w['red_share']:.3f} {w['yellow_share']:.3f} {w['exploration_share']:.3f}"
        return text

    arms = [a for a in ARMS if a in weeks]
    lines = [
        "p@5 / rev@5 / AUC / ECE / red yellow expl shares",
        "",
        "| week | " + " | ".join(arms) + " |",
        "|---" * (len(arms) + 1) + "|",
    ]
    for i, w in enumerate(weeks[arms[0]]):
        label = f"{w['week']}" + (f" ({w['days']} d)" if w["days"] < 7 else "")
        lines.append(f"| {label} | " + " | ".join(cell(weeks[a][i]) for a in arms) + " |")
    return "\n".join(lines)


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from features.params import load_settings
    from features.pipeline.live import FOLD_LAG_DAYS
    from serving.scoring import load_runtime

    began = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="loop-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if (work / "mlflow.db").exists():
        raise SystemExit(f"--work {work} holds a run already: give an empty directory")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    params_path = write_params(work, args.trees)
    settings = load_settings(params_path)

    world = make_world(args)
    loop_days = args.days - args.history_days
    champion = train_and_promote(world.history, work / "champion", params_path, uri, world.cut)
    runtimes = {name: load_runtime(settings, uri, work / f"model-{name}") for name in SCORED_ARMS}
    arms = {
        "frozen": open_arm("frozen", frozen_runtime(runtimes["frozen"]), work, live=False),
        "live": open_arm("live", runtimes["live"], work, live=True),
        "loop": open_arm("loop", runtimes["loop"], work, live=True),
    }
    initial_model = runtimes["live"]  # the fresh arm scores with it at the end
    retrains: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    day_of = ((world.traffic["declared_at"] - world.cut) // pd.Timedelta(days=1)).to_numpy()
    try:
        for day in tqdm(range(loop_days), desc="days", disable=not sys.stderr.isatty()):
            rows = np.flatnonzero(day_of == day)
            for lo in range(0, len(rows), args.request_size):
                part = rows[lo : lo + args.request_size]
                frame = world.traffic.iloc[part].reset_index(drop=True)
                for arm in arms.values():
                    batch = arm.score(frame)
                    if arm.name in INSPECTED_ARMS:
                        arm.pending.append(inspection_results(batch, part, world))
            clock = world.cut + pd.Timedelta(days=day + 1)
            for name in INSPECTED_ARMS:
                post_due_results(arms[name], clock)
            if args.retrain_every and (day + 1) % args.retrain_every == 0 and day + 1 < loop_days:
                k = len(retrains) + 1
                retrains.append(
                    retrain(
                        arms["loop"],
                        world,
                        k,
                        clock,
                        work,
                        params_path,
                        uri,
                        force=args.always_promote,
                    )
                )
            memory.append(
                {
                    "day": day + 1,
                    "rss_mb": rss_mb(),
                    **{
                        name: dict(
                            zip(
                                ("declarations_held", "live_events", "live_event_mb"),
                                (
                                    len(arms[name].runtime.live),
                                    *live_layer_size(arms[name].runtime),
                                ),
                                strict=True,
                            )
                        )
                        for name in INSPECTED_ARMS
                    },
                }
            )
        started = time.perf_counter()
        fresh_risk, fresh_value = fresh_scores(initial_model, world, arms["live"].outcomes)
        fresh_seconds = time.perf_counter() - started
    finally:
        for arm in arms.values():
            arm.close()

    scores = {
        name: pd.concat(arm.decided, ignore_index=True) for name, arm in arms.items()
    }  # scored in traffic order: row-aligned with the truth
    for s in scores.values():
        assert (s["declaration_id"].to_numpy() == world.truth["declaration_id"].to_numpy()).all()
    scores["fresh"] = pd.DataFrame({"risk": fresh_risk, "value": fresh_value})
    p = world.truth["p_illicit"].to_numpy(dtype=np.float64)
    scores["oracle"] = pd.DataFrame(
        {"risk": p, "value": p * world.truth["revenue_if_illicit"].to_numpy(dtype=np.float64)}
    )
    weeks = weekly_metrics(world, {a: scores[a] for a in ARMS}, loop_days)
    fold_after_days = initial_model.live.state.params.max_window_days + FOLD_LAG_DAYS
    mem = memory_summary(memory)
    return {
        "config": {
            "seed": args.seed,
            "parcels": args.parcels,
            "days": args.days,
            "history_days": args.history_days,
            "loop_days": loop_days,
            "cut": world.cut.isoformat(),
            "tr_drift_day_after_cut": args.drift_after,
            "plt09_partner_day_after_cut": args.partner_after,
            "trees": args.trees,
            "retrain_every": args.retrain_every,
            "request_size": args.request_size,
            "always_promote": args.always_promote,
            "history_parcels": len(world.history),
            "traffic_parcels": len(world.traffic),
            "work": str(work),
        },
        "initial_champion": champion,
        "weeks": weeks,
        "retrains": retrains,
        "results_posted": {name: arms[name].results_posted for name in INSPECTED_ARMS},
        "scoring_parcels_per_s": {
            name: round(len(world.traffic) / arm.seconds) for name, arm in arms.items()
        },
        "fresh_build_seconds": round(fresh_seconds, 1),
        "memory": mem,
        "memory_by_day": memory,
        "targets": targets(weeks, mem, fold_after_days),
        "wall_seconds": round(time.perf_counter() - began, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the loop, print its JSON document (and ``--table``), and return the document."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # OpenMP threads spinning while they wait slow LightGBM down on a shared 2-core machine
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from features.errors import ParcelriskError

    try:
        result = run(args)
    except ParcelriskError as exc:  # e.g. too little data for a split: one line, no traceback
        raise SystemExit(f"loop: {exc}") from None
    print(json.dumps(result, indent=1, default=str))
    if args.table:
        print(markdown_table(result["weeks"]), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
