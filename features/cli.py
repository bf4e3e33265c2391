"""CLI commands of the declaration side: generate, ingest, validate, features build.

Thin edges: parse options, call one function of the package, print a short summary.
Heavy imports (pandas, Great Expectations) happen inside the commands.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import typer

from features.params import DEFAULT_MAX_REJECTED, DEFAULT_PARAMS, Settings, load_settings

features_app = typer.Typer(help="Point-in-time parcel features.", no_args_is_help=True)
mapping_app = typer.Typer(
    help="Column mappings: draft one for an export nobody has mapped yet.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Secret keys: the audit chain's MAC key, the consignee pseudonym key.",
    no_args_is_help=True,
)


def _show_progress(quiet: bool) -> bool:
    """Progress bars go to stderr, for a person at a terminal: not in logs, CI or pipes."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def step_progress(
    steps: tuple[str, ...], *, enabled: bool, file: TextIO | None = None
) -> Iterator[Callable[[str], None]]:
    """A tqdm bar over named steps; yields the callback that says which step starts.

    Steps may be announced in order only; log lines go above the bar while it is shown.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = tqdm(
        total=len(steps),
        file=file or sys.stderr,
        disable=not enabled,
        bar_format="{desc:<16} {bar:20} {n_fmt}/{total_fmt} steps [{elapsed}]",
        leave=False,
    )

    def start(step: str) -> None:
        bar.update(steps.index(step) - bar.n)  # a step starting means the ones before are done
        bar.set_description_str(step)

    with bar, logging_redirect_tqdm() if enabled else nullcontext():
        yield start
        bar.update(len(steps) - bar.n)


def params_option(sections: str) -> Any:
    """The ``--params`` option every command that reads settings takes."""
    return typer.Option(
        None,
        "--params",
        help=f"params.yaml to read ({sections}); default: ./params.yaml if present, else the "
        "built-in defaults.",
    )


def scheduler_option() -> Any:
    """The ``--scheduler`` option of the commands with a Dask engine."""
    return typer.Option(
        None,
        "--scheduler",
        help="With --engine dask: the Dask scheduler's address (e.g. tcp://host:8786); "
        "default a LocalCluster of two worker processes on this machine.",
    )


def tracking_option() -> Any:
    """The ``--tracking-uri`` option of the commands that read the model registry."""
    return typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI of the registry (default $MLFLOW_TRACKING_URI or "
        "sqlite:///mlflow.db).",
    )


def settings_from(params: Path | None) -> Settings:
    """The settings of one command, read once: a named file must exist."""
    return load_settings(params or DEFAULT_PARAMS, must_exist=params is not None)


def output_directory(path: Path | None, option: str) -> Path | None:
    """``path`` as an output directory: refused at once if it names a file (the command would
    otherwise work for minutes and then stop at its first write)."""
    from features.errors import ParcelriskError

    if path is not None and path.exists() and not path.is_dir():
        raise ParcelriskError(
            f"{option} {path}: is a file, not a directory; give a directory (made if missing)"
        )
    return path


def _echo_json(summary: dict) -> None:
    typer.echo(json.dumps(summary, indent=2, default=str, ensure_ascii=False))


def require_past_period(start: str, days: int, today: date | None = None) -> None:
    """Refuse a period whose declarations or inspection results would be dated after today.

    A history is what an administration has already seen: the validation gate refuses
    declarations and results in the future (beyond its clock skew), so such a file could not
    enter the pipeline. Said before minutes of generating, with a --start that fits. The data
    of a seed stays the same whatever the day it is generated on (no default moving with it).
    """
    from features.synthetic.inspection import MAX_INSPECTION_DELAY_H
    from features.synthetic.params import SyntheticParamsError, parse_start

    today = today or datetime.now(UTC).date()
    try:
        first = parse_start(start).astype("datetime64[D]").item()
    except ValueError as exc:
        raise SyntheticParamsError(
            f"--start must be a date like 2026-01-01, got {start!r}"
        ) from exc
    lag = timedelta(hours=MAX_INSPECTION_DELAY_H)
    results_until = first + timedelta(days=days) + lag
    if results_until <= today:
        return
    latest = today - timedelta(days=days) - lag
    fewer = (today - first - lag).days
    fix = f"use --start {latest.isoformat()} or earlier" + (
        f", or at most --days {fewer}" if fewer >= 1 else ""
    )
    raise SyntheticParamsError(
        f"--start {start} --days {days}: the declarations run to "
        f"{(first + timedelta(days=days - 1)).isoformat()} and their inspection results up to "
        f"{MAX_INSPECTION_DELAY_H // 24} days later, past today ({today.isoformat()}); the "
        f"validation gate refuses declarations and results dated in the future: {fix}"
    )


def generate(
    parcels: int = typer.Option(300_000, "--parcels", min=1, help="Number of parcels to generate."),
    days: int = typer.Option(180, "--days", min=1, help="Length of the period in days."),
    seed: int = typer.Option(42, "--seed", help="Random seed (same seed, same data)."),
    out: Path = typer.Option(Path("data/raw"), "--out", help="Output directory."),
    start: str = typer.Option("2026-01-01", "--start", help="First day of the period (UTC)."),
    quiet: bool = typer.Option(
        False, "--quiet", help="No progress bar (drawn on stderr only when it is a terminal)."
    ),
) -> None:
    """Generate a synthetic declaration history with outcomes and its ground truth."""
    import sys

    from features.synthetic import generate_to_dir

    require_past_period(start, days)
    output_directory(out, "--out")
    progress = not quiet and sys.stderr.isatty()
    _echo_json(
        generate_to_dir(
            parcels=parcels, days=days, seed=seed, out=out, start=start, progress=progress
        )
    )


def ingest(
    sources: list[Path] = typer.Argument(
        ...,
        help="CSV, Parquet, JSON (.json, .jsonl), XML (.xml) or workbook (.xlsx, .xls, .xlsb, "
        ".ods) with the administration's "
        "columns; or the exports of a series (a file a month: jan.csv feb.csv ...), read with "
        "the one mapping into one file, a declaration in two of them taken once.",
    ),
    mapping: Path = typer.Option(..., "--mapping", help="Column mapping YAML (see README)."),
    out: Path = typer.Option(..., "--out", help="Output Parquet in the contract."),
    quarantine: Path | None = typer.Option(
        None,
        "--quarantine",
        help="Set rows that do not convert or break a gate fault rule aside in this CSV "
        "(source columns, row number, reasons) and ingest the others; without it any such "
        "value stops the ingest.",
    ),
    max_rejected: float = typer.Option(
        DEFAULT_MAX_REJECTED,
        "--max-rejected",
        help="With --quarantine: the largest share of rows set aside (0-1) before the whole "
        "file is refused as a mapping or export problem.",
    ),
    params: Path | None = params_option(
        "sections validate, features: the gate's limits, and the exchange rates of a "
        "revenue_recovered given in another currency"
    ),
) -> None:
    """Convert an administration's declarations to the contract through a column mapping."""
    from features.intake.ingest import ingest_file
    from features.intake.rules import Limits

    settings = settings_from(params)
    limits = Limits.from_settings(settings) if quarantine is not None else None
    _echo_json(
        ingest_file(
            source=sources,
            mapping_path=mapping,
            out=out,
            quarantine=quarantine,
            max_rejected=max_rejected,
            limits=limits,
            fx_to_base=settings.features.fx,
            timezone=settings.features.timezone,
        )
    )


@mapping_app.command("draft")
def mapping_draft(
    source: Path = typer.Argument(
        ...,
        help="The export: CSV, Parquet, JSON (.json, .jsonl), XML or workbook (.xlsx, .ods ...).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the draft here (refused if it exists); default: stdout."
    ),
    sheet: str | None = typer.Option(
        None, "--sheet", help="The worksheet of a workbook of several (its name)."
    ),
    records: str | None = typer.Option(
        None,
        "--records",
        help="A JSON document's key holding the records (dotted: export.declarations), or the "
        "path of an XML export's record elements below its root (Body.Declaration).",
    ),
    results: bool = typer.Option(
        False,
        "--results",
        help="A file of inspection results (for `outcomes ingest --mapping`): the declaration "
        "id and outcome fields only.",
    ),
    encoding: str | None = typer.Option(
        None,
        "--encoding",
        help="The file's text encoding (cp1250, iso-8859-2 ...) when known; default: UTF-8, "
        "else the Windows code page its letters read best in (marked CHECK).",
    ),
    params: Path | None = params_option(
        "section features: the time zone local times are proposed in"
    ),
) -> None:
    """Propose a mapping for an export from its column names and values, then try it.

    Every guess to confirm is marked CHECK, every required field not found TODO (ingest
    refuses the draft until it is mapped). The summary goes to stderr.
    """
    from features.errors import ParcelriskError
    from features.intake.draft import draft_mapping, read_for_draft, try_draft
    from features.intake.io import atomic_write
    from features.intake.rules import Limits

    settings = settings_from(params)
    if out is not None and out.exists():
        raise ParcelriskError(f"{out} exists: give another --out (a draft never overwrites)")
    raw, reading = read_for_draft(source, sheet=sheet, records=records, encoding=encoding)
    draft = draft_mapping(raw, timezone=settings.features.timezone, results=results, **reading)
    tried = try_draft(
        source,
        raw,
        draft,
        fx_to_base=settings.features.fx,
        timezone=settings.features.timezone,
        limits=Limits.from_settings(settings),
    )
    if out is None:
        typer.echo(draft.text, nl=False)
    else:
        atomic_write(out, lambda path: path.write_text(draft.text, encoding="utf-8"))
    summary = {
        "mapped": draft.mapped,
        "to_check": draft.checks,
        "required_not_found": draft.missing,
        "extras": draft.extras,
        "not_mapped": draft.ignored,
        "tried": tried,
    }
    typer.echo(json.dumps(summary, indent=1, ensure_ascii=False), err=True)
    if out is not None:
        typer.echo(f"draft: {out}", err=True)


def validate(
    file: Path = typer.Argument(..., help="Declarations file (Parquet or CSV) to check."),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Write the HTML report (offline, self-contained) and validation.json here.",
    ),
    params: Path | None = params_option("sections validate, features"),
    cross_check: bool = typer.Option(
        True,
        "--cross-check/--no-cross-check",
        help="Also run the rules as a Great Expectations suite and compare the counts.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar (none either when stderr is not a terminal)."
    ),
) -> None:
    """Run the validation gate: exit 1 on faults (listed with example rows); warnings pass."""
    from features.intake.rules import Limits
    from features.intake.validation import VALIDATION_STEPS, validate_file

    output_directory(report, "--report")
    limits = Limits.from_settings(settings_from(params))
    skipped = {"cross-check (GX)": not cross_check, "report": report is None}
    steps = tuple(s for s in VALIDATION_STEPS if not skipped.get(s, False))
    with step_progress(steps, enabled=_show_progress(quiet)) as step:
        result = validate_file(
            file, limits, report_dir=report, cross_check=cross_check, progress=step
        )
    typer.echo(result.render())
    # only here: the report and the record carry no run time, so a re-run writes the same bytes
    typer.echo(f"checked at {result.checked_at}")
    if report is not None:
        typer.echo(f"report: {report / 'index.html'} (record: {report / 'validation.json'})")
    if not result.success:
        raise typer.Exit(1)


def contract() -> None:
    """Print the declaration contract (fields, types, domains, units) as a Markdown table."""
    from features.intake.contract import FIELDS

    typer.echo("| field | scope | type | required | nullable | domain | unit | meaning |")
    typer.echo("|---|---|---|---|---|---|---|---|")
    for f in FIELDS:
        domain = ", ".join(f.allowed) if f.allowed else (f.pattern or "")
        if f.min_value is not None or f.max_value is not None:
            domain = f"[{f.min_value if f.min_value is not None else ''}, {f.max_value if f.max_value is not None else ''}]"
        typer.echo(
            f"| {f.name} | {f.scope} | {f.kind} | {'yes' if f.required else 'no'} | "
            f"{'yes' if f.nullable else 'no'} | {domain} | {f.unit or ''} | {f.description} |"
        )


@features_app.command("build")
def features_build(
    declarations: Path = typer.Option(
        ..., "--declarations", help="Validated declarations Parquet."
    ),
    out: Path = typer.Option(Path("data/processed"), "--out", help="Output directory."),
    params: Path | None = params_option("sections features, validate"),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="Build as known at this instant (e.g. 2026-06-01 or 2026-06-01T12:00Z): earlier "
        "declarations, results recorded before it; the entity state is cut there.",
    ),
    validated_by: Path | None = typer.Option(
        None,
        "--validated-by",
        help="A `validate --report` directory whose passing record names this exact file "
        "(checked by fingerprint) instead of checking inline.",
    ),
    no_validate: bool = typer.Option(
        False, "--no-validate", help="Skip the validation gate (logged, and recorded for train)."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars (none either when stderr is not a terminal)."
    ),
    engine: str = typer.Option(
        "pandas",
        "--engine",
        help="pandas (one process) or dask (partitions on a Dask cluster: the same features "
        "and entity state for histories larger than one process holds).",
    ),
    scheduler: str | None = scheduler_option(),
    partition_rows: int | None = typer.Option(
        None,
        "--partition-rows",
        min=1,
        help="With --engine dask: rows per partition (default 250,000; a worker holds a few "
        "partitions at a time).",
    ),
) -> None:
    """Build point-in-time features, the feature manifest and the entity-state snapshot.

    The declarations pass the validation gate first (inline, or by a matching record): a file
    with structural faults is refused.
    """
    for given, name in ((scheduler, "--scheduler"), (partition_rows, "--partition-rows")):
        if given is not None and engine != "dask":
            raise typer.BadParameter(f"{name} needs --engine dask", param_hint=name)
    output_directory(out, "--out")
    from features.pipeline.build import build_to_dir

    _echo_json(
        build_to_dir(
            declarations_path=declarations,
            out=out,
            settings=settings_from(params),
            no_validate=no_validate,
            validated_by=validated_by,
            as_of=as_of,
            show_progress=_show_progress(quiet),
            engine=engine,
            scheduler=scheduler,
            partition_rows=partition_rows,
        )
    )


@keys_app.command("new")
def keys_new(
    kind: str = typer.Argument(..., help="audit or pseudonym."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Key file to write (default: the file PARCELRISK_KIND_KEY_FILE names, else "
        "~/.config/parcelrisk/KIND.key).",
    ),
) -> None:
    """Write a new random key (mode 0600); an existing key is never replaced."""
    from features.keys import key_env, key_file_env, new_key_path, write_new_key

    path = write_new_key(kind, out)
    typer.echo(f"{kind} key written to {path}")
    if os.environ.get(key_env(kind)):  # the variable wins over every file: say so
        typer.echo(f"note: {key_env(kind)} is set and is used instead of any key file")
    elif out is not None and out.resolve() != new_key_path(kind).resolve():
        typer.echo(f"use it with: export {key_file_env(kind)}={path.resolve()}")


@keys_app.command("show")
def keys_show() -> None:
    """Which key of each kind is in use (its id and where it comes from), never the key."""
    from features.keys import KEY_KINDS, KeyUnavailable, key_id, key_source, load_key

    for kind in KEY_KINDS:
        try:
            typer.echo(f"{kind}: id {key_id(load_key(kind))} from {key_source(kind)}")
        except KeyUnavailable as exc:
            typer.echo(f"{kind}: missing: {exc}")


@keys_app.command("pseudonym")
def keys_pseudonym(
    values: list[str] = typer.Argument(..., help="Raw identifiers (e.g. consignee ids)."),
    fold: bool = typer.Option(
        False,
        "--fold",
        help="Read each as a name mapped with fold: true (upper case, spacing made one), as "
        "the data holds it.",
    ),
) -> None:
    """The pseudonym of each raw identifier under this key, to find a person in the data.

    For an auditor holding the pseudonym key: the features, the entity state and the decision
    store hold only pseudonyms; this is the one way from a person to theirs."""
    from features.errors import ParcelriskError
    from features.intake.pseudonym import pseudonym_of
    from features.keys import load_key

    # an empty identifier is "unknown" in the data (kept null, never pseudonymised): a
    # pseudonym of "" would match nothing stored and send the auditor looking for it
    if blank := [i + 1 for i, value in enumerate(values) if not value.strip()]:
        raise ParcelriskError(
            f"identifier {', '.join(map(str, blank))} of {len(values)} is empty: an empty "
            "identifier means unknown and has no pseudonym; give the raw identifiers"
        )
    key = load_key("pseudonym")  # no cache: a one-off lookup reads the key as configured now
    for value in values:
        # read as a declaration's text is (stripped, and folded as a folded name is), or the
        # lookup would miss the stored value
        text = value.strip()
        if fold:
            import pandas as pd

            from features.intake.contract import fold_name

            text = str(fold_name(pd.Series([text], dtype=object)).iloc[0])
        typer.echo(f"{value} -> {pseudonym_of(text, key)}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command()(generate)
    app.command()(ingest)
    app.add_typer(mapping_app, name="mapping")
    app.command()(validate)
    app.command()(contract)
    app.add_typer(features_app, name="features")
