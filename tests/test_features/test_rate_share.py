"""Currencies without an exchange rate: a few parcels are a warning (their valuation features
are empty), a share of the file above validate.max_share_without_rate is a fault, in the
whole-file gate and in the gate that reads a large file in chunks alike."""

from __future__ import annotations

import dataclasses

import pandas as pd

from features.intake.rules import Limits
from features.intake.validation import check_declarations, check_parquet_in_chunks
from features.params import load_settings
from tests.test_features.test_contract import make_declarations

LIMITS = dataclasses.replace(Limits.from_settings(load_settings(None)), max_share_without_rate=0.1)


def _frame(n: int, without_rate: int) -> pd.DataFrame:
    frame = pd.concat([make_declarations(n=10)] * (n // 10), ignore_index=True)
    frame["declaration_id"] = [f"D{i}" for i in range(len(frame))]
    frame.loc[len(frame) - without_rate :, "currency"] = "MNT"  # ISO 4217, not in the table
    return frame


def test_a_few_rows_without_a_rate_are_a_warning() -> None:
    result, _ = check_declarations(_frame(1000, 100), None, LIMITS)
    assert not result.findings.faults
    assert [f.rule.name for f in result.findings.warnings] == ["currency.rate"]


def test_a_handful_of_rows_is_a_warning_in_a_small_file_too() -> None:
    """49 of 100 rows: far above the share, but too few to be a missing table."""
    result, _ = check_declarations(_frame(100, 49), None, LIMITS)
    assert not result.findings.faults


def test_a_share_above_the_limit_is_a_fault_naming_the_currency_and_the_fix() -> None:
    result, _ = check_declarations(_frame(1000, 110), None, LIMITS)
    (fault,) = result.findings.faults
    assert fault.rule.name == "currency.rate_share" and fault.count == 110
    assert fault.messages()[0] == (
        "currency: 'MNT' has no exchange rate to EUR, nor has 11.0% of the file (MNT (110)): "
        "add the rates to features.fx_to_base in params.yaml"
    )
    assert "at most 10% of the rows" in fault.rule.requires


def test_the_chunked_gate_judges_the_share_of_the_whole_file(tmp_path) -> None:
    """All the rows without a rate in the last chunk: 100% of it, 11% of the file."""
    from features.intake.io import write_declarations

    path = tmp_path / "history.parquet"
    write_declarations(_frame(1000, 110), path)
    result = check_parquet_in_chunks(path, LIMITS, chunk_rows=200)
    assert [f.rule.name for f in result.findings.faults] == ["currency.rate_share"]
    assert result.findings.faults[0].count == 110
    fewer = tmp_path / "fewer.parquet"
    write_declarations(_frame(1000, 100), fewer)
    assert not check_parquet_in_chunks(fewer, LIMITS, chunk_rows=200).findings.faults
