"""`parcelrisk audit`: verify the decision chain, file its head, archive old days, review
decisions (list, show, recompute, export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from features.cli import params_option, settings_from

if TYPE_CHECKING:
    from serving.store import DecisionStore

audit_app = typer.Typer(help="The auditor's tools over the decision store.", no_args_is_help=True)


def db_option() -> str | None:
    # text, not a Path: a postgresql://host/db URL must keep its two slashes
    return typer.Option(
        None,
        "--db",
        help="Decision store: a SQLite file or postgresql://USER@HOST:PORT/DATABASE "
        "(default: $PARCELRISK_AUDIT_DB, serve.audit_db).",
    )


def open_audit_store(
    db: str | Path | None, params: Path | None, *, writer: bool = False
) -> DecisionStore:
    """The decision store an audit command reads: ``--db`` or the settings' ``serve.audit_db``
    (a SQLite file or a PostgreSQL URL); a missing file is an error (an auditor's typo must not
    create an empty store). Read-only unless ``writer`` (``audit archive``): reviewing a store
    never writes it, so a copy on write-once media verifies too."""
    from features.errors import ParcelriskError
    from serving.outcome_store import sqlite_path
    from serving.sqlite_store import SqliteDecisionStore
    from serving.store import is_sqlite, open_store

    location = str(db) if db is not None else settings_from(params).serve.audit_db
    if not is_sqlite(location):
        return open_store(location)
    path = sqlite_path(location)
    if not path.is_file():
        raise ParcelriskError(f"decision store {path}: no such file")
    return SqliteDecisionStore(path, read_only=not writer)


@audit_app.command("verify")
def verify(
    db: str | None = db_option(),
    head: str | None = typer.Option(
        None, "--head", help="A head filed earlier (SEQ:MAC): prove nothing before it changed."
    ),
    results_head: str | None = typer.Option(
        None, "--results-head", help="A results head filed earlier (`audit head --results`)."
    ),
    params: Path | None = params_option("section serve"),
) -> None:
    """Walk the chain and name the first altered, inserted, reordered or deleted decision
    (exit 1); with --head, also prove the chain up to a head filed earlier was not rewritten.
    The inspection results' own chain is walked too."""
    from features.errors import ParcelriskError
    from serving.audit.verify import describe_results_problem, verify_results_of, verify_store

    store = open_audit_store(db, params)
    try:
        try:
            report = verify_store(store, head)
        except ValueError as exc:  # a malformed --head
            raise ParcelriskError(str(exc)) from exc
        try:
            results = verify_results_of(store, results_head, report)
        except ValueError as exc:  # a malformed --results-head
            raise ParcelriskError(f"--results-head: {exc}") from exc
    finally:
        store.close()
    typer.echo(json.dumps({**report.as_dict(), "results": results}, indent=2))
    broken = False
    if report.problem is not None:
        typer.echo(f"NOT INTACT: {report.problem.describe()}", err=True)
        broken = True
    if results is not None and results["problem"] is not None:
        typer.echo(f"NOT INTACT: {describe_results_problem(results['problem'])}", err=True)
        broken = True
    if broken:
        raise typer.Exit(1)
    proved = (
        f"; filed head {report.head_checked} proven"
        if report.head_checked
        # the chain proves each link by the one before: a tail cut off, or the store swapped
        # for an older backup, is a shorter intact chain, seen only against a filed head
        # (probe 30: an older backup verified "intact", exit 0)
        else " (without --head, decisions removed from its end, or an older backup in its "
        "place, cannot be seen: compare with a head filed by `audit head`)"
    )
    typer.echo(f"intact: {report.checked} decisions, chain head {report.head}{proved}", err=True)
    _say_expired(report)
    if results is not None and results["intact"]:
        filed = results.get("head_checked")
        proven = f"; filed results head {filed} proven" if filed else ""
        typer.echo(
            f"intact: {results['checked']} inspection results, head {results['head']}{proven}",
            err=True,
        )
    elif results is not None:
        typer.echo(
            f"note: {results['unchained']} inspection results were stored before results were "
            "chained and no writer has opened the store since: not verified (the service or "
            "`outcomes ingest` chains them when it opens the store)",
            err=True,
        )


def _say_expired(report: Any) -> None:
    """The ranges expired under retention (the chain resumes after them), an expiry still to
    finish, a filed head that fell in an expired range."""
    from serving.audit.expiry import describe_expiry

    for record in report.expired:
        typer.echo(f"expired: {describe_expiry(record)}", err=True)
    if report.head_expired:
        typer.echo(
            f"note: the filed head {report.head_expired} lies in the expired range: the "
            "decisions it vouched for were deleted under retention; it proves nothing now",
            err=True,
        )
    if report.expiry_pending:
        typer.echo(
            f"note: {len(report.expiry_pending)} expired archive files are still on disk (an "
            "expiry was stopped; they match its record): run `parcelrisk audit expire` again "
            "to finish it",
            err=True,
        )


@audit_app.command("head")
def head(
    db: str | None = db_option(),
    results: bool = typer.Option(
        False, "--results", help="The inspection results' chain head instead (for --results-head)."
    ),
    params: Path | None = params_option("section serve"),
) -> None:
    """Print the chain's current head (SEQ:MAC) to file somewhere the store's writers cannot
    reach; `verify --head` later proves nothing before it was rewritten (`--results`: the
    results' chain, for `verify --results-head`)."""
    from serving.audit.chain import format_head
    from serving.audit.verify import describe_results_problem, verify_results_of, verify_store

    store = open_audit_store(db, params)
    try:
        if results:  # the walk gives the head, checked: a broken chain files no head
            # (its decisions vouch for the results they knew: a deleted tail files no head)
            report = verify_results_of(store, decisions=verify_store(store))
        else:
            current = store.head()
    finally:
        store.close()
    if results:
        if report is None or not report["checked"]:
            typer.echo("no chained inspection results yet", err=True)
            raise typer.Exit(1)
        if report["problem"] is not None:
            typer.echo(f"NOT INTACT: {describe_results_problem(report['problem'])}", err=True)
            raise typer.Exit(1)
        typer.echo(report["head"])
        return
    if current is None:
        typer.echo("no decisions recorded yet", err=True)
        raise typer.Exit(1)
    typer.echo(format_head(*current))


# The youngest day `audit archive` moves: older than any worker's catch-up on the log.
ARCHIVE_MIN_AGE_DAYS = 1


@audit_app.command("archive")
def archive(
    before: str = typer.Option(
        ..., "--before", help="Archive decisions answered before this date (UTC), e.g. 2026-06-01."
    ),
    db: str | None = db_option(),
    to: Path | None = typer.Option(
        None, "--to", help="Archive directory (default: STORE.archive beside the store)."
    ),
    params: Path | None = params_option("section serve"),
) -> None:
    """Move old days to daily Parquet files with the chain head at the cut: `verify` still
    proves them, the hot store stays small."""
    from datetime import UTC, datetime, timedelta

    from features.errors import ParcelriskError
    from serving.audit.archive import archive_before
    from serving.audit.report import parse_when

    cut = parse_when(before, "--before")
    youngest = datetime.now(UTC) - timedelta(days=ARCHIVE_MIN_AGE_DAYS)
    latest = youngest.strftime("%Y-%m-%d")
    if cut > parse_when(youngest.isoformat(), "--before"):  # both the store's time text
        # A running worker reads the log for what other writers decided (another worker,
        # `score --audit-db`): days it has not read yet, moved out, it never reads, and its
        # next decisions record (under their MAC) a log position they did not know (probe 30:
        # 67 of 800 untouched decisions then recomputed as mismatches).
        raise ParcelriskError(
            f"--before {before}: archive days the service has read, at least "
            f"{ARCHIVE_MIN_AGE_DAYS} day(s) old (--before {latest} or earlier): a running "
            "worker may not have read the decisions of the last hours yet, and would never "
            "count them"
        )
    store = open_audit_store(db, params, writer=True)
    try:
        summary = archive_before(store, cut, to)
    finally:
        store.close()
    typer.echo(json.dumps(summary, indent=2))
    if summary.get("inspected_without_result"):
        typer.echo(
            f"note: {summary['inspected_without_result']} archived red/yellow decisions have no "
            "inspection result yet; results arriving for them will be refused as unknown",
            err=True,
        )


@audit_app.command("expire")
def expire(
    before: str = typer.Option(
        ...,
        "--before",
        help="Delete the archived days whose decisions were all answered before this date "
        "(UTC), e.g. 2019-06-01: the end of their retention period.",
    ),
    reason: str = typer.Option(
        ..., "--reason", help="Why (the rule or the request): kept in the signed record."
    ),
    db: str | None = db_option(),
    params: Path | None = params_option("section serve"),
) -> None:
    """Delete archived days past their retention period, with their inspection results,
    leaving a signed record of what went: `verify` then reports them expired, not deleted.
    Archive them first (`audit archive`); a re-run finishes an expiry that was stopped."""
    from serving.audit.expire import expire_before
    from serving.audit.report import parse_when

    when = parse_when(before, "--before")
    store = open_audit_store(db, params, writer=True)
    try:
        summary = expire_before(store, when, reason)
    finally:
        store.close()
    typer.echo(json.dumps(summary, indent=2))
    if summary.get("results_held"):
        typer.echo(
            f"note: result seq {summary['results_held'][0]} answers an expired declaration but "
            "is the results chain's last link (the next result is chained to it): kept, named "
            "in the record; the next `audit expire` deletes it",
            err=True,
        )


@audit_app.command("migrate")
def migrate(
    db: str | None = db_option(), params: Path | None = params_option("section serve")
) -> None:
    """Chain a decision store written before the tamper-evident chain (once, with the key)."""
    from features.errors import ParcelriskError
    from serving.audit.migrate import migrate_legacy
    from serving.outcome_store import sqlite_path

    location = str(db) if db is not None else settings_from(params).serve.audit_db
    path = sqlite_path(location)
    if not path.is_file():
        raise ParcelriskError(f"decision store {path}: no such file")
    typer.echo(json.dumps(migrate_legacy(path), indent=2))
