"""`parcelrisk audit`: verify the decision chain, file its head, archive old days, review
decisions (list, show, recompute, export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from features.cli import params_option, settings_from

if TYPE_CHECKING:
    from serving.sqlite_store import SqliteDecisionStore

audit_app = typer.Typer(help="The auditor's tools over the decision store.", no_args_is_help=True)


def db_option() -> Path | None:
    return typer.Option(
        None,
        "--db",
        help="Decision store (default: $PARCELRISK_AUDIT_DB, serve.audit_db).",
    )


def open_audit_store(db: Path | None, params: Path | None) -> SqliteDecisionStore:
    """The decision store an audit command reads: ``--db`` or the settings' ``serve.audit_db``;
    a missing file is an error (an auditor's typo must not create an empty store)."""
    from features.errors import ParcelriskError
    from serving.outcome_store import sqlite_path
    from serving.sqlite_store import SqliteDecisionStore

    location = str(db) if db is not None else settings_from(params).serve.audit_db
    path = sqlite_path(location)
    if not path.is_file():
        raise ParcelriskError(f"decision store {path}: no such file")
    return SqliteDecisionStore(path)


@audit_app.command("verify")
def verify(
    db: Path | None = db_option(),
    head: str | None = typer.Option(
        None, "--head", help="A head filed earlier (SEQ:MAC): prove nothing before it changed."
    ),
    params: Path | None = params_option("section serve"),
) -> None:
    """Walk the chain and name the first altered, inserted, reordered or deleted decision
    (exit 1); with --head, also prove the chain up to a head filed earlier was not rewritten."""
    from features.errors import ParcelriskError
    from serving.audit.verify import verify_store

    store = open_audit_store(db, params)
    try:
        try:
            report = verify_store(store, head)
        except ValueError as exc:  # a malformed --head
            raise ParcelriskError(str(exc)) from exc
    finally:
        store.close()
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.problem is not None:
        typer.echo(f"NOT INTACT: {report.problem.describe()}", err=True)
        raise typer.Exit(1)
    proved = f"; filed head {report.head_checked} proven" if report.head_checked else ""
    typer.echo(f"intact: {report.checked} decisions, chain head {report.head}{proved}", err=True)


@audit_app.command("head")
def head(
    db: Path | None = db_option(), params: Path | None = params_option("section serve")
) -> None:
    """Print the chain's current head (SEQ:MAC) to file somewhere the store's writers cannot
    reach; `verify --head` later proves nothing before it was rewritten."""
    from serving.audit.chain import format_head

    store = open_audit_store(db, params)
    try:
        current = store.head()
    finally:
        store.close()
    if current is None:
        typer.echo("no decisions recorded yet", err=True)
        raise typer.Exit(1)
    typer.echo(format_head(*current))


def register(app: typer.Typer) -> None:
    __import__("serving.audit.review_cli", fromlist=["_"]).register_review(audit_app)
    app.add_typer(audit_app, name="audit")
