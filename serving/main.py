"""The `parcelrisk` console script: one command, subcommands defined next to the code they drive.

It lives in ``serving`` because serving is the top of the import chain (serving -> models ->
features); each package's ``cli.py`` registers its own commands and imports heavy libraries only
inside the command bodies, so ``parcelrisk --help`` answers fast.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import sys
from pathlib import Path

import typer

from features.errors import ParcelriskError

app = typer.Typer(
    name="parcelrisk",
    help="Risk targeting for cross-border e-commerce parcels: data, features, models, scoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _register_all() -> None:
    # No ImportError is caught here: a broken import must stop the CLI with its traceback,
    # not silently drop that package's commands.
    from features.cli import register as register_features
    from models.cli import register as register_models
    from serving.cli import register as register_serving

    register_features(app)
    register_models(app)
    register_serving(app)


_register_all()


UMASK_ENV = "PARCELRISK_UMASK"


def _private_files() -> None:
    """Every file and directory this process (and the workers it starts) creates is its
    owner's alone: the decision store, its archive, MLflow's database and artifacts, the
    features and entity state hold inspection results per (pseudonymised) person, and under
    the usual umask 022 any local account read them (probe 18). ``PARCELRISK_UMASK`` (octal,
    e.g. 027 for an auditors' group) opens them deliberately; it never loosens what the
    session's own umask already withholds."""
    text = os.environ.get(UMASK_ENV, "077")
    try:
        wanted = int(text, 8)
    except ValueError:
        raise ParcelriskError(
            f"{UMASK_ENV}={text!r} is not an octal umask (write 077, or 027 for a group)"
        ) from None
    if not 0 <= wanted <= 0o777:
        raise ParcelriskError(f"{UMASK_ENV}={text!r} is not an octal umask between 000 and 777")
    current = os.umask(0o077)
    os.umask(current | wanted)


def _option_value(option: str) -> str | None:
    """The value a command line gave ``option`` (``--out X`` or ``--out=X``), None if none."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


# Options naming what a command writes, for a full disk's message
_OUTPUT_OPTIONS = ("--out", "--quarantine", "--report", "--metrics-out", "--to", "--db")
_FULL_BYTES = 1024**2  # a disk with less free than this is the one that filled


def _full_output() -> str | None:
    """The output a full disk stopped: of the paths the command line gave to write, the one
    on a disk with (almost) no space left; else ``--out``. Naming ``--out`` alone sent an
    operator to free the wrong disk when the quarantine file's was full (probe 34)."""
    given = [v for v in map(_option_value, _OUTPUT_OPTIONS) if v]
    for value in given:
        target = Path(value).resolve()
        folder = next((p for p in (target, *target.parents) if p.is_dir()), None)
        if folder is None:
            continue
        try:
            stat = os.statvfs(folder)
        except OSError:
            continue
        if stat.f_bavail * stat.f_frsize < _FULL_BYTES:
            return value
    return _option_value("--out")


def _memory_advice(command: str) -> str:
    """What to do when ``command`` ran out of memory: a file read whole (an export, a results
    file) is split; a history is built with Dask. An 8 MB gzip that expanded was told to use
    `features build --engine dask` (probe 34)."""
    if command in ("ingest", "mapping", "validate", "outcomes", "history", "score"):
        return (
            "give the export as several files (`ingest` takes a series: a file a month), and "
            "check it is what it claims (a file expanding to gigabytes is no export)"
        )
    return (
        "`features build --engine dask` builds a history of any size, and `train` reads only "
        "the rows it needs"
    )


def _store_named() -> str:
    """The SQLite file a command was pointed at (``--db``, ``--audit-db``), as given, for an
    error met deep inside a read; else what the settings name."""
    given = _option_value("--db") or _option_value("--audit-db")
    if given is not None:
        return f"the SQLite file {given}"
    return "the decision store (serve.audit_db, or $PARCELRISK_AUDIT_DB)"


def main() -> None:
    """Entry point: run the app and turn known errors into one clear line and exit code 2."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # MLflow's telemetry thread, unable to reach its server (closed networks), pops a variable
    # from os.environ while a request to an http:// tracking server reads the environment for
    # proxies: `train` against a team's MLflow failed with KeyError '_MLFLOW_TELEMETRY_SESSION_ID'.
    # Nothing here may phone home anyway.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow retries a request 7 times with a backoff factor of 2: a tracking server that
    # refuses connections kept `promote` and `monitor` waiting 4-6 minutes before one line
    # (probe, 2026-12). Three retries from 1 s wait about 7 s, which rides out a restart.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    # MLflow logs a tracking database's error whole (its SQL, a web link, the traceback) before
    # raising it, which the commands then say in one line naming the store: 72 lines for a
    # table missing (probe 26). The service silences it the same way.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    try:
        _private_files()
        app()
    except ParcelriskError as exc:
        from serving.audit.safe_text import page_safe

        # a refused value is quoted in the message: its hidden or reordering characters as
        # escapes, as the auditors' outputs write them (probe 22: U+FFA0 printed raw in the
        # very error refusing it); line breaks kept
        typer.echo(f"error: {page_safe(str(exc))}", err=True)
        sys.exit(2)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:  # a full disk, wherever it was written (MLflow, Arrow)
            # Arrow's and a temporary file's errors name no file: the output the command was
            # given says which disk filled (probe 21)
            out = _full_output()
            where = f" (writing {out})" if out and str(out) not in str(exc) else ""
            typer.echo(f"error: no space left on device{where}: {exc}", err=True)
            sys.exit(2)
        if exc.filename is None:  # not about a path the user gave: a fault, with its traceback
            raise
        # a path given that cannot be read or written (a file where a directory belongs, no
        # permission, a full disk): the path and the system's reason, in one line
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        typer.echo(f"error: {paths}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    except MemoryError as exc:  # Arrow's too (pyarrow.ArrowMemoryError is one)
        command = " ".join(a for a in sys.argv[1:3] if not a.startswith("-"))
        typer.echo(
            f"error: out of memory in `parcelrisk {command}`"
            + (f" ({exc})" if str(exc) else "")
            + ": the data is larger than this process can hold; "
            + _memory_advice(sys.argv[1] if len(sys.argv) > 1 else ""),
            err=True,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except sqlite3.DatabaseError as exc:
        from serving.sqlite_store import is_damaged

        if not is_damaged(exc):
            raise
        # a page damaged inside a store that opened fine is met while reading its rows,
        # anywhere in a walk: verify, export, archive and history export gave a traceback
        # (probe 21). One line, naming the store as the command was given it.
        typer.echo(
            f"error: {_store_named()} is damaged: {exc} ({exc.sqlite_errorname}); nothing "
            "was written. Restore it from a backup (a head filed with `parcelrisk audit head` "
            "proves the copy), then run `parcelrisk audit verify`",
            err=True,
        )
        sys.exit(2)
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy") and _raised_in("mlflow", exc):
            # a tracking database MLflow cannot query (a table missing: not MLflow's, another
            # MLflow's, or damaged) gave 72 lines of SQL, web links and tracebacks (probe 26)
            cause = getattr(exc, "orig", None) or exc
            typer.echo(
                f"error: {_tracking_store_named()} cannot be read: {_first_line(cause)} (a "
                "store of another MLflow version, not MLflow's, or damaged: restore it from a "
                "backup, or give --tracking-uri the team's store)",
                err=True,
            )
            sys.exit(2)
        # MLflow's own errors (a tracking store that refuses a query, is locked or full) are
        # about the setup, not a fault of ours: one line, its first, without addresses
        if not type(exc).__module__.startswith("mlflow"):
            raise
        from serving.audit.safe_text import scrub_uris

        typer.echo(f"error: {_tracking_store_named()}: {scrub_uris(_first_line(exc))}", err=True)
        sys.exit(2)


def _tracking_store_named() -> str:
    """The MLflow tracking store a command was pointed at, its password hidden."""
    from models.registry import resolve_tracking_uri, shown_uri

    return f"the MLflow tracking store {shown_uri(resolve_tracking_uri(_option_value('--tracking-uri')))}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _raised_in(package: str, exc: BaseException) -> bool:
    """Whether ``exc`` passed through code of ``package`` on its way up."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(package + "."):
            return True
        tb = tb.tb_next
    return False


if __name__ == "__main__":  # python -m serving.main, as the console script
    main()
