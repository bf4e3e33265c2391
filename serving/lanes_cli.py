"""`parcelrisk lanes plan|set|show`: lane capacity as a decision, not a retrain.

``plan`` reads a period of the decision store (the scores, the AEO flag, the exploration flag and
the inspection results beside them) and prints what inspecting the top r% of traffic would cost
and catch (``models.capacity.plan_capacity``). ``set`` fits cut-offs at chosen rates and writes
them as a new thresholds version on the champion (``models.lane_versions``), which running
workers pick up at their next champion check. ``show`` lists the champion's versions, and
says when the rates decided before its promotion could not be carried over to it
(``models.lane_versions.plan_lane_handover``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from features.cli import params_option, settings_from, tracking_option
from features.errors import ParcelriskError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from features.params import Settings
    from models.bundle import LaneThresholds

lanes_app = typer.Typer(
    help="Lane capacity: plan, set and show the red/yellow cut-offs of the champion.",
    no_args_is_help=True,
)

_TRAFFIC_SQL = """
SELECT d.seq, d.declaration_id, d.declared_at, d.model_name, d.model_version,
       d.thresholds_version, d.risk, d.expected_revenue, d.lane, d.exploration,
       {aeo} AS aeo{outcome_columns}
FROM decisions AS d{outcome_join}
WHERE d.declared_at IS NOT NULL {period}
ORDER BY d.seq
"""


def _db_option(help_text: str) -> Any:
    return typer.Option(None, "--db", help=help_text)


def read_lane_traffic(db: str | Path, since: str | None, until: str | None) -> pd.DataFrame:
    """The decisions declared in [since, until) with their inspection result, one row per
    declaration (its latest decision), from the store file opened read-only.

    Columns: declaration_id, declared_at (UTC), model_name, model_version, thresholds_version,
    risk, expected_revenue, lane, exploration, aeo, illicit and revenue (NaN: no result)."""
    import numpy as np
    import pandas as pd

    from serving.audit.report import parse_when
    from serving.outcomes import CURRENT_RESULTS
    from serving.store_read import read_only

    start = parse_when(since, "--since") if since else None
    end = parse_when(until, "--until", end_of_day=True) if until else None
    if start is not None and end is not None and end <= start:
        # an inverted range selects nothing: say which, not "no decisions"
        raise ParcelriskError(f"--until {until} is not after --since {since}")
    with read_only(db) as store:
        tables = store.tables()
        if "decisions" not in tables:
            raise ParcelriskError(
                f"{store.location} holds no decisions table: not a decision store"
            )
        with_results = "outcomes" in tables
        period, args = "", []
        if start is not None:
            period += "AND d.declared_at >= {p} "
            args.append(start)
        if end is not None:
            period += "AND d.declared_at < {p} "
            args.append(end)
        sql = _TRAFFIC_SQL.format(
            aeo=store.json_text("d.declaration_json", "aeo_operator"),
            outcome_columns=", o.illicit, o.revenue_recovered" if with_results else "",
            outcome_join=(
                f" LEFT JOIN {CURRENT_RESULTS} AS o ON o.declaration_id = d.declaration_id"
                if with_results
                else ""
            ),
            period=period,
        )
        _, rows = store.query(sql, args)
    columns = [
        "seq",
        "declaration_id",
        "declared_at",
        "model_name",
        "model_version",
        "thresholds_version",
        "risk",
        "expected_revenue",
        "lane",
        "exploration",
        "aeo",
    ]
    frame = pd.DataFrame(
        rows, columns=[*columns, "illicit", "revenue"] if with_results else columns
    )
    if not with_results:
        frame["illicit"] = np.nan
        frame["revenue"] = np.nan
    # a declaration scored twice (a retry with changes, a re-score) counts once: its latest
    frame = frame.drop_duplicates("declaration_id", keep="last").reset_index(drop=True)
    frame["declared_at"] = pd.to_datetime(frame["declared_at"], utc=True, format="ISO8601")
    frame["exploration"] = frame["exploration"].astype(bool)
    from serving.store_read import json_flag

    frame["aeo"] = json_flag(frame["aeo"])
    for column in ("risk", "expected_revenue", "illicit", "revenue"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return frame.drop(columns="seq")


def _covered_days(traffic: pd.DataFrame) -> float:
    """Days from the first to the last declaration of the traffic: the span the store covers
    inside the period asked for. The traffic per day is counted over it, not over --since to
    --until: a year asked of a store holding a month divided a month's parcels by 365 days."""
    days = (traffic["declared_at"].max() - traffic["declared_at"].min()).total_seconds() / 86_400
    return days if days > 0 else 1.0


def _window(since: str | None, until: str | None) -> dict[str, Any] | None:
    """The period asked for as given (None: the whole store) and its days when both bounds are."""
    import pandas as pd

    from serving.audit.report import parse_when

    if not since and not until:
        return None
    days = None
    if since and until:
        start = pd.Timestamp(parse_when(since, "--since"))
        end = pd.Timestamp(parse_when(until, "--until", end_of_day=True))
        days = round((end - start).total_seconds() / 86_400, 3)
    return {"since": since, "until": until, "days": days}


def _priority(traffic: pd.DataFrame, objective: str) -> Any:
    return traffic["expected_revenue" if objective == "revenue" else "risk"].to_numpy()


def _effective(traffic: pd.DataFrame, objective: str, aeo_discount: float) -> Any:
    from models.thresholds import effective_priority

    return effective_priority(
        _priority(traffic, objective), traffic["aeo"].to_numpy(bool), aeo_discount
    )


def _read_truth(path: Path) -> pd.DataFrame:
    """declaration_id, true_illicit, true_revenue from a ground-truth file (the generator's:
    ``revenue_at_stake``, or ``revenue``)."""
    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ParcelriskError(f"--truth {path}: give a .parquet or .csv file")
    try:
        truth = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # missing, unreadable, not the format its name says
        raise ParcelriskError(f"--truth {path}: cannot read: {exc}") from None
    revenue = next((c for c in ("revenue", "revenue_at_stake") if c in truth.columns), None)
    missing = [c for c in ("declaration_id", "illicit") if c not in truth.columns]
    if missing or revenue is None:
        raise ParcelriskError(
            f"--truth {path}: needs columns declaration_id, illicit and revenue "
            f"(or revenue_at_stake); lacks {', '.join(missing or ['revenue'])}"
        )
    return truth.rename(columns={"illicit": "true_illicit", revenue: "true_revenue"})[
        ["declaration_id", "true_illicit", "true_revenue"]
    ].astype({"declaration_id": str, "true_illicit": float, "true_revenue": float})


# --- plan ---------------------------------------------------------------------------------------


def plan_lanes(
    store: str | Path,
    settings: Settings,
    since: str | None = None,
    until: str | None = None,
    truth: Path | None = None,
    model_version: str | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """``lanes plan``'s summary of a period of the store and its capacity table
    (``models.capacity.plan_capacity``; with ``truth``, the ground truth's columns too).

    One model version's decisions only (``model_version``; default: the one that decided last
    in the period): the cut-off at a share of traffic is a quantile of one model's scores, and
    after a promotion the period holds two models' scores on two scales."""
    from models.capacity import plan_capacity

    traffic = read_lane_traffic(store, since, until)
    if traffic.empty:
        raise ParcelriskError(f"no decisions in {store} for that period")
    if model_version is None:
        model_version = str(traffic["model_version"].iloc[-1])  # rows in store order
    mine = (traffic["model_name"] == settings.serve.model_name) & (
        traffic["model_version"].astype(str) == str(model_version)
    )
    left_out = int((~mine).sum())
    traffic = traffic[mine].reset_index(drop=True)
    if traffic.empty:
        raise ParcelriskError(
            f"no decisions of {settings.serve.model_name} v{model_version} in {store} for that "
            "period"
        )
    objective = settings.train.objective
    discount = settings.serve.aeo_risk_discount
    traffic["effective_priority"] = _effective(traffic, objective, discount)
    if truth is not None:
        traffic = traffic.merge(_read_truth(truth), on="declaration_id", how="left")
        unmatched = int(traffic["true_illicit"].isna().sum())
        if unmatched:
            raise ParcelriskError(
                f"--truth {truth}: {unmatched} of the period's declarations have no row in it"
            )
    days = _covered_days(traffic)
    table = plan_capacity(traffic, days)
    summary = {
        "store": str(store),
        # the span the rates are per day of: first to last declaration planned on
        "period": {
            "first": traffic["declared_at"].min().isoformat(),
            "last": traffic["declared_at"].max().isoformat(),
            "days": round(days, 3),
            "window": _window(since, until),
        },
        "parcels": len(traffic),
        "model": {"name": settings.serve.model_name, "version": str(model_version)},
        "other_versions_left_out": left_out,
        "parcels_per_day": round(len(traffic) / days, 1),
        "objective": objective,
        "aeo_discount": discount,
        "exploration_parcels_with_results": int(
            (traffic["exploration"] & traffic["illicit"].notna()).sum()
        ),
        "observed_lanes": _observed_lanes(traffic),
        "truth": str(truth) if truth else None,
    }
    return summary, table


@lanes_app.command("plan")
def plan(
    db: str | None = _db_option("Decision store (default: serve.audit_db)."),
    since: str | None = typer.Option(None, "--since", help="Declared at or after (UTC date)."),
    until: str | None = typer.Option(None, "--until", help="Declared before the end of (date)."),
    truth: Path | None = typer.Option(
        None, "--truth", help="Ground truth (declaration_id, illicit, revenue): simulations."
    ),
    chart: Path | None = typer.Option(None, "--chart", help="Chart file (.png or .svg)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    model_version: str | None = typer.Option(
        None, "--model-version", help="Plan on this version's decisions (default: the latest's)."
    ),
    params: Path | None = params_option("sections serve, train"),
) -> None:
    """What inspecting the top 0.5% to 20% of a period's traffic would cost and catch,
    estimated on its exploration parcels (and against a ground truth when given)."""
    settings = settings_from(params)
    summary, table = plan_lanes(
        db or settings.serve.audit_db, settings, since, until, truth, model_version
    )
    if chart is not None:
        _write_chart(table, chart)
        summary["chart"] = str(chart)
    if as_json:
        rows = json.loads(table.to_json(orient="records", double_precision=6))
        typer.echo(json.dumps({**summary, "plan": rows}, indent=2))
        return
    typer.echo(_plan_text(summary, table))


def _observed_lanes(traffic: pd.DataFrame) -> dict[str, Any]:
    """The lane shares the period's decisions got, by thresholds version, and exploration's."""
    out: dict[str, Any] = {}
    for version, part in traffic.groupby("thresholds_version", sort=False):
        shares = part["lane"].value_counts(normalize=True)
        out[str(version)] = {
            "parcels": len(part),
            "red": round(float(shares.get("red", 0.0)), 5),
            "yellow": round(float(shares.get("yellow", 0.0)), 5),
            # the model's own choice: red among the parcels not drawn for exploration
            "red_not_explored": round(
                float((part.loc[~part["exploration"], "lane"] == "red").mean()), 5
            ),
            "exploration": round(float(part["exploration"].mean()), 5),
        }
    return out


def _fmt(value: float, digits: int = 0, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:,.{digits}f}"


def _plan_text(summary: dict[str, Any], table: pd.DataFrame) -> str:
    period = summary["period"]
    lines = [
        f"{summary['store']}: {summary['parcels']:,} parcels declared {period['first'][:16]} to "
        f"{period['last'][:16]} ({period['days']:.1f} days, {summary['parcels_per_day']:,.0f}/day "
        f"over that span); lanes rank on {summary['objective']}, AEO x {summary['aeo_discount']}",
        f"  decided by {summary['model']['name']} v{summary['model']['version']}"
        + (
            f"; {summary['other_versions_left_out']:,} decisions of other versions left out "
            "(their scores are on another scale)"
            if summary["other_versions_left_out"]
            else ""
        ),
    ]
    if window := period["window"]:
        asked = " ".join(f"--{k} {window[k]}" for k in ("since", "until") if window[k])
        lines.append(
            f"  period asked {asked}"
            + (f" ({window['days']:,.1f} days)" if window["days"] is not None else "")
            + f"; the figures per day are over the {period['days']:.1f} days it holds "
            "decisions in"
        )
    for version, seen in summary["observed_lanes"].items():
        lines.append(
            f"  thresholds {version}: {seen['parcels']:,} parcels, red {100 * seen['red']:.2f}% "
            f"({100 * seen['red_not_explored']:.2f}% of those not explored), yellow "
            f"{100 * seen['yellow']:.2f}%, exploration {100 * seen['exploration']:.2f}%"
        )
    n_sample = summary["exploration_parcels_with_results"]
    if n_sample == 0:
        lines.append(
            "  no exploration parcel has an inspection result in this period: hit rates and "
            "revenue cannot be estimated (traffic columns only)"
        )
    else:
        lines.append(
            f"  estimates from {n_sample:,} exploration parcels with results (random sample, "
            "95% intervals); red alone or red + yellow: the same cut-off for the same share"
        )
    truth = "true_hit_rate" in table.columns
    head = (
        f"{'share':>6} {'cut-off':>10} {'insp/day':>9} {'explored':>8} {'hit rate [95%]':>22} "
        f"{'hits/day':>9} {'EUR/insp [95%]':>24} {'EUR/day':>10}"
    )
    if truth:
        head += f" | {'true hit':>8} {'true hits/d':>11} {'true EUR/day':>12}"
    lines += ["", head]
    for r in table.itertuples():
        line = (
            f"{100 * r.rate:>5.1f}% {r.cutoff:>10.6g} {r.per_day:>9,.1f} {r.explored:>8,d} "
            f"{_fmt(r.hit_rate, pct=True):>6} [{_fmt(r.hit_rate_lo, pct=True):>6}, "
            f"{_fmt(r.hit_rate_hi, pct=True):>6}] {_fmt(r.hits_per_day, 1):>9} "
            f"{_fmt(r.revenue_per_inspection):>7} [{_fmt(r.revenue_per_inspection_lo):>6}, "
            f"{_fmt(r.revenue_per_inspection_hi):>6}] {_fmt(r.revenue_per_day):>10}"
        )
        if truth:
            line += (
                f" | {_fmt(r.true_hit_rate, pct=True):>8} {_fmt(r.true_hits_per_day, 1):>11} "
                f"{_fmt(r.true_revenue_per_day):>12}"
            )
        lines.append(line)
    return "\n".join(lines)


def _write_chart(table: pd.DataFrame, path: Path) -> None:
    """Inspections per day against revenue caught per day and hit rate (estimates with their
    95% band; the truth's as a dashed line when given)."""
    if path.suffix.lower() not in (".png", ".svg"):
        raise ParcelriskError(f"--chart {path}: give a .png or .svg file")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = table["per_day"]
    fig, (rev, hit) = plt.subplots(1, 2, figsize=(11, 4.2))
    rev.plot(x, table["revenue_per_day"], marker="o", label="estimated (exploration)")
    rev.fill_between(
        x,
        table["revenue_per_inspection_lo"] * x,
        table["revenue_per_inspection_hi"] * x,
        alpha=0.2,
    )
    hit.plot(x, 100 * table["hit_rate"], marker="o", label="estimated (exploration)")
    hit.fill_between(x, 100 * table["hit_rate_lo"], 100 * table["hit_rate_hi"], alpha=0.2)
    if "true_hit_rate" in table.columns:
        rev.plot(x, table["true_revenue_per_day"], ls="--", marker=".", label="ground truth")
        hit.plot(x, 100 * table["true_hit_rate"], ls="--", marker=".", label="ground truth")
    for r in table.itertuples():
        hit.annotate(f"{100 * r.rate:g}%", (r.per_day, 100 * r.hit_rate), fontsize=7)
    rev.set(xlabel="inspections per day", ylabel="revenue caught per day (EUR)")
    hit.set(xlabel="inspections per day", ylabel="hit rate (%)")
    for ax in (rev, hit):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Lane capacity: top share of traffic inspected")
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    except OSError as exc:
        raise ParcelriskError(f"--chart {path}: cannot write it: {exc.strerror}") from None
    finally:
        plt.close(fig)


# --- the champion's thresholds -------------------------------------------------------------------


def _champion(
    client: MlflowClient, settings: Settings, warnings: list[str]
) -> tuple[ModelVersion, LaneThresholds, dict[str, Any]]:
    """The champion's model version, the thresholds in force on it and its bundle metadata;
    what the caller should warn about is appended to ``warnings``."""
    from models.lane_versions import bundle_payload, tagged_thresholds
    from models.registry import alias_model_version
    from models.thresholds import thresholds_from_dict

    # one terminal line per command, not a progress bar per artifact
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    name, alias = settings.serve.model_name, settings.serve.model_alias
    mv = alias_model_version(client, name, alias)
    if mv is None:
        raise ParcelriskError(
            f"no model {name!r}@{alias} in the registry: train and promote one first"
        )
    payload = bundle_payload(client, name, str(mv.version), mv.run_id)
    trained = thresholds_from_dict(payload.get("thresholds"))
    try:
        in_force = tagged_thresholds(dict(mv.tags or {})) or trained
    except ParcelriskError as exc:
        # `lanes set` is how a broken tag is repaired: say so, and do not stand in its way
        warnings.append(f"model {name!r} v{mv.version}: {exc}")
        in_force = replace(trained, version="unreadable")
    return mv, in_force, payload.get("metadata") or {}


@lanes_app.command("set")
def set_lanes(
    red: float = typer.Option(..., "--red", help="Share of traffic to the red lane (0.01 = 1%)."),
    yellow: float = typer.Option(..., "--yellow", help="Share to the yellow lane, after red."),
    reason: str = typer.Option(
        ..., "--reason", help="Why (required): kept with the thresholds version."
    ),
    db: str | None = _db_option("Fit on this decision store's recent traffic (if big enough)."),
    since: str | None = typer.Option(None, "--since", help="With --db: declared at or after."),
    tracking_uri: str | None = tracking_option(),
    params: Path | None = params_option("sections serve"),
) -> None:
    """Fit cut-offs at these rates and put them in force on the champion as a new thresholds
    version (running services pick it up at their next champion check)."""
    from models.registry import registry_client, require_tracking_store
    from models.run_records import operator_name

    if not reason.strip():
        # a lane policy changed is a decision an auditor reads back: recorded with its why, as
        # a forced promotion is (an empty reason was accepted: probe, 2026-12)
        raise typer.BadParameter("say why the lane capacity changes", param_hint="--reason")
    from models.promotion import promotion_lock

    settings = settings_from(params)
    uri = require_tracking_store(tracking_uri)
    # in turn with `promote`: one between reading the champion's rates and moving the alias
    # would carry over the rates it read, not these (a decision lost unsaid)
    with promotion_lock(uri):
        result = set_lane_rates(
            registry_client(uri),
            settings,
            red,
            yellow,
            reason=reason,
            db=db,
            since=since,
            set_by=operator_name(),
        )
    _print_set(result, settings)


def set_lane_rates(
    client: MlflowClient,
    settings: Settings,
    red: float,
    yellow: float,
    *,
    reason: str = "",
    db: str | Path | None = None,
    since: str | None = None,
    set_by: str = "",
    require_store: bool = False,
) -> dict[str, Any]:
    """``lanes set``: fit cut-offs at these rates (on the store's recent decisions of the
    champion when ``db`` holds enough, else on its training traffic quantiles; with
    ``require_store``, too few decisions is an error) and write them as the champion's new
    thresholds version.

    Returns model_name, model_version, run_id, previous (the version in force before),
    thresholds (the fitted ``LaneThresholds``), shares (red, yellow, green: what its cut-offs
    send to each lane of the traffic they were fitted on), record (what was written; None when
    the same thresholds were already in force), record_path (its artifact on the run), note
    (why the store was not used) and warnings.
    """
    from models.lane_versions import MIN_SET_PARCELS, write_thresholds_version
    from models.thresholds import (
        check_lane_rates,
        fit_from_quantiles,
        fit_lane_thresholds,
        lane_shares,
        lane_shares_from_quantiles,
        share_warnings,
    )

    check_lane_rates(red, yellow)
    warnings: list[str] = []
    mv, current, metadata = _champion(client, settings, warnings)
    version = str(mv.version)
    discount = settings.serve.aeo_risk_discount
    note = ""
    thresholds = None
    if db is not None:
        traffic = read_lane_traffic(db, since, None)
        # only this version's scores: another model's priorities are on another scale
        traffic = traffic[
            (traffic["model_name"] == settings.serve.model_name)
            & (traffic["model_version"] == version)
        ]
        if len(traffic) >= MIN_SET_PARCELS:
            first, last = traffic["declared_at"].min(), traffic["declared_at"].max()
            thresholds = fit_lane_thresholds(
                _priority(traffic, current.objective),
                red,
                yellow,
                current.objective,
                aeo=traffic["aeo"].to_numpy(bool),
                aeo_discount=discount,
                fitted_on=(
                    f"decision store {Path(db).name}: {len(traffic)} parcels scored by "
                    f"v{version}, declared {first:%Y-%m-%d} to {last:%Y-%m-%d}"
                ),
            )
            shares = lane_shares(_effective(traffic, current.objective, discount), thresholds)
        else:
            period = f" since {since}" if since else ""
            # none at all is worth its own words: a --since past the store's last day (or the
            # wrong store) looks, in a count, like a quiet week
            note = (
                f"no decisions of v{version} in {db}{period}: "
                if traffic.empty
                else f"only {len(traffic)} decisions of v{version} in {db}{period} (fewer than "
                f"{MIN_SET_PARCELS}): "
            )
            if require_store:
                raise ParcelriskError(f"{note}too few to re-fit the lanes on; nothing changed")
    if thresholds is None:
        quantiles = metadata.get("lane_traffic")
        if not quantiles:
            raise ParcelriskError(
                f"{note}model {mv.name!r} v{version} stores no training traffic quantiles "
                "(trained before they were kept): give --db with its recent traffic"
            )
        thresholds = fit_from_quantiles(
            quantiles,
            red,
            yellow,
            current.objective,
            fitted_on=f"training traffic quantiles of v{version} ({quantiles.get('parcels')} parcels)",
        )
        shares = lane_shares_from_quantiles(quantiles, thresholds)
        if thresholds.aeo_discount != discount:
            warnings.append(
                f"v{version}'s training traffic was discounted with AEO x "
                f"{thresholds.aeo_discount}, serve.aeo_risk_discount is {discount}"
            )
    warnings += share_warnings(thresholds, shares)
    result = {
        "model_name": mv.name,
        "model_version": version,
        "run_id": mv.run_id,
        "previous": current.version,
        "thresholds": thresholds,
        "shares": shares,
        "record": None,
        "record_path": None,
        "note": note,
        "warnings": warnings,
    }
    if thresholds.version == current.version:
        return result
    result["record_path"], result["record"] = write_thresholds_version(
        client,
        mv.name,
        version,
        thresholds,
        previous=current.version,
        reason=reason,
        set_by=set_by,
    )
    return result


def _share(value: float) -> str:
    from models.thresholds import share_text

    return share_text(value)


def _print_set(result: dict[str, Any], settings: Settings) -> None:
    """What ``lanes set`` and ``lanes refit`` print: the version put in force, or that it was."""
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    thresholds, version = result["thresholds"], result["model_version"]
    if result["record"] is None:
        # with the note: the store was not used, so the "new" cut-offs are training's again and
        # the operator must learn that, not only that nothing changed
        fitted = f"fitted on {thresholds.fitted_on}: " if result["note"] else ""
        typer.echo(
            f"{result['note']}{fitted}lane thresholds {thresholds.version} already in force on "
            f"v{version}; nothing recorded"
        )
        return
    record, shares = result["record"], result["shares"]
    typer.echo(
        f"{result['note']}lane thresholds {thresholds.version} in force on "
        f"{result['model_name']} v{version} (were {result['previous']}): red >= "
        f"{thresholds.red_cutoff:.6g} ({_share(shares['red'])} of the traffic fitted on, "
        f"{_share(thresholds.red_rate)} asked), yellow >= {thresholds.yellow_cutoff:.6g} (next "
        f"{_share(shares['yellow'])}, {_share(thresholds.yellow_rate)} asked)\n"
        f"fitted on {thresholds.fitted_on}; recorded as {result['record_path']} on "
        f"run {result['run_id']} by {record['set_by']} at {record['set_at']}; running services "
        f"pick it up within serve.champion_check_s ({settings.serve.champion_check_s:g} s)"
    )


def refit_lane_cutoffs(
    client: MlflowClient,
    settings: Settings,
    db: str | Path,
    days: int,
    *,
    reason: str = "",
    set_by: str = "",
    despite_feed: str = "",
) -> dict[str, Any]:
    """``lanes refit``: the rates in force, re-fitted on the champion's decisions of the last
    ``days`` days the store holds (counted back from its latest declaration, so a replayed or
    late store works as a live one). What ``set_lane_rates`` returns, plus ``since`` and
    ``feed`` (``serving.monitor.compute.check_feed`` on the window).

    Why a versioned re-fit and not a rolling quantile inside the service: each decision names
    the cut-offs it was laned with, and an auditor can recompute it from that version; a
    quantile drifting inside each worker would make every decision's cut-off its own.

    Why the feed is checked first: run daily from a scheduler, a re-fit follows whatever the
    window holds. When a feed breaks (descriptions gone, a code list changed upstream) the
    scores move, the lane shares with them, and the monitor pages; a re-fit would fill the red
    lane on the broken traffic and take the lane alert away, so nothing changes until a person
    has looked (``despite_feed``: their reason, recorded with the version)."""
    if days < 1:
        raise ParcelriskError(f"--days {days}: give at least one day of traffic")
    warnings: list[str] = []
    mv, current, _ = _champion(client, settings, warnings)
    latest = _latest_declared(db, settings.serve.model_name, str(mv.version))
    if latest is None:
        raise ParcelriskError(
            f"{db} holds no decision of {mv.name} v{mv.version}: nothing to re-fit the lanes on"
        )
    since = (latest - timedelta(days=days)).isoformat()
    feed = _check_feed(client, settings, db, latest - timedelta(days=days), latest)
    reason = reason or f"re-fit at the rates in force on the last {days} days of traffic"
    if broken := feed["broken"]:
        shown = ", ".join(f"{b['feature']} ({b['moved']})" for b in broken[:4])
        found = (
            f"{len(broken)} feature(s) went missing or off the reference's categories (a share "
            f"up more than monitor.missing_rise_alert={settings.monitor.missing_rise_alert:g}): "
            + shown
            + (f" and {len(broken) - 4} more" if len(broken) > 4 else "")
        )
        if not despite_feed:
            raise ParcelriskError(
                f"the declarations' feed looks broken in the last {days} days of {db} "
                f"({feed['rows']} decisions): {found}. Cut-offs fitted on it would follow it; "
                "nothing changed. Fix the feed (`parcelrisk monitor` shows what moved), or "
                "re-fit all the same with --despite-feed REASON"
            )
        names = ", ".join(b["feature"] for b in broken)
        reason = f"{reason}; despite the feed check ({names}): {despite_feed}"
        warnings.append(f"re-fitted despite the feed check: {found}")
    elif not feed["checked"]:
        warnings.append(f"the declarations' feed was not checked: {feed['not_checked']}")
    result = set_lane_rates(
        client,
        settings,
        current.red_rate,
        current.yellow_rate,
        reason=reason,
        db=db,
        since=since,
        set_by=set_by,
        require_store=True,
    )
    result["warnings"] = warnings + result["warnings"]
    return {**result, "since": since, "feed": feed}


FEED_CHECK_ROWS = 200_000


def _check_feed(
    client: MlflowClient, settings: Settings, db: str | Path, since: datetime, latest: datetime
) -> dict[str, Any]:
    """``check_feed`` on the decisions declared in [since, latest] with the champion's bundle
    (its training reference)."""
    from serving.monitor.compute import check_feed
    from serving.monitor.data import champion_bundle, read_period

    stored = "%Y-%m-%dT%H:%M:%S.%fZ"  # the store's time text: compared as text
    # the newest FEED_CHECK_ROWS of the window: shares need no more, and a hub's week of
    # feature vectors would not fit in memory (a recent break is the one tomorrow's lanes meet)
    frame = read_period(
        db,
        since.strftime(stored),
        (latest + timedelta(microseconds=1)).strftime(stored),
        newest=FEED_CHECK_ROWS,
    )
    champion, info = champion_bundle(client, settings.serve.model_name, settings.serve.model_alias)
    return check_feed(frame, champion, info, settings.monitor)


def _latest_declared(db: str | Path, model_name: str, model_version: str) -> datetime | None:
    """The latest declared_at among one model version's decisions (None: none)."""
    from serving.store_read import read_only

    with read_only(db) as store:
        _, rows = store.query(
            "SELECT MAX(declared_at) FROM decisions WHERE model_name = {p} AND model_version = {p}",
            (model_name, model_version),
        )
    (latest,) = rows[0]
    if latest is None:
        return None
    moment = datetime.fromisoformat(str(latest).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@lanes_app.command("refit")
def refit_lanes(
    db: str = typer.Option(..., "--db", help="Decision store holding the recent traffic."),
    days: int = typer.Option(7, "--days", help="Re-fit on the last DAYS days the store holds."),
    reason: str = typer.Option("", "--reason", help="Why: kept with the thresholds version."),
    despite_feed: str = typer.Option(
        "",
        "--despite-feed",
        metavar="REASON",
        help="Re-fit even when features went missing or off their categories in the window "
        "(a broken feed); the reason is kept with the thresholds version.",
    ),
    tracking_uri: str | None = tracking_option(),
    params: Path | None = params_option("sections serve, monitor"),
) -> None:
    """Re-fit the cut-offs in force, at their own rates, on recent traffic, so each lane keeps
    its share as traffic moves (run it daily from a scheduler; exit 2 when too little traffic,
    or when the window's feed looks broken)."""
    from models.promotion import promotion_lock
    from models.registry import registry_client, require_tracking_store
    from models.run_records import operator_name

    settings = settings_from(params)
    uri = require_tracking_store(tracking_uri)
    with promotion_lock(uri):  # in turn with `promote`, as `lanes set`
        result = refit_lane_cutoffs(
            registry_client(uri),
            settings,
            db,
            days,
            reason=reason,
            set_by=operator_name(),
            despite_feed=despite_feed,
        )
    feed = result["feed"]
    if feed["checked"] and not feed["broken"]:
        typer.echo(
            f"feed checked on {feed['rows']} decisions: no feature gone missing or off the "
            "reference's categories"
        )
    _print_set(result, settings)


@lanes_app.command("show")
def show(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    tracking_uri: str | None = tracking_option(),
    params: Path | None = params_option("sections serve"),
) -> None:
    """The champion's lane thresholds versions, oldest first, and the one in force."""
    from models.registry import registry_client, require_tracking_store

    settings = settings_from(params)
    body = lane_history(registry_client(require_tracking_store(tracking_uri)), settings)
    for warning in body.pop("warnings"):
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(body, indent=2, default=str))
        return
    from serving.audit.safe_text import terminal_safe

    model, current, history = body["model"], body["in_force"], body["history"]
    # a version set more than once has a record per set: the newest of them put it in force
    newest = max((i for i, h in enumerate(history) if h.get("version") == current), default=-1)
    # the reason and the other tags are an operator's text: one line each, no escapes run
    typer.echo(
        terminal_safe(
            f"{model['name']} v{model['version']} (run {model['run_id']}): thresholds "
            f"{current} in force"
        )
    )
    if notice := body.get("not_carried"):
        # on stdout, beside the history it explains: the cut-offs in force are not the
        # capacity decided before the promotion
        origin = notice.get("origin") or {}
        typer.echo(
            terminal_safe(
                f"! LANE RATES NOT CARRIED OVER at its promotion: {notice.get('rates')} was in "
                f"force on version {notice.get('from_version')} (set by "
                f"{origin.get('set_by')} at {str(origin.get('set_at'))[:16]}: "
                f"{origin.get('reason')}); this version serves {notice.get('serves')}: "
                f"{notice.get('why')}; run `{notice.get('command')}`"
            )
        )
    for i, h in enumerate(history):
        mark = "*" if i == newest else " "
        line = (
            f"{mark} {h.get('version')}  {h.get('set_at') or 'trained':<32} "
            f"red {100 * float(h.get('red_rate', 0)):g}% >= {float(h.get('red_cutoff', 0)):.6g}  "
            f"yellow {100 * float(h.get('yellow_rate', 0)):g}% >= "
            f"{float(h.get('yellow_cutoff', 0)):.6g}  by {h.get('set_by')}  "
            f"on {h.get('fitted_on') or '-'}"
            + (f"  reason: {h['reason']}" if h.get("reason") and h.get("set_at") else "")
        )
        typer.echo(terminal_safe(line))


def lane_history(client: MlflowClient, settings: Settings) -> dict[str, Any]:
    """``lanes show``: the champion (model), the thresholds version in force (in_force), every
    record of a version set on it, oldest first, one per set (history), the lane rates in force
    before its promotion that it could not take over (not_carried: None when there were none
    or they were set again since) and what to warn about (warnings)."""
    from models.lane_versions import not_carried_notice, thresholds_history

    warnings: list[str] = []
    mv, current, _ = _champion(client, settings, warnings)
    return {
        "model": {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id},
        "in_force": current.version,
        "history": thresholds_history(client, mv.run_id),
        # the decided rates its promotion could not carry over, while nobody has set them again
        "not_carried": not_carried_notice(dict(mv.tags or {}), current.version),
        "warnings": warnings,
    }


def register_lanes(app: typer.Typer) -> None:
    app.add_typer(lanes_app, name="lanes")
