"""The validation gate: the declaration rules (``features.intake.rules``) run over a whole file.

``check_declarations`` reads a frame as it is (text from a CSV, or typed Parquet), converts
every column row by row and runs the rules: structural faults fail the file, plausibility
outliers warn; both with counts and example rows. File-level faults are checked here too:
missing required columns, an empty file, duplicate declaration ids.

``validate_file`` is the ``parcelrisk validate`` stage: it also runs the same rules compiled to
a Great Expectations suite (``features.intake.expectations``) as an independent cross-check and an
artefact data teams can reuse, and writes the report (``features.intake.report``: one self-contained
HTML page, readable offline) and a validation record (``validation.json``) that names the file
by its content fingerprint. ``require_valid`` is the gate the pipeline stages call: it accepts a
matching passing record or checks inline, and refuses faults unless told ``--no-validate``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.errors import ParcelriskError
from features.intake.columns import FrameColumns
from features.intake.contract import (
    FIELDS,
    OUTCOME_COLUMNS,
    Contract,
    ContractError,
    parse_declarations,
)
from features.intake.io import (
    atomic_write,
    check_file,
    read_contract,
    read_raw_declarations,
    unreadable_file,
)
from features.intake.rules import (
    MAX_EXAMPLES,
    Finding,
    Findings,
    Limits,
    Rule,
    check,
    parse_findings,
    rules_for,
    show,
    type_requirement,
)
from features.params import DEFAULT_MAX_REJECTED

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

RECORD_FILE = "validation.json"
REPORT_FILE = "index.html"
ID_COLUMN = "declaration_id"
# A row's declaration id as examples name it: cut like a refused value is (a 200 MB id was
# printed whole beside its own "longer than 64 characters" fault, and `validate` ran out of
# memory formatting it: probe 34)
SHOWN_ID_CHARS = 80


def _shown_id(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SHOWN_ID_CHARS:
        return value[: SHOWN_ID_CHARS - 3] + "..."
    return value


class GateError(ParcelriskError):
    """The data fails the structural checks; the message lists the faults with example rows."""


def fingerprint_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes: names the exact file a validation record speaks for."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The result of a check
# --------------------------------------------------------------------------------------------


@dataclass
class GateResult:
    """What the gate found in one file or frame."""

    rows: int
    with_outcomes: bool
    findings: Findings
    missing_columns: list[str]
    rules_checked: int
    # declaration ids by row (None where missing), for examples: every row's, or (a file
    # checked in chunks) a dict of the example rows'
    ids: np.ndarray | dict[int, Any]
    source: str | None = None
    fingerprint: str | None = None
    # when, and the clock of the "not in the future" rules: shown on the console, never written
    # to the record or the report, so one file under the same rules gives the same bytes
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    cross_check: dict[str, Any] | None = None  # Great Expectations' counts, rule -> count
    ignored_columns: list[str] = field(default_factory=list)  # not in the contract: not read
    # the file declares no extras (no metadata from ``ingest``): its unknown columns may be a
    # mapping's extras whose metadata a rewrite lost
    no_extras_declared: bool = False
    # a file checked in chunks: the rows the column profile and the cross-check read (the
    # first chunk); None when they read the whole file
    sampled_rows: int | None = None

    @property
    def success(self) -> bool:
        return not self.missing_columns and not self.findings.faults and self.rows > 0

    @property
    def fault_count(self) -> int:
        return len(self.missing_columns) + len(self.findings.faults) + (self.rows == 0)

    def examples(self, finding: Finding, limit: int = MAX_EXAMPLES) -> list[dict[str, Any]]:
        """First offending rows: 1-based data row number, declaration id, message."""
        # only the shown rows get a message: a broken column may have a million of them
        return [
            {
                "row": row + 1,
                "declaration_id": _shown_id(self.ids[row]),
                "message": finding.rule.message(v),
            }
            for row, v in zip(finding.rows[:limit].tolist(), finding.values[:limit], strict=True)
        ]

    def summary(self, finding: Finding) -> dict[str, Any]:
        rule = finding.rule
        out = {
            "rule": rule.name,
            "field": rule.field,
            "severity": rule.severity,
            "requires": rule.requires,
            "rows": finding.count,
            "share": finding.count / self.rows if self.rows else 0.0,
            "examples": self.examples(finding),
        }
        # (a sampled cross-check counted other rows: its counts stay in ``cross_check``)
        counts = (self.cross_check or {}).get("counts", {}) if self.sampled_rows is None else {}
        if rule.name in counts:
            out["great_expectations_rows"] = counts[rule.name]
        return out

    def to_record(self) -> dict[str, Any]:
        """The validation record (``validation.json``): what was checked, found and decided."""
        return {
            "file": self.source,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "with_outcomes": self.with_outcomes,
            "success": self.success,
            "rules_checked": self.rules_checked,
            "missing_columns": self.missing_columns,
            "empty": self.rows == 0,
            "faults": [self.summary(f) for f in self.findings.faults],
            "warnings": [self.summary(f) for f in self.findings.warnings],
            "fault_rows": int(self.findings.rows_with("fault").sum()),
            "warning_rows": int(self.findings.rows_with("warning").sum()),
            "cross_check": self.cross_check,
            "ignored_columns": self.ignored_columns,
            "sampled_rows": self.sampled_rows,
        }

    def ignored_note(self, limit: int = 8) -> str:
        names = ", ".join(map(repr, self.ignored_columns[:limit]))
        more = len(self.ignored_columns) - limit
        lost = (
            "; if they are a mapping's extras, this file lost the metadata `ingest` writes "
            "(a Parquet rewritten or concatenated with pandas drops it): ingest the exports "
            "into one file instead (one mapping reads renamed columns with `aliases`)"
        )
        return (
            f"NOTE    {len(self.ignored_columns)} column(s) not in the contract, ignored: {names}"
            + (f" and {more} more" if more > 0 else "")
            + (lost if self.no_extras_declared else "")
        )

    def render(self, limit: int = 3) -> str:
        """What the console shows: verdict, then each failed rule with counts and examples."""
        lines = []
        if self.success:
            head = f"OK: {self.rows:,} rows, {self.rules_checked} rules"
            if self.findings.warnings:
                rows = int(self.findings.rows_with("warning").sum())
                head += f"; {len(self.findings.warnings)} warning(s) on {rows:,} row(s), data kept"
            lines.append(head)
        else:
            rows = int(self.findings.rows_with("fault").sum())
            lines.append(
                f"INVALID: {self.rows:,} rows, {self.fault_count} fault(s)"
                + (f" on {rows:,} row(s)" if rows else "")
                + ": the file cannot enter the pipeline"
            )
        if self.rows == 0:
            lines.append("FAULT   the file has no rows")
        if self.ignored_columns:
            lines.append(self.ignored_note())
        for name in self.missing_columns:
            lines.append(f"FAULT   {name}: required column is missing (every row)")
        if len(self.missing_columns) >= 3:  # not a contract file: an export to map first
            lines.append(
                "HINT    the file misses most of the contract's columns: if it is an "
                "administration's export, convert it first with `parcelrisk ingest FILE "
                "--mapping MAPPING.yaml --out FILE.parquet` (README: the column mapping)"
            )
        for finding in self.findings.faults + self.findings.warnings:
            tag = "FAULT  " if finding.rule.severity == "fault" else "WARNING"
            share = f"{finding.count / self.rows:.2%}" if self.rows else ""
            lines.append(
                f"{tag} {finding.rule.field}: {finding.count:,} row(s) ({share}) break "
                f"'{finding.rule.requires}' [{finding.rule.name}]"
            )
            for ex in self.examples(finding, limit):
                ident = f" ({ex['declaration_id']})" if ex["declaration_id"] else ""
                lines.append(f"          row {ex['row']}{ident}: {ex['message']}")
        if not self.success and not self.missing_columns and self.rows:
            rows = int(self.findings.rows_with("fault").sum())
            if 0 < rows <= DEFAULT_MAX_REJECTED * self.rows:
                # a national export with a few bad rows (DATE's file has 170 without a value
                # in 100,000) need not wait for a corrected export
                lines.append(
                    f"HINT    the faults are on {rows:,} of {self.rows:,} rows: `parcelrisk "
                    "ingest SOURCE --mapping MAPPING.yaml --out FILE.parquet --quarantine "
                    "rejected.csv` sets such rows aside, listed with their reasons, and ingests "
                    f"the rest (up to --max-rejected, {DEFAULT_MAX_REJECTED:.0%} of the rows)"
                )
        if self.cross_check is not None:
            cross = _render_cross_check(self.cross_check)
            if self.sampled_rows is not None:
                cross += f" (on the first {self.sampled_rows:,} rows of {self.rows:,})"
            lines.append(cross)
        return "\n".join(lines)


def _render_cross_check(cross: dict[str, Any]) -> str:
    if cross.get("error"):
        return f"cross-check: Great Expectations did not run: {cross['error']}"
    disagreements = cross.get("disagreements") or []
    if not disagreements:
        return (
            f"cross-check: Great Expectations agrees on all {cross.get('compared', 0)} rules it "
            "expresses"
        )
    shown = "; ".join(
        f"{d['rule']}: parcelrisk {d['parcelrisk']} vs Great Expectations {d['great_expectations']}"
        for d in disagreements
    )
    return f"cross-check: Great Expectations DISAGREES on {len(disagreements)} rule(s): {shown}"


# --------------------------------------------------------------------------------------------
# Checking a frame
# --------------------------------------------------------------------------------------------


def has_outcomes(columns: Any) -> bool:
    """A frame with any outcome column is a history (outcome rules apply); else a file to score."""
    return any(c in columns for c in OUTCOME_COLUMNS)


def _duplicate_finding(rows: np.ndarray, values: list[tuple[Any, int]]) -> Finding:
    rule = Rule(
        "declaration_id.unique",
        ID_COLUMN,
        "fault",
        "unique declaration ids",
        lambda c: np.zeros(len(c), dtype=bool),
        lambda v: f"{show(v[0])} appears {v[1]} times",
        lambda c, r: [],
        "file",
    )
    return Finding(rule, rows, values)


# Fewer rows without a rate than this stay a warning whatever the file's size: a score file of
# ten declarations, one of them in an exotic currency, is no missing table
RATE_SHARE_MIN_ROWS = 50


def rate_share_finding(items: list[Finding], n_rows: int, limits: Limits) -> Finding | None:
    """The rows in currencies without an exchange rate (the ``currency.rate`` warning's) as a
    fault of the whole file when they are more than ``validate.max_share_without_rate`` of it.

    A few parcels in an exotic currency lose their valuation features and the file goes on; a
    fifth of a national export in the administration's own currency, missing from the table,
    would train and score a model blind to value with only a warning (probe, 2026-12)."""
    from collections import Counter

    no_rate = next((f for f in items if f.rule.name == "currency.rate"), None)
    if no_rate is None or n_rows == 0:
        return None
    share = no_rate.count / n_rows
    if share <= limits.max_share_without_rate or no_rate.count < RATE_SHARE_MIN_ROWS:
        return None
    common = ", ".join(f"{c} ({n:,})" for c, n in Counter(no_rate.values).most_common(5))
    base = limits.base_currency
    rule = Rule(
        "currency.rate_share",
        "currency",
        "fault",
        f"at most {limits.max_share_without_rate:.0%} of the rows in currencies without an "
        f"exchange rate to {base} (validate.max_share_without_rate)",
        lambda c: np.zeros(len(c), dtype=bool),
        lambda v: (
            f"{show(v)} has no exchange rate to {base}, nor has {share:.1%} of the file "
            f"({common}): add the rates to features.fx_to_base in params.yaml"
        ),
        lambda c, r: [],
        "file",
    )
    return Finding(rule, no_rate.rows, list(no_rate.values))


def isolated_finding(t_us: np.ndarray) -> Finding | None:
    """The declarations lying far from the rest of the file (``features.intake.span``): a
    mistyped year, named with its row and id, where it passed the gate unsaid and then
    stretched the period ``train.split`` divides (probe 10)."""
    from features.intake.rules import iso_utc
    from features.intake.span import ISOLATED_GAP_DAYS, US_PER_DAY, dense_span

    dense = dense_span(t_us)
    if dense is None or not (len(dense.before) or len(dense.after)):
        return None
    rows = np.concatenate([dense.before, dense.after])
    values = [
        (int(t_us[r]), abs(int(t_us[r]) - edge) // US_PER_DAY, side, edge)
        for part, side, edge in (
            (dense.before, "before", dense.start_us),
            (dense.after, "after", dense.end_us),
        )
        for r in part.tolist()
    ]
    order = np.argsort(rows, kind="stable")
    rule = Rule(
        "declared_at.isolated",
        "declared_at",
        "warning",
        f"within {ISOLATED_GAP_DAYS} days of the file's other declarations",
        lambda c: np.zeros(len(c), dtype=bool),
        lambda v: (
            f"{iso_utc(v[0])} lies {v[1]:,} days {v[2]} the rest of the file ({iso_utc(v[3])[:10]}): "
            "a mistyped year? (train.split leaves it out of the period it divides)"
        ),
        lambda c, r: [],
        "file",
    )
    return Finding(rule, rows[order], [values[i] for i in order.tolist()])


def _duplicates(ids: np.ndarray) -> Finding | None:
    import pandas as pd

    series = pd.Series(ids, dtype=object)
    dup = series.notna() & series.duplicated(keep=False)
    if not dup.any():
        return None
    counts = series[dup].value_counts()
    rows = np.flatnonzero(dup.to_numpy())
    return _duplicate_finding(rows, [(v, int(counts[v])) for v in series.iloc[rows].tolist()])


def check_declarations(
    df: pd.DataFrame,
    contract: Contract | None,
    limits: Limits,
    *,
    with_outcomes: bool | None = None,
    now: datetime | None = None,
    file_checks: bool = True,
) -> tuple[GateResult, pd.DataFrame]:
    """Run the gate on a frame as read (``df`` is not modified); also return its canonical form.

    ``with_outcomes`` defaults to whether the frame has outcome columns. ``now`` fixes the clock
    of the "not in the future" rules. ``file_checks=False`` leaves out the one rule that needs
    the whole file (unique ids): the frame is a chunk of one (``check_parquet_in_chunks``).
    """
    contract = contract or Contract()
    if with_outcomes is None:
        with_outcomes = has_outcomes(df.columns)
    canonical, bad_values, missing = parse_declarations(
        df, with_outcomes=with_outcomes, contract=contract
    )
    columns = FrameColumns(canonical)
    unreadable: dict[str, np.ndarray] = {}
    for bad in bad_values:
        mask = unreadable.setdefault(bad.field, np.zeros(len(canonical), dtype=bool))
        mask[bad.rows] = True
    rules = rules_for(limits, with_outcomes=with_outcomes, now=now, contract=contract)
    # A missing column is one fault, not a "value required" on every row.
    absent = {f.name for f in FIELDS if f.name not in df.columns}
    rules = [r for r in rules if not (r.field in absent and r.name.endswith(".required"))]
    findings = check(columns, rules, unreadable)
    ids = columns.text(ID_COLUMN)
    known = {f.name for f in FIELDS} | {e.name for e in contract.extras}
    items = parse_findings(bad_values) + findings.items
    duplicates = _duplicates(ids) if file_checks else None
    if duplicates is not None:
        items.insert(0, duplicates)
    rate_share = rate_share_finding(items, len(canonical), limits) if file_checks else None
    if rate_share is not None:
        items.append(rate_share)
    isolated = (
        isolated_finding(columns.t_us("declared_at"))
        if file_checks and "declared_at" in canonical.columns
        else None
    )
    if isolated is not None:
        items.append(isolated)
    result = GateResult(
        rows=len(canonical),
        with_outcomes=with_outcomes,
        findings=Findings(len(canonical), items),
        missing_columns=missing,
        rules_checked=len(rules) + 1,
        ids=ids,
        ignored_columns=[str(c) for c in df.columns if c not in known],
        no_extras_declared=not contract.extras,
    )
    return result, canonical


# A chunk of ~0.5M rows holds ~1 GB as read and converted at the contract's width; the gate of a
# file of any size holds one chunk, the ids in Arrow (~20 bytes a row) and the findings.
GATE_CHUNK_ROWS = 500_000
# `validate` checks a Parquet file of more rows in chunks: a whole read of 2M rows as text
# and objects costs several GB, and grows with the file
LARGE_FILE_ROWS = 2_000_000
# parse_number's problems, in the order it reports them for one column
_NUMBER_PROBLEMS = ("is not a number", "is not a whole number", "is out of range")


def check_parquet_in_chunks(
    path: Path,
    limits: Limits,
    *,
    with_outcomes: bool | None = None,
    now: datetime | None = None,
    chunk_rows: int = GATE_CHUNK_ROWS,
) -> GateResult:
    """``check_declarations`` over a Parquet file read ``chunk_rows`` rows at a time.

    Every rule but one reads a row alone, so the chunks are checked apart and their findings
    joined (rows offset, in the order the whole file gives); the one file-level rule, unique
    declaration ids, runs over the ids of every chunk kept in Arrow. Memory is bounded by a
    chunk, not the file: the gate of the Dask engine, where no process holds the whole history.
    One clock (``now``) serves every chunk. Read but not converted: ``GateResult.ids`` holds the
    ids of the example rows only.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    now = now or datetime.now(UTC)
    try:
        contract = read_contract(path)
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except ContractError:
        raise
    except Exception as exc:  # not Parquet, truncated: report, don't trace back
        raise ContractError(f"{path}: cannot read file: {exc}") from exc
    if with_outcomes is None:
        with_outcomes = has_outcomes(schema.names)
    fields = [f.name for f in FIELDS] + [e.name for e in contract.extras]
    rule_order = {
        r.name: i
        for i, r in enumerate(
            rules_for(limits, with_outcomes=with_outcomes, now=now, contract=contract)
        )
    }
    merged: dict[tuple[str, str], Finding] = {}
    first: GateResult | None = None
    ids: list[pa.Array] = []
    offset = 0

    def chunks() -> Any:
        try:
            batches = parquet.iter_batches(batch_size=chunk_rows)
            yield from (pa.Table.from_batches([b], schema=schema) for b in batches)
        except Exception as exc:  # a corrupt row group: named, where, not a traceback
            raise unreadable_file(path, exc) from exc
        if offset == 0:  # no rows: the empty file's faults, as the whole-file gate gives them
            yield schema.empty_table()

    declared: list[np.ndarray] = []  # every declaration's time: the isolated ones are the file's
    for table in chunks():
        chunk, canonical = check_declarations(
            table.to_pandas(), contract, limits, with_outcomes=with_outcomes, now=now,
            file_checks=False,
        )  # fmt: skip
        if "declared_at" in canonical.columns:
            declared.append(FrameColumns(canonical).t_us("declared_at"))
        first = first or chunk
        for item in chunk.findings.items:
            key = (item.rule.name, item.rule.requires)
            if key in merged:
                was = merged[key]
                merged[key] = Finding(
                    was.rule,
                    np.concatenate([was.rows, item.rows + offset]),
                    was.values + item.values,
                )
            else:
                merged[key] = Finding(item.rule, item.rows + offset, list(item.values))
        ids.append(pa.array(chunk.ids, type=pa.large_string(), from_pandas=True))
        offset += chunk.rows
    assert first is not None

    def position(item: Finding) -> tuple[int, int, int]:
        name = item.rule.name
        if name in rule_order:
            return (1, rule_order[name], 0)
        # a "<field>.type" fault: in field order, a number's problems in parse_number's order
        field_at = fields.index(item.rule.field) if item.rule.field in fields else len(fields)
        rank = next(
            (
                i
                for i, p in enumerate(_NUMBER_PROBLEMS)
                if type_requirement(p) == item.rule.requires
            ),
            len(_NUMBER_PROBLEMS),
        )
        return (0, field_at, rank)

    items = sorted(merged.values(), key=position)  # stable: first seen breaks a tie
    all_ids = pa.chunked_array(ids, type=pa.large_string())
    counts = pc.value_counts(all_ids.drop_null())
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        times = dict(
            zip(
                repeated.field("values").to_pylist(),
                repeated.field("counts").to_pylist(),
                strict=True,
            )
        )
        mask = pc.is_in(all_ids, value_set=repeated.field("values"))
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        shown = all_ids.take(pa.array(rows)).to_pylist()
        items.insert(0, _duplicate_finding(rows, [(v, int(times[v])) for v in shown]))
    rate_share = rate_share_finding(items, offset, limits)
    if rate_share is not None:
        items.append(rate_share)
    isolated = isolated_finding(np.concatenate(declared)) if declared else None
    if isolated is not None:
        items.append(isolated)
    example_rows = sorted({int(r) for f in items for r in f.rows[:MAX_EXAMPLES]})
    example_ids = all_ids.take(pa.array(example_rows, type=pa.int64())).to_pylist()
    return GateResult(
        rows=offset,
        with_outcomes=with_outcomes,
        findings=Findings(offset, items),
        missing_columns=first.missing_columns,
        no_extras_declared=first.no_extras_declared,
        rules_checked=first.rules_checked,
        ids=dict(zip(example_rows, example_ids, strict=True)),  # type: ignore[arg-type]
        ignored_columns=first.ignored_columns,
    )


# --------------------------------------------------------------------------------------------
# Files: validate (report + record) and the gate the pipeline stages call
# --------------------------------------------------------------------------------------------


VALIDATION_STEPS = ("read", "rules", "cross-check (GX)", "report")


def validate_file(
    path: Path,
    limits: Limits,
    report_dir: Path | None = None,
    *,
    cross_check: bool = True,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    large_rows: int = LARGE_FILE_ROWS,
    chunk_rows: int = GATE_CHUNK_ROWS,
) -> GateResult:
    """Check a declarations file; with ``report_dir``, write the HTML report and the record.

    ``cross_check`` also runs the rules as a Great Expectations suite and compares its counts.
    ``progress`` is told when each of ``VALIDATION_STEPS`` starts (the CLI's progress bar).
    A Parquet file of more than ``large_rows`` rows is checked ``chunk_rows`` at a time
    (``check_parquet_in_chunks``: the same findings); its column profile and cross-check read
    its first chunk, as the report and the record say (``sampled_rows``).
    """
    step = progress or (lambda _: None)
    path = Path(path)
    now = now or datetime.now(UTC)  # one clock for the gate and the cross-check
    step("read")
    n_rows = _parquet_rows(path)
    if n_rows is not None and n_rows > large_rows:
        # the rules a chunk at a time (memory of a chunk, not of the file); the profile and
        # the cross-check, which need a frame, on the first chunk
        raw, contract = _first_rows(path, chunk_rows)
        step("rules")
        result = check_parquet_in_chunks(path, limits, now=now, chunk_rows=chunk_rows)
        sample, canonical = check_declarations(raw, contract, limits, now=now)
        result.sampled_rows = sample.rows
    else:
        raw, contract = read_raw_declarations(path)  # as it is: the gate reports what is wrong
        step("rules")
        result, canonical = check_declarations(raw, contract, limits, now=now)
        sample = result
    del raw
    result.checked_at = now.isoformat(timespec="seconds")
    result.source = str(path)
    result.fingerprint = fingerprint_file(path)
    if cross_check and not result.missing_columns and result.rows:
        from features.intake.expectations import cross_check_with_gx

        step("cross-check (GX)")
        result.cross_check = cross_check_with_gx(
            canonical, sample, limits, report_dir=report_dir, now=now
        )
    if report_dir is not None:
        step("report")
        write_report(result, Path(report_dir), canonical)
    logger.info(
        "validated %s at %s: %s (%d fault(s), %d warning(s))",
        path,
        result.checked_at,
        "ok" if result.success else "INVALID",
        result.fault_count,
        len(result.findings.warnings),
    )
    return result


def _parquet_rows(path: Path) -> int | None:
    """Rows of a Parquet file from its footer (None: not a readable Parquet file; the
    whole-file read then reports what is wrong)."""
    if path.suffix.lower() not in (".parquet", ".pq"):
        return None
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # reported by the read that follows
        return None


def _first_rows(path: Path, n: int) -> tuple[pd.DataFrame, Contract]:
    """The first ``n`` rows of a Parquet file as they are, with its contract."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        contract = read_contract(path)
        parquet = pq.ParquetFile(path)
        batch = next(parquet.iter_batches(batch_size=n), None)
        table = (
            pa.Table.from_batches([batch], schema=parquet.schema_arrow)
            if batch is not None
            else parquet.schema_arrow.empty_table()
        )
    except ContractError:
        raise
    except Exception as exc:  # a corrupt row group: named, where, not a traceback
        raise unreadable_file(path, exc) from exc
    return table.to_pandas(), contract


def write_report(result: GateResult, report_dir: Path, canonical: pd.DataFrame | None) -> None:
    """``validation.json`` and the self-contained ``index.html``, each written atomically."""
    from features.intake.report import render_report

    report_dir.mkdir(parents=True, exist_ok=True)
    record = json.dumps(result.to_record(), indent=1, default=str)
    html = render_report(result, canonical)
    atomic_write(report_dir / RECORD_FILE, lambda tmp: tmp.write_text(record))
    atomic_write(report_dir / REPORT_FILE, lambda tmp: tmp.write_text(html, encoding="utf-8"))


def read_record(report_dir: Path) -> dict[str, Any]:
    path = Path(report_dir) / RECORD_FILE
    if not path.exists():
        raise ParcelriskError(
            f"no validation record {path} (run `parcelrisk validate FILE --report {report_dir}`)"
        )
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ParcelriskError(f"validation record {path} is unreadable: {exc}") from exc


@dataclass(frozen=True)
class GateOutcome:
    """How the data passed the gate, recorded beside what was built from it."""

    status: str  # "passed" | "skipped"
    how: str  # "inline" | "record" | "--no-validate"
    fingerprint: str | None
    warnings: int = 0
    # Checked inline: the file as read and converted, so the caller need not read it again.
    declarations: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    contract: Contract | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.status,
            "gate_how": self.how,
            "source_fingerprint": self.fingerprint,
            "gate_warnings": self.warnings,
        }


def require_valid(
    path: Path,
    limits: Limits,
    *,
    no_validate: bool = False,
    validated_by: Path | None = None,
    with_outcomes: bool | None = None,
    what: str = "this step",
    in_chunks: bool = False,
) -> GateOutcome:
    """Refuse a file with structural faults before ``what`` uses it.

    ``validated_by``: a report directory whose passing record names this exact file (by
    fingerprint) stands in for the check. ``no_validate`` skips the gate, loudly.
    ``in_chunks``: check a Parquet file a chunk at a time (``check_parquet_in_chunks``) and
    keep nothing of it: for a caller that reads the file in parts itself.
    """
    path = Path(path)
    check_file(path)  # absent, a directory, empty: one line, before anything reads it
    fingerprint = fingerprint_file(path)
    if no_validate:
        logger.warning(
            "%s: --no-validate: %s is used WITHOUT the validation gate; this is recorded",
            what,
            path,
        )
        return GateOutcome("skipped", "--no-validate", fingerprint)
    if validated_by is not None:
        record = read_record(validated_by)
        if record.get("fingerprint") != fingerprint:
            raise ParcelriskError(
                f"validation record in {validated_by} is for another file "
                f"({record.get('file')}, fingerprint {str(record.get('fingerprint'))[:12]}), "
                f"not {path} ({str(fingerprint)[:12]}): validate this file"
            )
        if not record.get("success"):
            raise GateError(
                f"{path} failed validation (record in {validated_by}): "
                f"{len(record.get('faults', []))} fault(s); see {Path(validated_by) / REPORT_FILE}"
            )
        logger.info("%s: %s passed validation (record %s)", what, path, validated_by)
        return GateOutcome("passed", "record", fingerprint, len(record.get("warnings", [])))
    chunked = in_chunks and path.suffix.lower() in (".parquet", ".pq")
    if chunked:
        result = check_parquet_in_chunks(path, limits, with_outcomes=with_outcomes)
        canonical, contract = None, None
    else:
        raw, contract = read_raw_declarations(path)
        result, canonical = check_declarations(raw, contract, limits, with_outcomes=with_outcomes)
    if not result.success:
        raise GateError(
            f"{path} fails the validation gate; {what} refuses it "
            f"(fix the data or the mapping; --no-validate to override):\n{result.render()}"
        )
    if result.findings.warnings:
        logger.warning("%s: %s", what, result.render().replace("\n", "\n  "))
    elif result.ignored_columns:
        logger.warning("%s: %s: %s", what, path, result.ignored_note())
    if chunked or (with_outcomes is None and not result.with_outcomes):
        # no outcome column: checked as declarations; the caller reads the file as it needs it
        # (a history with no result yet for `features build`, declarations for `score`)
        return GateOutcome("passed", "inline", fingerprint, len(result.findings.warnings))
    return GateOutcome(
        "passed", "inline", fingerprint, len(result.findings.warnings), canonical, contract
    )
