"""The declaration rules as a Great Expectations suite: an independent cross-check and an artefact.

``features.intake.rules`` is the gate (it runs per file and per API request). ``parcelrisk validate``
also compiles the same rules into built-in GX expectations (regex, value sets, bounds, nulls
under a row condition, uniqueness, column pairs), each tagged with its rule name and severity
(``critical`` for faults, ``warning`` for warnings), runs them on the canonical frame and
compares GX's unexpected counts with the gate's, rule by rule. A disagreement is a bug in one
of the two and is shown in the report. The suite and GX's result are saved beside the report,
so a data team can run the same checks in its own GX deployment upstream. Both files hold no
run time and no random id (``stable_artefacts``): the same data under the same rules writes
the same bytes, which DVC and an auditor compare.

Great Expectations is imported here only (about 4 s), never by the pipeline stages.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.intake.columns import FrameColumns
from features.intake.contract import (
    EARLIEST_DECLARATION,
    FIELDS,
    MAX_CLOCK_SKEW_DAYS,
    OUTCOME_FIELDS,
)
from features.intake.io import atomic_write
from features.intake.iso4217 import ISO_4217
from features.intake.rules import Limits, check, rules_for

if TYPE_CHECKING:
    import pandas as pd

    from features.intake.validation import GateResult

logger = logging.getLogger(__name__)

_INSPECTED = "_inspected"
_NOT_INSPECTED = "_not_inspected"
_NOT_ILLICIT = "_not_illicit"
_VALUE_BASE = "_declared_value_base"
_REVENUE_BASE = "_revenue_recovered_base"
_CURRENCY_ISO = "_currency_iso"  # the currency where it is an ISO 4217 code, else empty
_FINITE = 1.7e308
SUITE_NAME = "parcelrisk_declaration_rules"
# The "not in the future" bound moves with the clock: a suite parameter, given at each run
# (now plus the clock skew), keeps it out of the saved suite and lets a data team reuse it.
LATEST_PARAMETER = "latest_plausible_timestamp"
# GX values that describe one run, not the check: dropped from the saved result
_RUN_META = ("run_id", "validation_id", "validation_time", "checkpoint_id")


def latest_plausible(now: datetime | None = None) -> datetime:
    """The latest timestamp the "not in the future" rules accept: now plus the clock skew."""
    return (now or datetime.now(UTC)) + timedelta(days=MAX_CLOCK_SKEW_DAYS)


def build_suite(present: set[str], limits: Limits, with_outcomes: bool) -> list[Any]:
    """GX expectations for the rules of the fields in ``present``; meta ``rule`` names each.

    The "not in the future" bounds read the suite parameter ``LATEST_PARAMETER``.
    """
    import great_expectations.expectations as gxe

    earliest = datetime.fromisoformat(EARLIEST_DECLARATION)
    latest = {"$PARAMETER": LATEST_PARAMETER}
    out: list[Any] = []

    def add(rule: str, severity: str, expectation: type, **kwargs: Any) -> None:
        sev = "critical" if severity == "fault" else "warning"
        out.append(expectation(**kwargs, meta={"rule": rule}, severity=sev))

    for f in FIELDS:
        if f.name not in present or (f.scope == "outcome" and not with_outcomes):
            continue
        col = f.name
        if not f.nullable:
            add(f"{col}.required", "fault", gxe.ExpectColumnValuesToNotBeNull, column=col)
        if f.kind in ("str", "category"):
            if f.max_length:
                add(
                    f"{col}.length",
                    "fault",
                    gxe.ExpectColumnValueLengthsToBeBetween,
                    column=col,
                    max_value=f.max_length,
                )
            if f.pattern:
                regex = f.pattern if f.pattern.endswith("$") else f.pattern + "$"
                add(
                    f"{col}.format",
                    "fault",
                    gxe.ExpectColumnValuesToMatchRegex,
                    column=col,
                    regex=regex,
                )
            if f.allowed:
                add(
                    f"{col}.code",
                    "fault",
                    gxe.ExpectColumnValuesToBeInSet,
                    column=col,
                    value_set=list(f.allowed),
                )
        if f.kind in ("int", "float"):
            add(
                f"{col}.finite",
                "fault",
                gxe.ExpectColumnValuesToBeBetween,
                column=col,
                min_value=-_FINITE,
                max_value=_FINITE,
            )
            if f.min_value is not None:
                add(
                    f"{col}.minimum",
                    "fault",
                    gxe.ExpectColumnValuesToBeBetween,
                    column=col,
                    min_value=f.min_value,
                )
        if f.kind == "datetime":
            add(
                f"{col}.not_before",
                "fault",
                gxe.ExpectColumnValuesToBeBetween,
                column=col,
                min_value=earliest,
            )
            add(
                f"{col}.not_future",
                "fault",
                gxe.ExpectColumnValuesToBeBetween,
                column=col,
                max_value=latest,
            )

    if "gross_weight_kg" in present:
        add(
            "gross_weight_kg.zero",
            "warning",
            gxe.ExpectColumnValuesToNotBeInSet,
            column="gross_weight_kg",
            value_set=[0.0],
        )
        add(
            "gross_weight_kg.plausible",
            "warning",
            gxe.ExpectColumnValuesToBeBetween,
            column="gross_weight_kg",
            max_value=limits.max_weight_kg,
        )
    if "currency" in present:
        add(
            "currency.rate",
            "warning",
            gxe.ExpectColumnValuesToBeInSet,
            # a code that is none (`<svg>`, `R$`) is currency.format's; as the rule, the rate
            # is asked of ISO codes only, or the cross-check "disagreed" on it (probe 20)
            column=_CURRENCY_ISO,
            value_set=sorted(limits.fx_to_base),
        )
    if {"currency", "declared_value"} <= present:
        add(
            "declared_value.plausible",
            "warning",
            gxe.ExpectColumnValuesToBeBetween,
            column=_VALUE_BASE,
            max_value=limits.max_value,
        )
    if "quantity" in present:
        add(
            "quantity.plausible",
            "warning",
            gxe.ExpectColumnValuesToBeBetween,
            column="quantity",
            max_value=limits.max_quantity,
        )
    if with_outcomes and "revenue_recovered" in present:
        add(
            "revenue_recovered.plausible",
            "fault",
            gxe.ExpectColumnValuesToBeBetween,
            column=_REVENUE_BASE,
            max_value=limits.revenue_bound,
        )
    if "declaration_id" in present:
        add(
            "declaration_id.unique",
            "fault",
            gxe.ExpectColumnValuesToBeUnique,
            column="declaration_id",
        )
    if with_outcomes and "inspected" in present:
        condition = {"condition_parser": "pandas"}
        for f in OUTCOME_FIELDS:
            if f.name == "inspected" or f.name not in present:
                continue
            add(
                f"{f.name}.without_inspection",
                "fault",
                gxe.ExpectColumnValuesToBeNull,
                column=f.name,
                row_condition=f"{_NOT_INSPECTED} == True",
                **condition,
            )
        for name in ("inspected_at", "illicit"):
            if name in present:
                add(
                    f"{name}.when_inspected",
                    "fault",
                    gxe.ExpectColumnValuesToNotBeNull,
                    column=name,
                    row_condition=f"{_INSPECTED} == True",
                    **condition,
                )
        if {"inspected_at", "declared_at"} <= present:
            add(
                "inspected_at.after_declaration",
                "fault",
                gxe.ExpectColumnPairValuesAToBeGreaterThanB,
                column_A="inspected_at",
                column_B="declared_at",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            )
        if {"result_known_at", "inspected_at"} <= present:
            add(
                "result_known_at.after_result",
                "warning",
                gxe.ExpectColumnPairValuesAToBeGreaterThanB,
                column_A="result_known_at",
                column_B="inspected_at",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            )
        if {"offence_type", "illicit"} <= present:
            add(
                "offence_type.without_offence",
                "fault",
                gxe.ExpectColumnValuesToBeNull,
                column="offence_type",
                row_condition=f"{_NOT_ILLICIT} == True",
                **condition,
            )
    return out


def _helper_columns(frame: pd.DataFrame, limits: Limits) -> pd.DataFrame:
    """Columns the conditions and the base-currency bound read (not part of the data)."""
    frame = frame.copy()
    inspected = (
        frame["inspected"].eq(True).fillna(False).astype(bool) if "inspected" in frame else None
    )
    if inspected is not None:
        frame[_INSPECTED] = inspected
        frame[_NOT_INSPECTED] = ~inspected
    if "illicit" in frame:
        frame[_NOT_ILLICIT] = frame["illicit"].eq(False).fillna(False).astype(bool)
    # as the rule judges it: a currency without a rate at the table's weakest one
    rates = frame["currency"].map(limits.fx_to_base).astype("float64").fillna(limits.weakest_rate)
    frame[_VALUE_BASE] = frame["declared_value"].astype("float64") * rates
    currency = frame["currency"].astype("object")
    frame[_CURRENCY_ISO] = currency.where(currency.isin(ISO_4217), None)
    if "revenue_recovered" in frame:
        # EUR (the contract's unit) to the base currency; an infinite one is the finite rule's
        revenue = frame["revenue_recovered"].astype("float64") * limits.fx_to_base.get(
            "EUR", np.nan
        )
        frame[_REVENUE_BASE] = revenue.where(np.isfinite(revenue))
    return frame


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


def run_suite(
    frame: pd.DataFrame, expectations: list[Any], now: datetime | None = None
) -> tuple[Any, Any]:
    """Run ``expectations`` on ``frame`` with ``now``'s bound; returns (suite, GX's result)."""
    import great_expectations as gx

    context = _gx_context()
    batch_definition = (
        context.data_sources.add_pandas("parcelrisk")
        .add_dataframe_asset("declarations")
        .add_batch_definition_whole_dataframe("whole_file")
    )
    # Build the suite before adding it: add_expectation on a stored suite re-serialises the
    # whole suite each time (quadratic, seconds for a hundred expectations).
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="declarations_gate", data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters={LATEST_PARAMETER: latest_plausible(now)},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
    )
    return suite, result


# GX quotes unexpected values whole (``partial_unexpected_list``): a 200 MB id made a 400 MB
# validation_result.json (probe 34). The saved copy cuts every text to this many characters.
SAVED_TEXT_CHARS = 200


def _cut_texts(value: Any) -> Any:
    """``value`` (GX's result as JSON-ready data) with every text cut to ``SAVED_TEXT_CHARS``."""
    if isinstance(value, str):
        return value if len(value) <= SAVED_TEXT_CHARS else value[: SAVED_TEXT_CHARS - 3] + "..."
    if isinstance(value, dict):
        return {key: _cut_texts(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_texts(item) for item in value]
    return value


def stable_artefacts(
    suite: dict[str, Any], result: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The suite and GX's result as saved: what was checked and found, nothing of the run.

    GX draws random ids for the suite and each expectation and stamps the result with the
    run's clock and ids; ``LATEST_PARAMETER`` is resolved in the result. The saved copies get
    ids derived from the suite and rule names (still UUIDs, so GX reads them back), the
    parameter in place of its value and no run metadata, so they change only when the data or
    the rules do. ``validate`` prints the time of the check instead.
    """
    suite = json.loads(json.dumps(suite, default=str))
    result = json.loads(json.dumps(_cut_texts(result), default=str))
    name = suite.get("name") or SUITE_NAME
    ids = {suite.get("id"): str(uuid.uuid5(uuid.NAMESPACE_URL, f"parcelrisk/{name}"))}
    parameters: dict[str, dict[str, Any]] = {}
    for position, expectation in enumerate(suite.get("expectations", [])):
        rule = (expectation.get("meta") or {}).get("rule") or str(position)
        ids[expectation.get("id")] = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"parcelrisk/{name}/{rule}")
        )
        parameters[ids[expectation.get("id")]] = {
            key: value
            for key, value in expectation.get("kwargs", {}).items()
            if isinstance(value, dict) and "$PARAMETER" in value
        }
    for item in [suite, *suite.get("expectations", [])]:
        item["id"] = ids.get(item.get("id"), item.get("id"))
    for item in result.get("results", []):
        config = item.get("expectation_config") or {}
        config["id"] = ids.get(config.get("id"), config.get("id"))
        config.get("kwargs", {}).update(parameters.get(config["id"], {}))
    meta = result.get("meta") or {}
    for key in _RUN_META:
        meta.pop(key, None)
    (meta.get("batch_markers") or {}).pop("ge_load_time", None)
    result.pop("id", None)
    return suite, result


def cross_check_with_gx(
    canonical: pd.DataFrame,
    result: GateResult,
    limits: Limits,
    *,
    report_dir: Path | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run the rules as a GX suite; compare its unexpected counts with the gate's, by rule."""
    present = {c for c in canonical.columns if c in {f.name for f in FIELDS}}
    try:
        with _quiet_gx_logging():
            expectations = build_suite(present, limits, result.with_outcomes)
            suite, validation = run_suite(_helper_columns(canonical, limits), expectations, now)
    except Exception as exc:  # the cross-check must never take the gate down with it
        logger.exception("Great Expectations cross-check failed")
        return {"error": f"{type(exc).__name__}: {exc}"}
    gx_counts: dict[str, int] = {}
    errors = []
    for item in validation.results:
        rule = (item.expectation_config.meta or {}).get("rule")
        if item.exception_info and item.exception_info.get("raised_exception"):
            errors.append(f"{rule}: {item.exception_info.get('exception_message')}")
            continue
        gx_counts[rule] = int((item.result or {}).get("unexpected_count") or 0)
    # The gate skips a field's other rules on values that did not convert; GX sees them as
    # nulls. Compare with the rules run without that skip.
    ours = check(
        FrameColumns(canonical), rules_for(limits, with_outcomes=result.with_outcomes, now=now)
    )
    our_counts = {f.rule.name: f.count for f in ours.items}
    if "declaration_id.unique" in gx_counts:
        dup = [f for f in result.findings.items if f.rule.name == "declaration_id.unique"]
        our_counts["declaration_id.unique"] = dup[0].count if dup else 0
    disagreements = [
        {"rule": rule, "parcelrisk": our_counts.get(rule, 0), "great_expectations": count}
        for rule, count in sorted(gx_counts.items())
        if our_counts.get(rule, 0) != count
    ]
    if disagreements:
        logger.error("Great Expectations disagrees with the gate: %s", disagreements)
    if report_dir is not None:
        out = Path(report_dir) / "great_expectations"
        out.mkdir(parents=True, exist_ok=True)
        saved_suite, saved_result = stable_artefacts(
            suite.to_json_dict(), validation.to_json_dict()
        )
        suite_json = json.dumps(saved_suite, indent=1)
        result_json = json.dumps(saved_result, indent=1)
        atomic_write(out / "expectation_suite.json", lambda tmp: tmp.write_text(suite_json))
        atomic_write(out / "validation_result.json", lambda tmp: tmp.write_text(result_json))
    return {
        "compared": len(gx_counts),
        "counts": gx_counts,
        "disagreements": disagreements,
        "errors": errors,
        "success": bool(validation.success),
        "evaluated_expectations": int(validation.statistics.get("evaluated_expectations", 0)),
        "nonzero_counts": int(np.count_nonzero(list(gx_counts.values()))),
    }
