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
