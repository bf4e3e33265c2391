"""CLI commands of the online side: `parcelrisk serve`, `parcelrisk score` (offline file),
`parcelrisk outcomes ingest` (inspection results) and `parcelrisk history export`."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer

from features.cli import params_option, settings_from
from features.params import DEFAULT_MAX_REJECTED

logger = logging.getLogger(__name__)

SERVICE_IMPORT = "serving.service:ParcelRiskService"

outcomes_app = typer.Typer(help="Inspection results that come back.", no_args_is_help=True)
# The ids of results --skip-unknown left out, in a file's summary (a national file's may be
# thousands: --skipped-out writes them all) and in its warning
SKIPPED_IDS_SHOWN = 1000
SKIPPED_IDS_WARNED = 10
history_app = typer.Typer(help="The scored history, for training.", no_args_is_help=True)


def _absolute_store(location: str) -> str:
    """A SQLite store's path made absolute (the workers start elsewhere); a URL as it is."""
    from serving.store import is_sqlite

    return (
        str(Path(location).resolve()) if is_sqlite(location) and "://" not in location else location
    )


def require_bindable_host(host: str) -> None:
    """``--host`` as an address this machine can resolve: BentoML found out in its arbiter,
    with a traceback ('Invalid host IP address')."""
    import socket

    from features.errors import ParcelriskError

    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        raise ParcelriskError(
            f"--host {host!r} is not an address of this machine's resolver ({exc}); "
            "e.g. 127.0.0.1, 0.0.0.0 or a host name"
        ) from None


def require_model_dir(path: Path) -> None:
    """``--model-dir`` made if missing and written to once, here: each worker found out as it
    downloaded the champion, and the server ran NOT READY with a traceback per worker."""
    from features.cli import output_directory
    from features.errors import ParcelriskError

    output_directory(path, "--model-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise ParcelriskError(
            f"--model-dir {path}: cannot create or write the directory: {exc.strerror or exc}"
        ) from None


def serve(
    port: int = typer.Option(3000, "--port", min=0, max=65535, help="HTTP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0: all)."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI of the registry (default: MLflow's)."
    ),
    params: Path | None = params_option("sections serve, validate, promote"),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Worker processes (default: serve.workers)."
    ),
    # text, not a Path: a postgresql://host/db URL must keep its two slashes
    audit_db: str | None = typer.Option(
        None,
        "--audit-db",
        help="Decision store: a SQLite file, or postgresql://USER@HOST:PORT/DATABASE shared by "
        "replicas (default: $PARCELRISK_AUDIT_DB, serve.audit_db).",
    ),
    model_dir: Path | None = typer.Option(
        None, "--model-dir", help="Where to materialise the champion bundle (default: temp dir)."
    ),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth", help="Serve WITHOUT API keys. Local demos only."
    ),
) -> None:
    """Serve the champion model over HTTP (BentoML): /score, /explain, /decision, probes, metrics."""
    from features.params import DEFAULT_PARAMS
    from serving.auth import INSECURE_ENV, load_keyring
    from serving.config import (
        AUDIT_DB_ENV,
        METRICS_DIR_ENV,
        MODEL_DIR_ENV,
        PARAMS_ENV,
        TRACKING_URI_ENV,
        WORKERS_ENV,
    )
    from serving.process import SERVE_PID_ENV, port_in_use, port_in_use_message

    settings = settings_from(params)  # a bad file stops here, before any worker starts
    require_bindable_host(host)
    if model_dir is not None:
        require_model_dir(model_dir)
    if insecure_no_auth:
        os.environ[INSECURE_ENV] = "1"
    load_keyring()  # fail here, with the message, before any worker starts
    # BentoML would only find out inside its arbiter, with a traceback; and orphaned workers of
    # an earlier server still hold the port: name them, so they can be stopped
    busy = port_in_use(host, port)
    if busy:
        typer.echo(busy, err=True)
        raise typer.Exit(1)
    # The workers read the same file themselves (serving.config.worker_settings): hand them its
    # path and the options that override it, and nothing stale from an earlier environment.
    path = params or (DEFAULT_PARAMS if DEFAULT_PARAMS.is_file() else None)
    env = {
        PARAMS_ENV: str(path.resolve()) if path else None,
        WORKERS_ENV: str(workers) if workers else None,
        MODEL_DIR_ENV: str(model_dir.resolve()) if model_dir else None,  # else made below
        TRACKING_URI_ENV: tracking_uri,
        AUDIT_DB_ENV: _absolute_store(audit_db) if audit_db else os.environ.get(AUDIT_DB_ENV),
    }
    for name, value in env.items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    from models.registry import create_sqlite_store

    create_sqlite_store(tracking_uri)  # not by every worker at once
    # The decision store, opened once here: an unreachable PostgreSQL, a legacy file or a
    # missing audit key stops the server with its one line, instead of every worker failing
    # (and restarting) on it; its tables are made once, not raced by the workers.
    import sqlite3

    from features.errors import ParcelriskError
    from serving.store import open_store, require_key_signs_chain

    location = os.environ.get(AUDIT_DB_ENV) or settings.serve.audit_db
    try:
        store = open_store(location)
        try:
            require_key_signs_chain(store)
        finally:
            store.close()
    except ParcelriskError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (OSError, sqlite3.Error) as exc:  # a file where none can be made or opened
        typer.echo(f"error: cannot open the decision store {location}: {exc}", err=True)
        raise typer.Exit(2) from None
    # One model copy per worker process; LightGBM's OpenMP pool inside each would only fight
    # the other workers for the same cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Each worker ties itself to this process (serving.process.exit_with_parent): circus puts
    # every worker in a session of its own, so a SIGKILL of this process would orphan them.
    os.environ[SERVE_PID_ENV] = str(os.getpid())
    # What `bentoml serve` does for new-style (>= 1.2) services; blocks until stopped.
    from _bentoml_impl.server import serve_http

    from serving.service import ParcelRiskService

    logger.info(
        "serving %s on http://%s:%d with %s worker(s)",
        SERVICE_IMPORT,
        host,
        port,
        workers or settings.serve.workers,
    )
    ParcelRiskService.inject_config()
    # SIGTERM drains what is in flight, but BentoML's default is to wait for it without end
    # (no uvicorn graceful timeout; circus's graceful_timeout is a day): no answer can come
    # later than the request timeout (504), so waiting longer serves nobody.
    drain_s = math.ceil(settings.serve.request_timeout_s) + 1
    # the champions' downloads: removed when the server stops unless --model-dir named a place
    own_model_dir = None if model_dir else Path(tempfile.mkdtemp(prefix="parcelrisk-model-"))
    if own_model_dir is not None:
        os.environ[MODEL_DIR_ENV] = str(own_model_dir.resolve())
    # BentoML keeps the workers' metric files in $BENTOML_HOME/prometheus_multiproc_dir, one
    # for every server of the user, and empties it at each start: a second `serve` (a
    # blue/green pair, a restart overlapping a draining server) wiped the first one's, whose
    # /metrics then reported the newcomer's traffic. Each server gets a directory of its own:
    # PARCELRISK_METRICS_DIR when the operator names one (emptied at start, kept after), else
    # a fresh one, removed when the server stops.
    from bentoml._internal.configuration.containers import BentoMLContainer

    named = os.environ.get(METRICS_DIR_ENV)
    metrics_dir = Path(named) if named else Path(tempfile.mkdtemp(prefix="parcelrisk-metrics-"))
    try:
        with BentoMLContainer.prometheus_multiproc_dir.patch(str(metrics_dir)):
            serve_http(
                SERVICE_IMPORT,
                working_dir=str(Path.cwd()),
                port=port,
                host=host,
                timeout_graceful_shutdown=drain_s,
                timeout_keep_alive=settings.serve.keep_alive_s,
            )
    except OSError as exc:  # taken between the check above and circus's bind
        if exc.errno != errno.EADDRINUSE:
            raise
        typer.echo(port_in_use_message(host, port), err=True)
        raise typer.Exit(1) from None
    finally:
        if not named:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        if own_model_dir is not None:
            shutil.rmtree(own_model_dir, ignore_errors=True)


def score(
    file: Path = typer.Argument(..., help="Declarations CSV or Parquet file."),
    out: Path = typer.Option(..., "--out", help="Output .csv or .parquet (written atomically)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    params: Path | None = params_option("sections serve, validate, promote"),
    chunk_size: int = typer.Option(1000, "--chunk-size", min=1, help="Declarations per batch."),
    audit_db: str | None = typer.Option(
        None,
        "--audit-db",
        help="Also record every decision in this decision store (SQLite file or postgresql://).",
    ),
    no_validate: bool = typer.Option(
        False,
        "--no-validate",
        help="Score without the validation gate (logged; every decision carries a warning).",
    ),
    mapping: Path | None = typer.Option(
        None,
        "--mapping",
        help="Score an administration's own export (CSV, workbook, JSON, as ingest reads it) "
        "through its mapping YAML; outcome fields the mapping maps are not read.",
    ),
    quarantine: Path | None = typer.Option(
        None,
        "--quarantine",
        help="Set declarations that do not convert or break a gate fault rule aside in this "
        "CSV (as the file holds them, row number, reasons) and score the others; without it "
        "any such declaration refuses the whole file.",
    ),
    max_rejected: float = typer.Option(
        DEFAULT_MAX_REJECTED,
        "--max-rejected",
        min=0.0,
        max=1.0,
        help="With --quarantine: the largest share of rows set aside (0-1) before the whole "
        "file is refused as a mapping or export problem.",
    ),
) -> None:
    """Score a declarations file offline through the service's scoring path.

    The file passes the same rules as an API request first: a declaration the API would refuse
    makes the whole file refused, with the rows and reasons listed. With ``--mapping`` the
    file is an administration's export, read as ``ingest`` reads it (into a temporary contract
    file) before the same gate.
    """
    from features.errors import ParcelriskError

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = settings_from(params)
    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise ParcelriskError(f"--out {out}: use a .csv or .parquet file name")
    if not out.parent.is_dir():  # found before the decisions are scored and stored
        raise ParcelriskError(f"--out {out}: directory {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):  # a read-only mount failed only after scoring
        raise ParcelriskError(f"--out {out}: directory {out.parent} cannot be written")
    if out.exists() and file.exists() and out.resolve() == file.resolve():
        raise ParcelriskError(
            f"--out {out} is the declarations file itself: the scores would replace it; "
            "write them to another file"
        )
    if quarantine is not None:
        from features.intake.ingest import check_quarantine_path

        check_quarantine_path(quarantine, out, [file], max_rejected, "the declarations file")
    with tempfile.TemporaryDirectory(prefix="parcelrisk-score-") as read_dir:
        set_aside = None
        if mapping is not None:
            file, set_aside = _ingested_for_scoring(
                file, mapping, Path(read_dir), settings, quarantine, max_rejected
            )
        elif quarantine is not None:
            from features.intake.ingest import set_aside_faulty_rows
            from features.intake.rules import Limits

            kept = Path(read_dir) / "declarations.parquet"
            set_aside = set_aside_faulty_rows(
                file, kept, quarantine, Limits.from_settings(settings), max_rejected
            )
            file = kept
        _score_contract_file(
            file, out, tracking_uri, settings, chunk_size, audit_db, no_validate, set_aside
        )


# Rows named in the refusal of an export holding declarations that cannot be scored
_SHOWN_REJECTED = 5


def _ingested_for_scoring(
    file: Path,
    mapping: Path,
    work: Path,
    settings: Any,
    quarantine: Path | None,
    max_rejected: float,
) -> tuple[Path, dict | None]:
    """An export read with its mapping (outcome fields left out) into a contract file in
    ``work``, and what was set aside (``quarantine``; None without it). Declarations that do
    not convert or break a gate fault rule are always found here, where the export's own row
    numbers are known: without ``quarantine`` they refuse the file, named by those rows (the
    gate on the contract file would name rows of a temporary file nobody has)."""
    import pandas as pd

    from features.errors import ParcelriskError
    from features.intake.ingest import ingest_file
    from features.intake.mapping import REJECTED_REASONS, REJECTED_ROW
    from features.intake.rules import Limits

    contract_file = work / "declarations.parquet"
    set_aside = quarantine or work / "rejected.csv"
    summary = ingest_file(
        source=file,
        mapping_path=mapping,
        out=contract_file,
        quarantine=set_aside,
        max_rejected=max_rejected if quarantine is not None else 1.0,
        limits=Limits.from_settings(settings),
        fx_to_base=settings.features.fx,
        timezone=settings.features.timezone,
        for_scoring=True,
    )
    rejected = int(summary.get("rows_rejected", 0))
    if rejected and quarantine is None:
        shown = pd.read_csv(
            set_aside, dtype="string", usecols=[REJECTED_ROW, REJECTED_REASONS]
        ).head(_SHOWN_REJECTED)
        rows = "; ".join(
            f"row {row}: {why}"
            for row, why in zip(shown[REJECTED_ROW], shown[REJECTED_REASONS], strict=True)
        )
        raise ParcelriskError(
            f"{file}: {rejected} of {summary['rows_read']} row(s) cannot be scored: {rows}"
            + (" ..." if rejected > _SHOWN_REJECTED else "")
            + ". Correct them, or give --quarantine REJECTED.csv to score the others and set "
            "these aside there."
        )
    logger.info(
        "read %d declaration(s) from %s with the mapping %s", summary["rows"], file, mapping
    )
    if quarantine is None:
        return contract_file, None
    keys = ("rows_read", "rows_rejected", "quarantine", "rejected_reasons")
    return contract_file, {k: summary[k] for k in keys if k in summary}


def _score_contract_file(
    file: Path,
    out: Path,
    tracking_uri: str | None,
    settings: Any,
    chunk_size: int,
    audit_db: str | None,
    no_validate: bool,
    set_aside: dict | None = None,
) -> None:
    from features.intake.rules import Limits
    from features.intake.validation import require_valid
    from models.registry import require_tracking_store
    from serving.scoring import load_runtime, score_file
    from serving.store import open_outcome_store, open_store, require_key_signs_chain

    # The gate runs before the model loads, so a bad file is refused in a second, not after
    # the model download. Its faults are structural (the same whatever the limits); only the
    # plausibility warnings use limits, and every decision carries the model's own anyway.
    gate = require_valid(
        file,
        Limits.from_settings(settings),
        no_validate=no_validate,
        with_outcomes=False,
        what="score",
    )
    tracking_uri = require_tracking_store(tracking_uri)  # never a new, empty MLflow store
    with tempfile.TemporaryDirectory(prefix="parcelrisk-model-") as model_dir:
        runtime = load_runtime(settings, tracking_uri, Path(model_dir))
        store = (
            open_store(audit_db, wal_max_mb=settings.serve.audit_wal_max_mb) if audit_db else None
        )
        results = None
        try:
            if store is not None:
                require_key_signs_chain(store)
                # the inspection results stored beside the decisions count for the live state
                # here as in the service (without them every hit rate missed them)
                results = open_outcome_store(audit_db, store, read_only=True)
            summary = score_file(
                file,
                out,
                runtime,
                chunk_size=chunk_size,
                store=store,
                results=results,
                unvalidated=gate.status == "skipped",
            )
        finally:
            if results is not None:
                results.close()
            if store is not None:
                store.close()  # e.g. SQLite checkpoints and truncates its write-ahead log
    if set_aside is not None:
        summary["set_aside"] = set_aside
    typer.echo(json.dumps(summary, indent=2))


@outcomes_app.command("ingest")
def outcomes_ingest(
    files: list[Path] = typer.Argument(
        ...,
        help="Results CSV or Parquet: declaration_id, inspected_at, illicit, offence_type, "
        "revenue_recovered, selection_reason (or the administration's names, with --mapping); "
        "or several (a file a month), each stored whole or not at all, in the order given.",
    ),
    mapping: Path | None = typer.Option(
        None, "--mapping", help="Mapping YAML from the administration's columns to the contract."
    ),
    # text, not a Path: a postgresql://host/db URL must keep its two slashes
    db: str | None = typer.Option(
        None, "--db", help="Decision store (default: $PARCELRISK_AUDIT_DB, serve.audit_db)."
    ),
    skip_unknown: bool = typer.Option(
        False,
        "--skip-unknown",
        help="Leave out (and count) results of declarations this store never decided: "
        f"warned with examples, the first {SKIPPED_IDS_SHOWN} ids in the summary "
        "(skipped_unknown_ids), and how many were inspected before the store's first "
        "declaration (skipped_unknown_before_store: results of the history before the "
        "service, for `history join`).",
    ),
    skipped_out: Path | None = typer.Option(
        None,
        "--skipped-out",
        help="With --skip-unknown: write every result left out to this CSV (file, row, "
        "declaration_id, inspected_at, before_store).",
    ),
    correction: str | None = typer.Option(
        None,
        "--correction",
        help="Why these results replace the ones stored (e.g. 'appeals decided in March'): "
        "every row that differs from its stored result is stored as a correction with it "
        "(a row's own `correction` column wins); new and identical rows are stored or "
        "counted as without it. Without it such rows are refused. With a mapping whose "
        "`correction` column is a yes/no flag: the reason of the rows flagged yes.",
    ),
    params: Path | None = params_option("sections serve, validate, features.fx_to_base"),
) -> None:
    """Store inspection results, checked as POST /outcomes checks them: all or nothing (but
    for the results of declarations never decided here, with --skip-unknown). A stored result
    is never edited: a correction is stored beside it, chained, and becomes the current one."""
    from features.errors import ParcelriskError
    from features.intake.rules import Limits
    from serving.outcome_store import sqlite_path
    from serving.outcomes import store_outcomes
    from serving.store import is_sqlite, open_outcome_store, open_store, require_key_signs_chain

    settings = settings_from(params)
    location = str(db) if db else settings.serve.audit_db
    # a typo must not create an empty store
    if is_sqlite(location) and not sqlite_path(location).is_file():
        raise ParcelriskError(f"no decision store at {location}: results answer stored decisions")
    # every file read and mapped before any is stored: a mapping that does not fit one of
    # them stores nothing
    read, correction = _read_results_files(files, mapping, correction, settings)
    for file, (raw, notes) in zip(files, read, strict=True):
        if "result_known_at" in raw.columns and (
            given := int(raw["result_known_at"].notna().sum())
        ):
            # the store's own receipt is when the service had a result (history export
            # writes result_known_at from it): a file's entry times are not stored, said
            notes["result_known_at_not_stored"] = given
            logger.warning(
                "%s: the result_known_at of %d result(s) is not stored: the store's own time of "
                "receiving a result is when the service had it (history export writes it); "
                "a file's entry times are kept by history join",
                file,
                given,
            )
    # results are chained with the decisions' key: stored under another (a job's shell with
    # another key) they made `audit verify` call the genuine chain altered, for good, as the
    # writers' check (`serve`, `score --audit-db`) refuses for decisions (probe, 2026-12)
    if skipped_out is not None and not skip_unknown:
        raise ParcelriskError(
            "--skipped-out names the results --skip-unknown leaves out: give both"
        )
    decisions = open_store(location)
    try:
        require_key_signs_chain(decisions)
        first = decisions.since(0, limit=1) if skip_unknown else []
    finally:
        decisions.close()
    first_declared_us = _declared_us(first[0][1]) if first else None
    left_out: list[Any] = []
    store = open_outcome_store(location)
    summaries = []
    try:
        # held to the gate's plausibility limits of these params (revenue: validate.max_revenue)
        limits = Limits.from_settings(settings)
        for file, (raw, notes) in zip(files, read, strict=True):
            if len(raw) == 0:
                # a month in which no inspection was concluded: its export is the header
                # alone. Refused, it stopped a scheduled job and every later month of a
                # series, and no correction of the file could make it pass (probe 37)
                summaries.append(_without_results(file, 0) | notes)
                continue
            try:
                counts = store_outcomes(
                    store,
                    raw,
                    source=f"file:{file.name}",
                    limits=limits,
                    skip_unknown=skip_unknown,
                    name_skipped=skip_unknown,
                    default_correction=correction,
                )
            except ParcelriskError as exc:
                if len(files) == 1:
                    raise
                done = ", ".join(f"{s['file']} ({s['stored']} stored)" for s in summaries)
                raise ParcelriskError(
                    f"{file}: {exc}. Nothing of {file.name} is stored"
                    + (f"; stored before it: {done}" if done else "")
                    + ". Run the same command again once it is corrected: results stored "
                    "already are identical and change nothing"
                ) from exc
            if counts.get("skipped_not_inspected", 0) == len(raw):
                counts |= _without_results(file, len(raw))
            if skip_unknown:
                skipped = _skipped_unknown(file, raw, counts.pop("skipped_unknown_ids", []))
                counts |= _said_skipped(file, skipped, first_declared_us)
                left_out.append(skipped)
            summaries.append({**counts, "file": str(file), **notes})
    finally:
        store.close()
    if len(summaries) == 1:
        summary = {**summaries[0], "store": location}
    else:
        totals: dict[str, int] = {}
        for one in summaries:
            for key in (
                "stored",
                "unchanged",
                "corrected",
                "skipped_unknown",
                "skipped_not_inspected",
            ):
                if key in one:
                    totals[key] = totals.get(key, 0) + one[key]
        if without := sum(1 for one in summaries if one.get("no_results")):
            totals["files_without_results"] = without
        if before := sum(one.get("skipped_unknown_before_store", 0) for one in summaries):
            totals["skipped_unknown_before_store"] = before
        summary = {**totals, "files": summaries, "store": location}
    if skipped_out is not None:
        import pandas as pd

        from features.intake.io import atomic_write, spreadsheet_safe

        every = pd.concat(left_out, ignore_index=True) if left_out else pd.DataFrame()
        # opened in a spreadsheet: an id sent as "=HYPERLINK(...)" must not run (probe 40)
        atomic_write(skipped_out, lambda tmp: spreadsheet_safe(every).to_csv(tmp, index=False))
        summary["skipped_out"] = str(skipped_out)
    typer.echo(json.dumps(summary, indent=2))


def _declared_us(declaration_json: str) -> int | None:
    from serving.decision import parse_iso_us

    at = json.loads(declaration_json).get("declared_at")
    return parse_iso_us(at) if at else None


def _skipped_unknown(file: Path, raw: Any, ids: list[str]) -> Any:
    """The results ``store_outcomes`` left out as unknown (``ids``), one row each: the file,
    its row, the id and the time inspected as the file gives it."""
    import pandas as pd

    from features.intake.contract import parse_bool, parse_text
    from serving.outcomes import row_number

    read = parse_text(raw["declaration_id"], narrow=True) if "declaration_id" in raw else None
    wanted = set(ids)
    # a row the file marks not inspected was counted apart (skipped_not_inspected)
    inspected = parse_bool(raw["inspected"])[0].fillna(True) if "inspected" in raw else None
    at = [
        i
        for i, one in enumerate([] if read is None else read.tolist())
        if one in wanted and (inspected is None or bool(inspected.iat[i]))
    ]
    times = raw["inspected_at"] if "inspected_at" in raw else pd.Series(None, index=raw.index)
    return pd.DataFrame(
        {
            "file": file.name,
            "row": [row_number(raw, i) for i in at],
            "declaration_id": [read.iat[i] for i in at] if read is not None else [],
            "inspected_at": [times.iat[i] for i in at],
        }
    )


def _said_skipped(file: Path, skipped: Any, first_declared_us: int | None) -> dict[str, Any]:
    """What the summary says of the results --skip-unknown left out of ``file`` (sets the
    ``before_store`` column of ``skipped``), warned with examples: a count alone let 30 late
    results of the champion's own history leave the loop unsaid (probe 37)."""
    from serving.decision import iso_utc
    from serving.outcomes import skipped_before_store

    ids = skipped["declaration_id"].tolist()
    before = skipped_before_store(skipped, ids, first_declared_us)
    skipped["before_store"] = before
    if not ids:
        return {}
    early = [i for i, b in zip(ids, before, strict=True) if b]
    counts: dict[str, Any] = {"skipped_unknown_ids": ids[:SKIPPED_IDS_SHOWN]}
    if len(ids) > SKIPPED_IDS_SHOWN:
        counts["skipped_unknown_ids_shown"] = SKIPPED_IDS_SHOWN
    if early:
        counts["skipped_unknown_before_store"] = len(early)
        counts["skipped_unknown_before_store_ids"] = early[:SKIPPED_IDS_SHOWN]
    shown = ", ".join(ids[:SKIPPED_IDS_WARNED]) + (", ..." if len(ids) > SKIPPED_IDS_WARNED else "")
    logger.warning(
        "%s: %d result(s) left out by --skip-unknown, of declarations this store never "
        "decided: %s%s",
        file,
        len(ids),
        shown,
        (
            f". {len(early)} of them (e.g. {', '.join(early[:SKIPPED_IDS_WARNED])}) were "
            "inspected before the first declaration it decided "
            f"({iso_utc(first_declared_us)}): results of the history before the service "
            "(the champion's training history), which `history join HISTORY --results "
            f"{file.name}` (with the same --mapping) takes; the others are of parcels never sent to it (a fallback "
            "lane, another office)"
            if early and first_declared_us is not None
            else ""
        )
        + " (--skipped-out FILE.csv writes them all)",
    )
    return counts


def _read_results_files(
    files: list[Path], mapping: Path | None, correction: str | None, settings: Any
) -> tuple[list[tuple[Any, dict]], str | None]:
    """Each results file read through the results mapping, a result listed twice read once
    (``_read_once``); and the reason of the rows that differ from a stored result (None where
    the mapping's correction column is a yes/no flag: its rows flagged yes take ``correction``
    then, and an unflagged row that differs stays refused)."""
    from features.errors import ParcelriskError
    from features.intake.mapping import is_correction_flag, load_results_mapping

    if len({f.resolve() for f in files}) < len(files):
        raise ParcelriskError("a results file is given twice")
    if correction is not None and not correction.strip():
        raise ParcelriskError("--correction: say why the results are corrected")
    spec, correction_spec = load_results_mapping(mapping) if mapping is not None else (None, None)
    flagged_why = None
    if correction_spec is not None and is_correction_flag(correction_spec):
        flagged_why, correction = correction, None
    read = [
        _read_once(
            file, *_read_results(file, spec, mapping, settings, correction_spec, flagged_why)
        )
        for file in files
    ]
    return read, correction


def _read_once(file: Path, raw: Any, notes: dict) -> tuple[Any, dict]:
    """``raw`` with a result listed twice value for value read once, said and counted
    (``repeated_results_read_once``); a repeat that differs is left to be refused."""
    from serving.outcomes import drop_repeated_results

    raw, dropped = drop_repeated_results(raw)
    if dropped:
        shown = "; ".join(f"row {row} ({i}) = row {first}" for row, first, i in dropped[:10])
        logger.warning(
            "%s: %d result row(s) repeat an earlier row value for value (%s%s): read once",
            file,
            len(dropped),
            shown,
            "; ..." if len(dropped) > 10 else "",
        )
        notes = {**notes, "repeated_results_read_once": len(dropped)}
    return raw, notes


def _without_results(file: Path, rows: int) -> dict[str, Any]:
    """The summary of a results file that holds no inspection result (its header alone, or
    only parcels not inspected), said in a warning: nothing to store is no error."""
    what = f"its {rows} row(s) are of parcels not inspected" if rows else "it has no rows"
    logger.warning("%s: no results (%s): nothing stored from it", file, what)
    counts: dict[str, Any] = {"stored": 0, "unchanged": 0}
    if rows:
        counts["skipped_not_inspected"] = rows
    return counts | {"file": str(file), "no_results": True}


def _row_names(rows: Any, file: Path | None) -> list[str]:
    """What a refusal calls each result row: its row in the file (``row_number``: the reader
    keeps the source's positions, empty rows left out), with the file's name when several
    are joined."""
    from serving.outcomes import row_number

    prefix = f"{file.name} " if file is not None else ""
    return [f"{prefix}row {row_number(rows, i)}" for i in range(len(rows))]


def _read_results(
    file: Path,
    spec: Any,
    mapping: Path | None,
    settings: Any,
    correction_spec: Any = None,
    flagged_why: str | None = None,
) -> tuple[Any, dict]:
    """One results file as the contract's result fields; and what its reading noted (local
    times, revenue converted, columns ignored) for the summary.

    ``correction_spec``: the mapping's ``correction`` column; ``flagged_why``: the reason of
    the rows it flags yes, when it is a yes/no flag."""
    from features.errors import ParcelriskError
    from features.intake.io import read_raw_declarations
    from features.intake.mapping import (
        drop_empty_and_totals_rows,
        drop_repeated_items,
        map_outcomes,
        pad_identifier_zeros,
        read_float_written,
        read_source,
        resolve_aliases,
        revenue_summary,
        warn_float_written,
        warn_local_times,
        warn_times_read_as_utc,
    )
    from serving.outcomes import (
        CORRECTION,
        RESULT_FIELDS,
        dated_results_at_end_of_day,
        end_of_day,
    )

    if spec is None:
        raw, _ = read_raw_declarations(file)
        raw, days = dated_results_at_end_of_day(raw)
        if not days:
            return raw, {}
        logger.warning(
            "%s: the inspected_at of %d result(s) is a date without a time (e.g. %s): read "
            "as the end of its day "
            "(%s), so that none counts before that day's declarations; give the times, or "
            "read the file through a mapping",
            file,
            len(days),
            days[0],
            end_of_day(days[0]),
        )
        return raw, {"dated_without_time": len(days)}
    source = read_source(file, spec)
    spec, _ = resolve_aliases(source, spec)  # the name of the column this file has
    source, dropped = drop_empty_and_totals_rows(source, spec, file, time_field="inspected_at")
    source, repeated = drop_repeated_items(source, spec, file)
    source, float_written = read_float_written(source, spec)
    warn_float_written(float_written, spec, file)
    source, ids_padded = pad_identifier_zeros(source, spec)
    named = set(spec.source_columns()) | (
        {correction_spec.column} if correction_spec is not None else set()
    )
    ignored = [str(c) for c in source.columns if c not in named]
    # a result field the file carries under its contract name, left out of the mapping,
    # would be stored empty, and the full result then refused as a conflict for good
    unmapped = [c for c in ignored if c in RESULT_FIELDS and c not in spec.columns]
    if unmapped:
        raise ParcelriskError(
            f"{file}: column(s) {', '.join(unmapped)} hold results the mapping {mapping} "
            f"does not map: map them (e.g. {unmapped[0]}: {unmapped[0]}) or drop them from "
            "the file; a result stored without them could not be completed later"
        )
    read_as_utc = warn_times_read_as_utc(source, spec, settings.features.timezone, file)
    # a revenue given in another currency is put in EUR with features.fx_to_base
    try:
        raw, local_times = map_outcomes(source, spec, settings.features.fx)
    except ParcelriskError as exc:
        if str(exc).startswith(str(file)):
            raise
        raise type(exc)(f"{file}: {exc}") from exc  # the same kind of error, naming its file
    notes: dict[str, Any] = {k: n for k, n in warn_local_times(file, local_times).items() if n}
    if items := local_times.get("items"):
        notes["items_collapsed"] = dict(
            zip(("item_rows", "results", "most_items_in_one"), items[0], strict=True)
        )
    if correction_spec is not None:
        raw[CORRECTION] = _mapped_corrections(
            file, source, raw, correction_spec, flagged_why
        ).to_numpy(dtype=object)
    elif CORRECTION in source.columns and CORRECTION not in spec.columns:
        # not a contract field, so the mapping does not name it: carried as the file has it
        if len(source) != len(raw):
            raise ParcelriskError(
                f"{file}: its {CORRECTION} column cannot be carried through items collapsed "
                f"into results ({len(source)} rows, {len(raw)} results): give the file one "
                "row per result, or use --correction"
            )
        raw[CORRECTION] = source[CORRECTION].to_numpy(dtype=object)
        ignored.remove(CORRECTION)
    notes.update(revenue_summary(spec, raw, file))
    if any(dropped.values()):
        notes["rows_not_results_dropped"] = dropped
    if repeated:
        notes["item_rows_repeated_dropped"] = repeated
    if ids_padded:
        notes["identifier_zeros_restored"] = ids_padded
    if float_written:
        notes["float_written_values_read"] = float_written
    if read_as_utc:
        notes["times_read_as_utc"] = read_as_utc
    if ignored:
        notes["ignored_columns"] = ignored
    return raw, notes


def _mapped_corrections(
    file: Path, source: Any, raw: Any, spec: Any, flagged_why: str | None
) -> Any:
    """Each result's correction from the mapping's ``correction`` column: its text, or (a
    yes/no flag) ``flagged_why`` on the rows flagged yes; None on the others."""
    from features.errors import ParcelriskError
    from features.intake.mapping import is_correction_flag, map_correction

    if len(source) != len(raw):
        raise ParcelriskError(
            f"{file}: its correction column {spec.column!r} cannot be carried through items "
            f"collapsed into results ({len(source)} rows, {len(raw)} results): give the file "
            "one row per result, or use --correction"
        )
    try:
        read = map_correction(source, spec)
    except ParcelriskError as exc:
        raise type(exc)(f"{file}: {exc}") from exc
    if not is_correction_flag(spec):
        return read
    flagged = read.eq(True).to_numpy(dtype=bool)
    if flagged.any() and flagged_why is None:
        raise ParcelriskError(
            f"{file}: {int(flagged.sum())} row(s) flagged as corrections in {spec.column!r} "
            "and no reason: say why they replace the stored results with --correction "
            "(e.g. --correction 'laboratory reports of March')"
        )
    return read.where(~flagged, flagged_why).where(flagged, None)


def _require_intact(decisions: Any) -> None:
    """Refuse a store whose decisions or results chain is broken: a history exported from it
    trained the next model on a forged label and left out the result of a deleted decision,
    exit 0 (probe, 2026-12), where `audit archive` refuses the same store."""
    from features.errors import ParcelriskError
    from serving.audit.verify import describe_results_problem, verify_results_of, verify_store

    report = verify_store(decisions)
    if report.problem is not None:
        broken = f"the decisions chain is broken ({report.problem.describe()})"
    else:
        results = verify_results_of(decisions, decisions=report)
        if results is None or results["problem"] is None:
            return
        broken = f"the results chain is broken ({describe_results_problem(results['problem'])})"
    raise ParcelriskError(
        f"{decisions.location}: {broken}: a history exported from it would train the next "
        "model on records nobody can vouch for; investigate with `parcelrisk audit verify` "
        "first"
    )


@history_app.command("join")
def history_join(
    declarations: Path = typer.Argument(
        ..., help="The declarations, as ingest wrote them (contract Parquet, no results)."
    ),
    results: list[Path] = typer.Option(
        ...,
        "--results",
        help="A results file exported apart from the declarations (CSV, Parquet, workbook, "
        "JSON; the administration's names with --mapping); repeat for several.",
    ),
    mapping: Path | None = typer.Option(
        None, "--mapping", help="Results mapping YAML (`mapping draft --results` drafts one)."
    ),
    out: Path = typer.Option(..., "--out", help="History Parquet (written atomically)."),
    skip_unknown: bool = typer.Option(
        False,
        "--skip-unknown",
        help="Leave out (and count) results of declarations the file does not hold.",
    ),
    correction: str | None = typer.Option(
        None,
        "--correction",
        help="Why these results replace the ones the history holds already: a row that "
        "differs from its declaration's held result is taken with it (a row's own "
        "`correction` column wins); without either it is refused. With a mapping whose "
        "`correction` column is a yes/no flag: the reason of the rows flagged yes.",
    ),
    params: Path | None = params_option("sections validate, features (time zone, fx)"),
) -> None:
    """A first history from declarations and inspection results exported apart: each result
    checked as `outcomes ingest` checks one, joined to its declaration; the others are not
    inspected. Then `validate` and `features build` it as any history."""
    import pandas as pd

    from features.errors import ParcelriskError
    from features.intake.io import read_declarations, write_declarations
    from features.intake.rules import Limits
    from serving.outcomes import join_results

    settings = settings_from(params)
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise typer.BadParameter(
            f"{out}: the history is contract Parquet; name it {out.with_suffix('.parquet').name}",
            param_hint="--out",
        )
    for path in (declarations, *results):
        if not path.is_file():
            raise ParcelriskError(f"{path}: no such file")
        if path.resolve() == out.resolve():
            raise ParcelriskError(f"--out {out} is an input: give another file")
    frame, contract = read_declarations(declarations, with_outcomes=None)
    # read as `outcomes ingest` reads them, the mapping's correction column included
    read, correction = _read_results_files(results, mapping, correction, settings)
    # labelled 0..n-1 across the files; each row's name says where its file holds it
    raw = pd.concat([r for r, _ in read], ignore_index=True)
    history, counts = join_results(
        frame,
        raw,
        skip_unknown=skip_unknown,
        limits=Limits.from_settings(settings),
        row_names=[
            name
            for file, (rows, _) in zip(results, read, strict=True)
            for name in _row_names(rows, file if len(results) > 1 else None)
        ],
        default_correction=correction,
    )
    write_declarations(history, out, contract)
    notes = {str(file): n for file, (_, n) in zip(results, read, strict=True) if n}
    typer.echo(
        json.dumps({**counts, "out": str(out), **({"notes": notes} if notes else {})}, indent=2)
    )


@history_app.command("export")
def history_export(
    db: str = typer.Option(
        ..., "--db", help="Decision store (SQLite file, or postgresql://USER@HOST:PORT/DATABASE)."
    ),
    out: Path = typer.Option(..., "--out", help="History Parquet (written atomically)."),
    since: str | None = typer.Option(
        None, "--since", help="Only declarations declared at or after this UTC date or time."
    ),
    contract_from: Path | None = typer.Option(
        None,
        "--contract-from",
        help="A declarations Parquet whose mapped extras (names, kinds) the history carries.",
    ),
    base: Path | None = typer.Option(
        None,
        "--base",
        help="The history the champion was trained on (contract Parquet): written first, the "
        "scored declarations after it, one found in both taken once; its extras are the "
        "history's (as --contract-from).",
    ),
) -> None:
    """The declarations as they were scored, with their results: a history to train on."""
    from features.intake.contract import utc_instant
    from features.intake.io import read_contract, read_declarations, write_declarations
    from serving.audit.archived import archived_first_decisions
    from serving.decision import iso_utc
    from serving.outcome_store import sqlite_path
    from serving.outcomes import history_frame, late_results, results_known_at
    from serving.store import is_sqlite, open_outcome_store, open_store

    if is_sqlite(db) and not sqlite_path(db).is_file():
        raise typer.BadParameter(f"no decision store at {db}", param_hint="--db")
    if out.suffix.lower() not in (".parquet", ".pq"):  # Parquet bytes, whatever the name said
        raise typer.BadParameter(
            f"{out}: the history is contract Parquet; name it {out.with_suffix('.parquet').name}",
            param_hint="--out",
        )
    since_us = utc_instant(since, "--since").value // 1000 if since else None
    # archived days are part of the history: their results stay in the store, and archiving
    # must not take labelled declarations out of the next model's training data
    decisions = open_store(db, read_only=True)
    try:
        _require_intact(decisions)
        archived = archived_first_decisions(decisions, iso_utc(since_us) if since_us else "")
        _, _, cut = decisions.chain_start()
    finally:
        decisions.close()
    contract = None
    for path, flag in ((contract_from, "--contract-from"), (base, "--base")):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path}: no such file", param_hint=flag)
    if contract_from is not None:
        contract = read_contract(contract_from)
    base_history = None
    if base is not None:
        if base.resolve() == out.resolve():
            raise typer.BadParameter(f"{base} is --out: give another file", param_hint="--base")
        base_history, base_contract = read_declarations(base, with_outcomes=True)
        if contract is not None and contract != base_contract:
            raise typer.BadParameter(
                f"{contract_from} and {base} declare other extras: give --base alone (its "
                "extras are the history's)",
                param_hint="--contract-from",
            )
        contract = base_contract
    store = open_outcome_store(db, read_only=True)
    try:
        # with the store's last result it holds: a snapshot built from this history then
        # knows which results came back after it (features.pipeline.snapshot.EntityState)
        scored, results_seq = store.scored_history_at(since_us, archived)
        known_at = results_known_at(scored)  # when the service could count each result
        history = history_frame(scored, contract, known_at)
    finally:
        store.close()
    overlap: dict = {}
    if base_history is not None:
        corrected = {
            json.loads(row.declaration_json)["declaration_id"]
            for row in scored
            if row.result is not None and row.result.correction is not None
        }
        base_history, taken = _corrections_over_base(base_history, history, corrected)
        history, overlap = _on_base(base_history, history, contract, base, db)
        if taken:
            overlap["results_corrected_in_the_store"] = taken
    write_declarations(history, out, contract, results_seq=results_seq)
    summary = {
        "declarations": len(history),
        "inspected": int(history["inspected"].sum()),
        "illicit": int(history["illicit"].fillna(False).sum()),
        "results_up_to_seq": results_seq,
        "output": str(out),
    }
    if base_history is not None:
        summary["base"] = {"file": str(base), "declarations": len(base_history), **overlap}
    if cut is not None:
        summary["from_archive"] = {"declarations": len(archived), "archive": cut["archive"]}
    if (late := late_results(scored, known_at)) is not None and late["replay"]:
        summary["results_stored_late"] = late
        logger.warning(
            "%d of %d results reached the store after the decisions of the parcels declared "
            "after them (median %.1f days, at most %.1f): the parcels were scored long after "
            "they were declared (a replay, a backfill, or declarations lodged weeks before "
            "arrival), before their results were loaded, so "
            "the history's result_known_at places the results as the service had them and these "
            "months carry no results in their entity features. To count each from its "
            "inspection, as if it had come back promptly, build the history with `history "
            "join` of the declarations and the results instead",
            late["results"],
            late["of"],
            late["median_days_late"],
            late["max_days_late"],
        )
    elif late is not None:
        summary["results_stored_late"] = late
        logger.warning(
            "%d of %d results reached the store after decisions of parcels declared more than "
            "a day after their inspected_at (median %.1f days late, at most %.1f): those "
            "parcels went without them. "
            "The history's result_known_at says from when the service could count each (its "
            "label stays at inspected_at), so the next model learns from entity features as "
            "they were served; send results as they are recorded (POST /outcomes, or outcomes "
            "ingest at least daily)",
            late["results"],
            late["of"],
            late["median_days_late"],
            late["max_days_late"],
        )
    typer.echo(json.dumps(summary, indent=2))


def _corrections_over_base(base: Any, scored: Any, corrected: set[str]) -> tuple[Any, int]:
    """``base`` with the results of the declarations corrected in the store (``corrected``:
    their ids) taken from ``scored``: a correction is newer than the file the champion was
    trained on, and says why (``audit show``); without this the export would refuse the two
    results as a conflict. The base keeps its own ``selection_reason``. Also how many of the
    base's results the corrections changed (a base exported after the correction holds it
    already: counted, it read as a change, probe 10)."""
    import numpy as np
    import pandas as pd

    from serving.outcomes import RESULT_FIELDS

    if not corrected:
        return base, 0
    mask = base["declaration_id"].isin(corrected).to_numpy()
    if not mask.any():
        return base, 0
    fields = [
        "inspected",
        *(f for f in RESULT_FIELDS if f not in ("declaration_id", "selection_reason")),
    ]
    store_rows = scored.set_index("declaration_id").loc[base.loc[mask, "declaration_id"], fields]
    base = base.copy()
    changed = np.zeros(int(mask.sum()), dtype=bool)
    for field in fields:  # as objects: coerced back to the contract's types by the join
        values = base[field].to_numpy(dtype=object, copy=True)  # writable: pandas' is not
        new = store_rows[field].to_numpy(dtype=object)
        old = values[mask]
        gone_old, gone_new = pd.isna(old), pd.isna(new)
        changed |= (gone_old != gone_new) | (~gone_old & ~gone_new & (old != new))
        values[mask] = new
        base[field] = values
    return base, int(changed.sum())


def _on_base(base: Any, scored: Any, contract: Any, base_path: Path, db: str) -> tuple[Any, dict]:
    """The base history, then the scored declarations it does not hold: the next model's
    history keeps the years its entity features were learned from.

    A declaration in both (a base cut after the service started) is taken once when its
    declaration fields agree: the base's copy, or the store's when only the store has its
    result. The results' ``selection_reason`` is not compared: the store derives it from its
    first decision where none was given, the base holds the administration's own; the base's
    is kept. Other values or another result are refused, naming them."""
    from features.intake.ingest import join_declarations
    from serving.outcomes import RESULT_FIELDS

    return join_declarations(
        [base, scored],
        [f"--base {base_path}", f"the decision store {db}"],
        contract,
        with_outcomes=True,
        hint="the service received the declaration otherwise than the base holds it; "
        "export with --since after the base's last declaration to leave the overlap out, "
        "or correct the base",
        compared_outcomes=[f for f in RESULT_FIELDS if f != "selection_reason"],
    )


def register(app: typer.Typer) -> None:
    from serving.audit.cli import audit_app
    from serving.audit.review_cli import register_review
    from serving.lanes_cli import register_lanes
    from serving.monitor.cli import monitor

    app.command()(serve)
    app.command()(score)
    app.add_typer(outcomes_app, name="outcomes")
    app.add_typer(history_app, name="history")
    register_review(audit_app)  # list, show, recompute, export beside verify, head, archive
    app.add_typer(audit_app, name="audit")
    app.command("monitor")(monitor)  # drift, lane shares, exploration hit rates, disparity
    register_lanes(app)  # lanes plan|set|show
