"""Inspection results at the edges of what is stored: the clock-skew allowance of a result's
time, and a revenue recovered that is not a finite, non-negative, plausible amount."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from features.intake.contract import MAX_CLOCK_SKEW_DAYS
from features.intake.rules import Limits
from features.params import FeatureParams, ValidateParams
from serving.outcomes import OutcomesRefused, check_outcomes

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DECLARED_AT_US = {"D1": int(datetime(2026, 5, 1, tzinfo=UTC).timestamp()) * 1_000_000}
MAX_VALUE = ValidateParams().max_value  # params.yaml validate.max_value, EUR by default


def _check(limits: Limits | None = None, **changes) -> pd.DataFrame:
    row = {
        "declaration_id": "D1",
        "inspected_at": "2026-05-03T09:00:00Z",
        "illicit": True,
        "offence_type": "undervaluation",
        "revenue_recovered": 12.5,
        **changes,
    }
    raw = pd.DataFrame([row], dtype="object")
    return check_outcomes(raw, DECLARED_AT_US, {}, now=NOW, limits=limits).new


def _refusal(limits: Limits | None = None, **changes) -> tuple[set[str], str]:
    """The rules the one result broke, and the refusal's message."""
    with pytest.raises(OutcomesRefused) as refused:
        _check(limits, **changes)
    return {problem.rule for problem in refused.value.problems}, str(refused.value)


# --- not in the future, within the clock skew -------------------------------------------------


def test_a_result_dated_up_to_the_clock_skew_ahead_is_stored() -> None:
    at = NOW + timedelta(days=MAX_CLOCK_SKEW_DAYS)
    stored = _check(inspected_at=at.isoformat())
    assert stored["inspected_at"].tolist() == [pd.Timestamp(at)]


def test_a_result_dated_past_the_clock_skew_is_refused_saying_the_allowance() -> None:
    at = NOW + timedelta(days=MAX_CLOCK_SKEW_DAYS, microseconds=1)
    rules, message = _refusal(inspected_at=at.isoformat())
    assert rules == {"inspected_at.not_future"}
    assert (
        "inspected_at: 2026-06-03T00:00:00Z is in the future (later than 2026-06-03T00:00:00Z: "
        f"now plus {MAX_CLOCK_SKEW_DAYS} days of clock skew)"
    ) in message


# --- revenue recovered: finite, non-negative, plausible ----------------------------------------


@pytest.mark.parametrize(
    ("revenue", "rule", "says"),
    [
        (1e300, "revenue_recovered.plausible", "1e+300 EUR is above the plausible 100,000 EUR"),
        ("1e300", "revenue_recovered.plausible", "1e+300 EUR is above the plausible"),
        (MAX_VALUE + 0.01, "revenue_recovered.plausible", "100000.01 EUR is above"),
        (float("inf"), "revenue_recovered.finite", "revenue_recovered: inf is not a finite"),
        ("-inf", "revenue_recovered.finite", "revenue_recovered: -inf is not a finite"),
        (-1.0, "revenue_recovered.minimum", "revenue_recovered: -1 EUR is negative"),
    ],
)
def test_a_revenue_that_cannot_be_right_is_refused_naming_field_and_value(
    revenue, rule, says
) -> None:
    rules, message = _refusal(revenue_recovered=revenue)
    assert rule in rules
    assert says in message and "nothing stored" in message and "\n" not in message


def test_a_revenue_up_to_the_plausible_limit_is_stored() -> None:
    assert _check(revenue_recovered=MAX_VALUE)["revenue_recovered"].tolist() == [MAX_VALUE]


def test_the_limit_is_the_gates_validate_max_value_in_the_base_currency() -> None:
    """One source of truth: params.yaml ``validate.max_value``, converted as declared values are
    (the limit in the base currency, the revenue in EUR)."""
    features = FeatureParams(base_currency="GBP", fx_to_base={"GBP": 1.0, "EUR": 0.8})
    limits = Limits.from_params({"max_value": 1000}, features)
    assert _check(limits, revenue_recovered=1250.0)["revenue_recovered"].tolist() == [1250.0]
    rules, message = _refusal(limits, revenue_recovered=1250.01)
    assert rules == {"revenue_recovered.plausible"}
    assert "1250.01 EUR is above the plausible 1,000 GBP (validate.max_value)" in message
