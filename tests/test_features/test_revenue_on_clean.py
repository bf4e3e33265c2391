"""Revenue recovered from a parcel found clean is one fault wherever it enters: a history file
through the gate and a results file through ``outcomes`` give the same verdict and message;
the 0 that exports write for "nothing recovered" passes both."""

from __future__ import annotations

import pandas as pd

from features.intake.rules import Limits
from features.intake.validation import check_declarations
from features.params import load_settings
from tests.test_features.test_contract import make_declarations

LIMITS = Limits.from_settings(load_settings(None))


def _faults(frame: pd.DataFrame) -> dict[int, list[str]]:
    result, _ = check_declarations(frame, None, LIMITS)
    return result.findings.messages_by_row("fault")


def _clean_inspected_row(frame: pd.DataFrame) -> int:
    clean = frame.index[frame["inspected"].eq(True) & frame["illicit"].eq(False)]
    return int(clean[0])


def test_revenue_on_a_clean_parcel_is_a_fault_of_a_history_file() -> None:
    frame = make_declarations()
    row = _clean_inspected_row(frame)
    frame.loc[row, "revenue_recovered"] = 290.0
    assert _faults(frame)[row] == [
        "revenue_recovered: 290 EUR is recorded but the parcel was not found illicit"
    ]


def test_zero_revenue_on_a_clean_parcel_passes() -> None:
    frame = make_declarations()
    frame.loc[_clean_inspected_row(frame), "revenue_recovered"] = 0.0
    assert not _faults(frame)


def test_a_currency_that_is_no_iso_code_is_a_fault_with_the_code_to_write() -> None:
    frame = make_declarations()
    frame.loc[1, "currency"] = "RMB"
    frame.loc[2, "currency"] = "ABC"
    faults = _faults(frame)
    assert faults[1] == ["currency: 'RMB' is not an ISO 4217 currency code (write CNY)"]
    assert faults[2] == ["currency: 'ABC' is not an ISO 4217 currency code"]


def test_the_api_refuses_it_with_the_same_message() -> None:
    from features.intake.contract import Declaration
    from features.intake.rules import check_records, rules_for

    row = make_declarations(with_outcomes=False).iloc[0].to_dict()
    row |= {"currency": "RMB", "declared_at": "2026-05-01T10:00:00Z"}
    model = Declaration.model_validate({k: v for k, v in row.items() if v == v})
    findings = check_records([model], None, rules_for(LIMITS, with_outcomes=False))
    assert findings.messages_by_row("fault")[0] == [
        "currency: 'RMB' is not an ISO 4217 currency code (write CNY)"
    ]
