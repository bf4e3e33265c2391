"""The validation gate: a Great Expectations suite built from the contract, run on one file.

The suite is derived from ``features.contract.FIELDS`` (and the file's extras), never from a
hand-written column list: presence, dtype, nulls, ranges, allowed values, code formats, lengths,
unique ids, plausible timestamps, and the consistency of inspection outcomes.

Two stages so that a broken file is still reported as failed checks, not a traceback:
1. the raw frame is converted column by column to the contract dtypes; missing columns and
   values that do not convert become failures;
2. the GX suite runs on a copy of the converted frame (plus helper columns for conditions).

Great Expectations is imported lazily (about 4 s): importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.contract import (
    EARLIEST_DECLARATION,
    FIELDS,
    MAX_CLOCK_SKEW_DAYS,
    Contract,
    ContractError,
    ContractField,
    _to_bool,
    _to_number,
    _to_text,
    _to_utc,
    coerce_declarations,
    read_raw_declarations,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 5
ID_COLUMN = "declaration_id"
# Helper columns added to the validated copy for conditional expectations.
_NOT_INSPECTED = "_not_inspected"
_INSPECTED = "_inspected"
_NOT_ILLICIT = "_not_illicit"
# Outcomes that must be known once a parcel is inspected (the others may stay null: no offence,
# nothing recovered, reason not recorded).
REQUIRED_WHEN_INSPECTED = ("inspected_at", "illicit")
# What ExpectColumnValuesToBeOfType observes for each canonical dtype on pandas 3 (GX 1.24
# reports element types for datetimes and nullable booleans).
_GX_TYPES = {
    "str": "str",
    "category": "str",
    "int": "int64",
    "float": "float64",
    "bool": "bool",
    "datetime": "Timestamp",
}


@dataclass(frozen=True)
class Failure:
    """One failed check: which expectation, on which column, what is wrong, a few examples."""

    expectation: str
    column: str | None
    message: str
    unexpected_count: int | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)

    def render(self) -> str:
        where = f"{self.column}: " if self.column else ""
        count = f" [{self.unexpected_count} row(s)]" if self.unexpected_count else ""
        line = f"FAIL {where}{self.message}{count} ({self.expectation})"
        if self.examples:
            shown = "; ".join(
                ", ".join(f"{k}={v!r}" for k, v in ex.items()) for ex in self.examples
            )
            line += f"\n     e.g. {shown}"
        return line


@dataclass
class ValidationResult:
    """Outcome of the gate; ``render()`` is what the CLI prints."""

    success: bool
    failures: list[Failure]
    statistics: dict[str, Any]

    def render(self) -> str:
        rows = self.statistics.get("rows", 0)
        evaluated = self.statistics.get("evaluated_expectations", 0)
        if self.success:
            return f"OK: {rows} rows, {evaluated} expectations passed"
        head = (
            f"INVALID: {rows} rows, {len(self.failures)} failed check(s) "
            f"of {evaluated + self.statistics.get('conversion_checks_failed', 0)}"
        )
        return "\n".join([head, *(f.render() for f in self.failures)])


# --------------------------------------------------------------------------------------------
# Stage 1: structure and conversion (no GX needed to convert, GX reports presence).
# --------------------------------------------------------------------------------------------


def _convert_column(series: pd.Series, f: ContractField) -> pd.Series:
    # Same per-kind conversions as coerce_declarations, one column at a time, so every
    # unconvertible column is reported rather than only the first.
    if f.kind == "datetime":
        return _to_utc(series, f.name)
    if f.kind == "bool":
        # Nullability is the suite's business; convert as nullable so nulls are counted there.
        return _to_bool(series, f.name, True)
    if f.kind in ("int", "float"):
        return _to_number(series, f.name, f.kind)
    return _to_text(series)


def _labelled(series: pd.Series, raw: pd.DataFrame) -> pd.Series:
    """Index a column by declaration_id, so conversion errors name parcels, not positions."""
    if ID_COLUMN in raw.columns and raw[ID_COLUMN].notna().all() and raw[ID_COLUMN].is_unique:
        return series.set_axis(raw[ID_COLUMN].astype("str"))
    return series


def _expected_fields(df: pd.DataFrame) -> tuple[ContractField, ...]:
    with_outcomes = any(f.scope == "outcome" and f.name in df.columns for f in FIELDS)
    return tuple(f for f in FIELDS if with_outcomes or f.scope == "declaration")


def _prepare(df: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, list[Failure], set[str]]:
    """Canonical copy of ``df`` for the suite, conversion failures, and columns usable by it."""
    import pandas as pd

    fields = _expected_fields(df)
    with_outcomes = any(f.scope == "outcome" for f in fields)
    try:
        canonical = coerce_declarations(
            df, with_outcomes=with_outcomes, contract=contract, keep_unknown=True
        )
        present = {f.name for f in fields if f.name in df.columns}
        present |= {e.name for e in contract.extras if e.name in df.columns}
        return canonical, [], present
    except ContractError:
        pass  # diagnose column by column below

    failures: list[Failure] = []
    out: dict[str, pd.Series] = {}
    usable: set[str] = set()
    raw = df.reset_index(drop=True)
    for f in fields:
        if f.name not in raw.columns:
            continue  # reported by ExpectColumnToExist
        try:
            converted = _convert_column(_labelled(raw[f.name], raw), f).set_axis(raw.index)
        except ContractError as exc:
            failures.append(
                Failure(
                    f"convert_to_{f.kind}", f.name, str(exc).removeprefix(f"column {f.name!r}: ")
                )
            )
            out[f.name] = raw[f.name]
            continue
        if f.name in ("seller_country", "origin_country", "currency"):
            converted = converted.str.upper()
        if f.kind == "category":
            converted = converted.str.lower()
        out[f.name] = converted
        usable.add(f.name)
    for extra in contract.extras:
        if extra.name not in raw.columns:
            continue
        try:
            out[extra.name] = (
                _to_number(_labelled(raw[extra.name], raw), extra.name, "float").set_axis(raw.index)
                if extra.kind == "numeric"
                else _to_text(raw[extra.name])
            )
            usable.add(extra.name)
        except ContractError as exc:
            failures.append(
                Failure(
                    "convert_to_numeric",
                    extra.name,
                    str(exc).removeprefix(f"column {extra.name!r}: "),
                )
            )
            out[extra.name] = raw[extra.name]
    rest = [c for c in raw.columns if c not in out]
    canonical = pd.concat([pd.DataFrame(out, index=raw.index), raw[rest]], axis=1)
    return canonical, failures, usable


# --------------------------------------------------------------------------------------------
# Stage 2: the suite, derived from FIELDS.
# --------------------------------------------------------------------------------------------


def _timestamp_bounds(now: datetime | None = None) -> tuple[Any, Any]:
    import pandas as pd

    now = now or datetime.now(UTC)
    return (
        pd.Timestamp(EARLIEST_DECLARATION),
        pd.Timestamp(now + timedelta(days=MAX_CLOCK_SKEW_DAYS)),
    )


def build_expectations(
    fields: tuple[ContractField, ...],
    contract: Contract,
    usable: set[str],
    with_outcomes: bool,
    now: datetime | None = None,
) -> list[Any]:
    """The expectations for a frame with ``fields``; value checks only on ``usable`` columns."""
    import great_expectations.expectations as gxe

    earliest, latest = _timestamp_bounds(now)
    # An empty export is a failed export, not a valid one.
    exps: list[Any] = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    for f in fields:
        if f.required:
            exps.append(gxe.ExpectColumnToExist(column=f.name))
        if f.name not in usable:
            continue
        col = f.name
        exps.append(gxe.ExpectColumnValuesToBeOfType(column=col, type_=_GX_TYPES[f.kind]))
        if not f.nullable:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
        if f.min_value is not None or f.max_value is not None:
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=f.min_value, max_value=f.max_value
                )
            )
        if f.kind == "datetime":
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(column=col, min_value=earliest, max_value=latest)
            )
        if f.allowed:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(f.allowed)))
        if f.pattern:
            exps.append(gxe.ExpectColumnValuesToMatchRegex(column=col, regex=f.pattern))
        if f.kind == "str" and not f.pattern:
            exps.append(
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column=col, min_value=1, max_value=f.max_length
                )
            )
    if ID_COLUMN in usable:
        exps.append(gxe.ExpectColumnValuesToBeUnique(column=ID_COLUMN))
    for extra in contract.extras:
        exps.append(gxe.ExpectColumnToExist(column=extra.name))
    if with_outcomes and "inspected" in usable:
        exps += _outcome_expectations(fields, usable)
    return exps


def _outcome_expectations(fields: tuple[ContractField, ...], usable: set[str]) -> list[Any]:
    import great_expectations.expectations as gxe

    exps: list[Any] = []
    for f in fields:
        if f.scope == "outcome" and f.name != "inspected" and f.name in usable:
            exps.append(
                gxe.ExpectColumnValuesToBeNull(
                    column=f.name,
                    row_condition=f"{_NOT_INSPECTED} == True",
                    condition_parser="pandas",
                    description=f"{f.name} must be null where the parcel was not inspected",
                )
            )
    for name in REQUIRED_WHEN_INSPECTED:
        if name in usable:
            exps.append(
                gxe.ExpectColumnValuesToNotBeNull(
                    column=name,
                    row_condition=f"{_INSPECTED} == True",
                    condition_parser="pandas",
                    description=f"{name} must be set where the parcel was inspected",
                )
            )
    if {"inspected_at", "declared_at"} <= usable:
        exps.append(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="inspected_at",
                column_B="declared_at",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            )
        )
    if {"offence_type", "illicit"} <= usable:
        exps.append(
            gxe.ExpectColumnValuesToBeNull(
                column="offence_type",
                row_condition=f"{_NOT_ILLICIT} == True",
                condition_parser="pandas",
                description="offence_type must be null unless the parcel was found illicit",
            )
        )
    return exps


def _add_helper_columns(frame: pd.DataFrame, usable: set[str]) -> pd.DataFrame:
    frame = frame.copy()
    if "inspected" in usable:
        inspected = frame["inspected"].astype("boolean").fillna(False).astype(bool)
        frame[_INSPECTED] = inspected
        frame[_NOT_INSPECTED] = ~inspected
    if "illicit" in usable:
        frame[_NOT_ILLICIT] = ~frame["illicit"].astype("boolean").fillna(False).astype(bool)
    return frame


# --------------------------------------------------------------------------------------------
# Turning GX results into Failures.
# --------------------------------------------------------------------------------------------


def _describe(config: Any) -> str:
    kw = config.kwargs
    kind = config.type
    if config.description:
        return config.description
    if kind == "expect_column_to_exist":
        return "required column is missing"
    if kind == "expect_column_values_to_be_of_type":
        return f"wrong type, expected {kw.get('type_')}"
    if kind == "expect_column_values_to_not_be_null":
        return "null values are not allowed"
    if kind == "expect_column_values_to_be_between":
        return f"values outside the range [{kw.get('min_value')}, {kw.get('max_value')}]"
    if kind == "expect_column_values_to_be_in_set":
        return f"values not allowed (allowed: {', '.join(map(str, kw.get('value_set', [])))})"
    if kind == "expect_column_values_to_match_regex":
        return f"values do not match the format {kw.get('regex')}"
    if kind == "expect_column_value_lengths_to_be_between":
        return f"text length outside [{kw.get('min_value')}, {kw.get('max_value')}]"
    if kind == "expect_table_row_count_to_be_between":
        return "the file has no rows"
    if kind == "expect_column_values_to_be_unique":
        return "duplicate values"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        return f"{kw.get('column_A')} is before {kw.get('column_B')}"
    return kind.replace("_", " ")


def _examples(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = result.get("partial_unexpected_index_list") or []
    examples = []
    for row in rows[:MAX_EXAMPLES]:
        if isinstance(row, dict):
            examples.append({k: _plain(v) for k, v in row.items() if not k.startswith("_")})
        else:
            examples.append({"row": _plain(row)})
    if not examples:
        examples = [{"value": _plain(v)} for v in (result.get("partial_unexpected_list") or [])]
    return examples[:MAX_EXAMPLES]


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not hasattr(value, "tz"):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is None or str(value) in ("<NA>", "NaT", "nan"):
        return None
    return value


def _failure_from(result: Any) -> Failure:
    config = result.expectation_config
    kw = config.kwargs
    column = kw.get("column") or (
        f"{kw['column_A']}/{kw['column_B']}" if "column_A" in kw else None
    )
    message = _describe(config)
    if result.exception_info and result.exception_info.get("raised_exception"):
        message += f" (check raised: {result.exception_info.get('exception_message')})"
    details = result.result or {}
    if config.type == "expect_column_values_to_be_of_type" and "observed_value" in details:
        message += f", found {details['observed_value']}"
    return Failure(
        expectation=config.type,
        column=column,
        message=message,
        unexpected_count=details.get("unexpected_count"),
        examples=_examples(details),
    )


# --------------------------------------------------------------------------------------------
# Running the suite.
# --------------------------------------------------------------------------------------------


def _gx_context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


@contextmanager
def _quiet_gx_logging() -> Iterator[None]:
    """Mute INFO logging while GX runs: hundreds of registry lines would bury the report."""
    # GX modules set their own loggers to INFO on import, so levels cannot be preset;
    # logging.disable is process-wide but only for the duration of the run.
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def _run_suite(
    frame: pd.DataFrame, expectations: list[Any], report_dir: Path | None
) -> tuple[list[Any], dict[str, Any]]:
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    context = _gx_context()
    batch_definition = (
        context.data_sources.add_pandas("parcelrisk")
        .add_dataframe_asset("declarations")
        .add_batch_definition_whole_dataframe("whole_file")
    )
    # Build the suite before adding it: add_expectation on a stored suite re-serialises the
    # whole suite each time (quadratic, seconds for a hundred expectations).
    suite = context.suites.add(
        gx.ExpectationSuite(name="declaration_contract", expectations=expectations)
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="declarations_gate", data=batch_definition, suite=suite)
    )
    actions = []
    if report_dir is not None:
        report_dir = Path(report_dir).resolve()
        report_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            "parcelrisk",
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(report_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(UpdateDataDocsAction(name="data_docs", site_names=["parcelrisk"]))
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": MAX_EXAMPLES,
    }
    if ID_COLUMN in frame.columns:
        result_format["unexpected_index_column_names"] = [ID_COLUMN]
    batch_parameters = {"dataframe": frame}
    if not actions:
        # Without a report the checkpoint adds nothing but its freshness bookkeeping (~0.4 s).
        validation = definition.run(batch_parameters=batch_parameters, result_format=result_format)
        return list(validation.results), dict(validation.statistics)
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="declarations_gate",
            validation_definitions=[definition],
            actions=actions,
            result_format=result_format,
        )
    )
    run = checkpoint.run(batch_parameters=batch_parameters)
    (validation,) = run.run_results.values()
    return list(validation.results), dict(validation.statistics)


def validate_declarations(
    df: pd.DataFrame,
    contract: Contract | None = None,
    *,
    report_dir: Path | None = None,
    now: datetime | None = None,
) -> ValidationResult:
    """Run the gate on a frame (raw text or canonical dtypes); ``df`` is never modified.

    ``now`` fixes the upper bound of plausible timestamps (default: the current time).
    """
    contract = contract or Contract()
    fields = _expected_fields(df)
    with_outcomes = any(f.scope == "outcome" for f in fields)
    canonical, failures, usable = _prepare(df, contract)
    frame = _add_helper_columns(canonical, usable)
    with _quiet_gx_logging():
        expectations = build_expectations(fields, contract, usable, with_outcomes, now)
        results, stats = _run_suite(frame, expectations, report_dir)
    failures += [_failure_from(r) for r in results if not r.success]
    stats = {
        "rows": len(df),
        "with_outcomes": with_outcomes,
        **stats,
        "conversion_checks_failed": sum(f.expectation.startswith("convert_to") for f in failures),
    }
    return ValidationResult(success=not failures, failures=failures, statistics=stats)


def validate_file(path: Path, report_dir: Path | None = None) -> ValidationResult:
    """Validate a declarations file; write Data Docs HTML under ``report_dir`` when given."""
    raw, contract = read_raw_declarations(path)  # as it is: the gate reports what is wrong
    result = validate_declarations(raw, contract, report_dir=report_dir)
    logger.info(
        "validated %s: %s (%d failure(s))",
        path,
        "ok" if result.success else "INVALID",
        len(result.failures),
    )
    return result
