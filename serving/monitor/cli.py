"""`parcelrisk monitor --since DATE [--until DATE]`: the thin edge of ``serving.monitor``.

Prints the JSON summary (not with ``--quiet``) and a verdict line; with ``--report DIR`` also
writes ``report.html`` and ``summary.json`` there; logs both to the champion's MLflow run under
``monitoring/<since>_<until>/``. ``--acknowledge-until DATE --reason TEXT`` records a person's
acknowledgement of the period's alerts (``serving.monitor.acks``). Exit 1 when
an alert fires, 0 when none, 2 on bad input (``ParcelriskError``, one line).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from features.cli import params_option, settings_from, tracking_option
from features.errors import ParcelriskError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from features.params import Settings
    from models.bundle import RiskModel
    from serving.monitor.acks import Ack


def _bound(text: str, option: str) -> Any:
    """A date (its midnight) or an ISO time, UTC unless it names an offset."""
    import pandas as pd

    from serving.audit.report import parse_when

    return pd.Timestamp(parse_when(text, option))


def _stamp(moment: Any) -> str:
    """A bound as a file-name-safe label: the date when it is a midnight."""
    if moment == moment.normalize():
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%dT%H%M%SZ")


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities as null (JSON has neither), numpy scalars as Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def monitor_store(
    path: str | Path,
    start: pd.Timestamp,
    end: pd.Timestamp,
    settings: Settings,
    tracking_uri: str | None = None,
    acks: Sequence[Ack] = (),
) -> tuple[dict[str, Any], RiskModel, Any]:
    """What ``parcelrisk monitor`` measures on the decisions declared in [start, end) of the
    store at ``path``: the summary (``monitor_period``'s, with the store's path; the raw live
    scores still in ``drift.score_live``), the champion judged against (thresholds in force)
    and the MLflow client it came from."""
    from serving.auditor.disparity import read_lane_counts
    from serving.monitor.compute import (
        COMPARED_COLUMNS,
        compare_period,
        deciding_models,
        lane_targets_of,
        monitor_period,
    )
    from serving.monitor.data import (
        DRIFT_VECTORS,
        declared_in,
        lane_targets_of_versions,
        load_champion_bundle,
        read_lane_targets,
        read_period,
    )

    # Periods are chosen by declared_at, not scored_at: a replayed or simulated period (a
    # backfill, the loop benchmark, a store rebuilt from history) is scored long after its
    # parcels were declared, and drift and lane shares are properties of the traffic's days.
    stored = "%Y-%m-%dT%H:%M:%S.%fZ"
    if not declared_in(path, start.strftime(stored), end.strftime(stored)):
        raise ParcelriskError(
            f"no decisions declared in [{start.isoformat()}, {end.isoformat()}) in {path}"
        )
    champion, info, client = load_champion_bundle(
        tracking_uri, settings.serve.model_name, settings.serve.model_alias
    )
    # the period of the same length before: each drift alert says whether it is new. Read
    # for its comparison with the reference alone, and reduced to it before the period is
    # read: its sampled vectors beside the period's were ~0.1 KB a decision more at the peak.
    previous = read_period(
        path,
        (start - (end - start)).strftime(stored),
        start.strftime(stored),
        vectors_at_most=DRIFT_VECTORS,
        columns=COMPARED_COLUMNS,
    )
    before = (
        compare_period(previous, champion, info, settings.monitor)
        if champion.reference is not None
        else None
    )
    del previous
    frame = read_period(path, start.strftime(stored), end.strftime(stored), None, DRIFT_VECTORS)
    counts = read_lane_counts(
        path, declared_from=start.strftime(stored), declared_to=end.strftime(stored)
    )
    earlier = lane_targets_of_versions(
        client, info["name"], deciding_models(frame) - {(info["name"], info["version"])}
    )
    # the champion's own records last: they win for a thresholds version both hold
    targets = lane_targets_of(champion, {**earlier, **read_lane_targets(client, info["run_id"])})
    summary = monitor_period(
        frame, counts, champion, info, targets, start, end, settings.monitor, before, acks
    )
    summary["store"] = str(path)
    return summary, champion, client


def monitor(
    since: str = typer.Option(..., "--since", help="From this date or ISO time (UTC)."),
    until: str | None = typer.Option(
        None,
        "--until",
        help="To this date (its midnight) or ISO time (UTC), exclusive; default now. "
        "--since 2026-03-01 --until 2026-03-08 is one week.",
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write report.html and summary.json into this directory."
    ),
    # text, not a Path: a postgresql:// URL keeps its slashes (and is refused by name)
    db: str | None = typer.Option(
        None, "--db", help="Decision store (default: $PARCELRISK_AUDIT_DB, serve.audit_db)."
    ),
    tracking_uri: str | None = tracking_option(),
    params: Path | None = params_option("sections monitor, serve"),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        help="Print only the verdict line (stderr), not the JSON summary: for a cron job's mail.",
    ),
    acknowledged: Path | None = typer.Option(
        None,
        "--acknowledged",
        help="Acknowledgements file (default: monitor.acknowledged_file, "
        "monitor-acknowledged.yaml).",
    ),
    acknowledge_until: str | None = typer.Option(
        None,
        "--acknowledge-until",
        help="Acknowledge this period's alerts (or those --only names) at their level until "
        "this date: they page again if they move beyond it, or after it. Needs --reason.",
    ),
    reason: str = typer.Option("", "--reason", help="Why the acknowledged alerts need no action."),
    only: list[str] = typer.Option(
        [],
        "--only",
        help="With --acknowledge-until: just this alert, as KIND:SUBJECT "
        "(e.g. lane_share:red); repeatable.",
    ),
) -> None:
    """A period of live decisions against the champion: feature and score drift (PSI, KS),
    lane shares against their targets, exploration hit rates, disparity by origin, channel
    and platform; exit 1 when an alert fires."""
    import pandas as pd

    from serving.monitor.data import log_report
    from serving.monitor.report import render_report

    # a progress bar per bundle file on stderr says nothing to a person or a cron job
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = settings_from(params)
    start = _bound(since, "--since")
    end = _bound(until, "--until") if until is not None else pd.Timestamp.now(tz="UTC")
    if end <= start:
        raise ParcelriskError(
            f"--until {until} is not after --since {since}"
            if until is not None
            else f"--since {since} is not in the past (the period ends now, {end:%Y-%m-%d %H:%M} UTC)"
        )
    if report is not None:  # a place it cannot write is refused before the period is read
        try:
            report.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParcelriskError(f"--report {report}: cannot create it: {exc.strerror}") from None
    from serving.monitor.acks import read_acks

    if acknowledge_until is not None and not reason.strip():
        raise ParcelriskError(
            "--acknowledge-until needs --reason: why no action is needed until then"
        )
    if only and acknowledge_until is None:
        raise ParcelriskError("--only names alerts to acknowledge: give --acknowledge-until too")
    if bad := [o for o in only if ":" not in o]:
        raise ParcelriskError(f"--only {bad[0]!r}: write KIND:SUBJECT (e.g. lane_share:red)")
    # read before the period is: a date that does not read is refused before any work
    ack_until = _bound(acknowledge_until, "--acknowledge-until") if acknowledge_until else None
    acks_path = acknowledged or Path(settings.monitor.acknowledged_file)
    acks = read_acks(acks_path)
    path = db if db is not None else settings.serve.audit_db
    summary, champion, client = monitor_store(path, start, end, settings, tracking_uri, acks)
    if ack_until is not None:
        _acknowledge(summary, acks_path, ack_until, reason, only, start, end)
    info = summary["champion"]
    live_scores = summary["drift"].pop("score_live", [])
    html_text = render_report(
        {**summary, "drift": {**summary["drift"], "score_live": live_scores}},
        champion.reference.score if champion.reference is not None else None,
        settings.monitor,
    )
    summary = _clean(summary)
    out = report or Path(tempfile.mkdtemp(prefix="parcelrisk-monitor-report-"))
    files = [out / "report.html", out / "summary.json"]
    try:
        out.mkdir(parents=True, exist_ok=True)
        files[0].write_text(html_text, encoding="utf-8")
        files[1].write_text(json.dumps(summary, indent=1), encoding="utf-8")
    except OSError as exc:
        raise ParcelriskError(f"--report {out}: cannot write the report: {exc.strerror}") from None
    artifact_path = f"monitoring/{_stamp(start)}_{_stamp(end)}"
    logged = f"logged to run {info['run_id']} under {artifact_path}/"
    try:
        log_report(client, info["run_id"], files, artifact_path)
    except Exception as exc:  # the verdict and the files stand without the MLflow copy
        logged = f"NOT logged to run {info['run_id']}: {type(exc).__name__}: {exc}"
    if not quiet:
        typer.echo(json.dumps(summary, indent=1))
    verdict = verdict_line(summary)
    if report is None:  # the files went to the run: no temporary directory left behind
        shutil.rmtree(out, ignore_errors=True)
        typer.echo(f"{verdict}; {logged}", err=True)
    else:
        typer.echo(f"{verdict}; report {files[0]}; {logged}", err=True)
    if summary["alerts"]:
        raise typer.Exit(1)


def _acknowledge(
    summary: dict[str, Any],
    path: Path,
    until: pd.Timestamp,
    reason: str,
    only: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> None:
    """Acknowledge the summary's alerts (those ``only`` names) in ``path`` and move them to its
    ``acknowledged`` list: the person read them and says none needs action until then."""
    from dataclasses import asdict

    import pandas as pd

    from models.run_records import operator_name
    from serving.monitor.acks import acknowledge

    alerts = summary["alerts"]
    named = {tuple(o.split(":", 1)) for o in only}
    if unknown := named - {(a["kind"], a["subject"]) for a in alerts}:
        kind, subject = sorted(unknown)[0]
        raise ParcelriskError(f"--only {kind}:{subject}: no such alert in this period")
    chosen = [a for a in alerts if not named or (a["kind"], a["subject"]) in named]
    added = acknowledge(
        path,
        chosen,
        period=f"{_stamp(start)}_{_stamp(end)}",
        until=until,
        reason=reason,
        now=pd.Timestamp.now(tz="UTC"),
        by=operator_name(),  # as lane sets and promotions name who ran them
    )
    summary["alerts"] = [a for a in alerts if a not in chosen]
    summary["acknowledged"] += [
        {"alert": a, "acknowledgement": asdict(ack)} for a, ack in zip(chosen, added, strict=True)
    ]


def verdict_line(summary: dict[str, Any]) -> str:
    """The line a person or a cron job reads: the alerts, those a person acknowledged at their
    level, and what could not be judged ("0 alert(s)" alone read as healthy for a period of
    100% red against a 1% target, too few to judge)."""
    alerts, unjudged = summary["alerts"], summary["not_judged"]
    line = f"{len(alerts)} alert(s)"
    if alerts:
        line += f" ({', '.join(sorted({a['kind'] for a in alerts}))})"
    if acknowledged := summary["acknowledged"]:
        line += f"; {len(acknowledged)} acknowledged at their level"
    if expired := summary["acknowledgements_expired"]:
        line += f"; {len(expired)} acknowledgement(s) expired"
    if unjudged:
        line += f"; NOT JUDGED: {'; '.join(unjudged)}"
    return line
