"""Absurd amounts at the gate: a recovered revenue is a training label, refused above
``validate.max_value`` in a history file as the results' checker refuses it from an inspector;
a declared value that overflows in the base currency is warned (kept, by design), quietly."""

from __future__ import annotations

import warnings

import pandas as pd

from features.intake.io import write_declarations
from features.intake.rules import Limits
from features.intake.validation import check_declarations, validate_file
from features.params import FeatureParams
from tests.test_features.test_contract import EXTRAS, make_declarations

LIMITS = Limits.from_params({}, FeatureParams())


def _history(revenue: float) -> pd.DataFrame:
    history = make_declarations()  # row 0: inspected, found illicit, 8.4 EUR recovered
    history.loc[0, "revenue_recovered"] = revenue
    return history


def test_a_history_with_an_absurd_revenue_is_refused_naming_row_and_value() -> None:
    result = check_declarations(_history(1e300), EXTRAS, LIMITS)[0]
    (fault,) = result.findings.faults
    assert fault.rule.name == "revenue_recovered.plausible"
    assert fault.rows.tolist() == [0]
    assert fault.messages() == [
        "revenue_recovered: 1e+300 EUR is above the plausible 100,000 EUR (validate.max_value): "
        "a unit or decimal error? (if amounts like it are real, as for bulk consignments, "
        "set validate.max_revenue in params.yaml)"
    ]


def test_max_revenue_bounds_revenues_alone() -> None:
    """Raising validate.max_value to let bulk revenues in also relaxed the declared-value
    warning (1,774 warned rows of a DATE-layout file became 22, probe 9), and now the lane
    floor of implausible numbers: validate.max_revenue bounds the revenue alone."""
    limits = Limits.from_params({"max_revenue": 2e6}, FeatureParams())
    history = _history(1.5e6)
    history.loc[1, "declared_value"] = 5e5  # above max_value (100,000): still warned
    result = check_declarations(history, EXTRAS, limits)[0]
    assert result.findings.faults == []
    assert [f.rule.name for f in result.findings.warnings] == ["declared_value.plausible"]
    (fault,) = check_declarations(_history(3e6), EXTRAS, limits)[0].findings.faults
    assert fault.messages()[0].startswith(
        "revenue_recovered: 3000000 EUR is above the plausible 2,000,000 EUR "
        "(validate.max_revenue): "
    )


def test_a_revenue_at_the_limit_passes() -> None:
    result = check_declarations(_history(LIMITS.max_value), EXTRAS, LIMITS)[0]
    assert result.findings.faults == []


# a currency worth more than the base: 1.7e308 of it overflows float64 in the base currency
STRONG = max(LIMITS.fx_to_base, key=LIMITS.fx_to_base.__getitem__)


def _overflowing_value(history: pd.DataFrame, row: int = 1) -> pd.DataFrame:
    assert LIMITS.fx_to_base[STRONG] * 1.7e308 == float("inf")
    history.loc[row, ["declared_value", "currency"]] = [1.7e308, STRONG]
    return history


def test_a_value_overflowing_in_the_base_currency_is_warned_without_numpy_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = check_declarations(_overflowing_value(make_declarations()), EXTRAS, LIMITS)[0]
    assert result.findings.faults == []
    (warning,) = result.findings.warnings
    assert warning.rule.name == "declared_value.plausible" and warning.rows.tolist() == [1]
    assert warning.messages()[0].startswith(f"declared_value: 1.7e+308 {STRONG} (inf EUR) is above")


def test_great_expectations_agrees_on_the_absurd_amounts(tmp_path) -> None:
    history = _overflowing_value(_history(1e300))
    history.loc[2, "revenue_recovered"] = float("inf")  # the finite rule's, not the bound's
    path = tmp_path / "history.parquet"
    write_declarations(history, path, EXTRAS)
    result = validate_file(path, LIMITS)
    cross = result.cross_check
    assert cross is not None and not cross.get("error"), cross
    assert cross["counts"]["revenue_recovered.plausible"] == 1
    assert cross["counts"]["declared_value.plausible"] == 1
    assert cross["disagreements"] == [], cross["disagreements"]


def test_a_value_in_a_currency_without_a_rate_is_judged_at_the_weakest_rate() -> None:
    """1e300 in BTN or XAU (ISO codes without a rate in the table) escaped the bound and the
    lane it raises (probe 10): judged at the table's weakest rate, it is above the bound in
    any currency; an ordinary amount in such a currency is not."""
    history = make_declarations()
    history.loc[1, ["declared_value", "currency"]] = [1e300, "BTN"]
    history.loc[2, ["declared_value", "currency"]] = [5_000.0, "XAU"]
    result = check_declarations(history, EXTRAS, LIMITS)[0]
    (value,) = [f for f in result.findings.warnings if f.rule.name == "declared_value.plausible"]
    assert value.rows.tolist() == [1]
    weakest = 1e300 * LIMITS.weakest_rate
    assert value.messages() == [
        f"declared_value: 1e+300 BTN (no exchange rate to EUR; at least {weakest:.3g} EUR at "
        "any rate) is above the plausible 100,000 EUR"
    ]
    assert LIMITS.weakest_rate == min(LIMITS.fx_to_base.values())


def test_a_weight_above_zero_below_a_gram_is_warned() -> None:
    """1e-300 kg went green unsaid where 0 kg is warned (probe 10): no parcel weighs under a
    gram; a weight in tonnes, or a probe."""
    history = make_declarations()
    history.loc[1, "gross_weight_kg"] = 1e-300
    history.loc[2, "gross_weight_kg"] = 0.001  # a gram: the lightest declared weight
    result = check_declarations(history, EXTRAS, LIMITS)[0]
    (small,) = [f for f in result.findings.warnings if f.rule.name == "gross_weight_kg.small"]
    assert small.rows.tolist() == [1]
    assert small.messages() == [
        "gross_weight_kg: 1e-300 kg is below one gram: a weight in tonnes, or mistyped?"
    ]
