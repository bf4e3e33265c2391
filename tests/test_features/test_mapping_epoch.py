"""Unix times in an export: ``format: epoch_s`` / ``epoch_ms``, UTC by definition."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.intake.contract import ContractError
from features.intake.draft import draft_mapping, read_for_draft
from features.intake.ingest import ingest_file

MAPPING = """\
columns:
  declaration_id: id
  declared_at: {column: lodged_at, format: FORMAT}
  arrival_office: {value: FR01}
  channel: {value: postal}
  hs_code: hs
  declared_value: value
  currency: {value: EUR}
  gross_weight_kg: {value: 0.5}
  origin_country: {value: CN}
"""
JAN_1_2026 = 1_767_225_600  # 2026-01-01 00:00:00 UTC


def _ingest(tmp_path: Path, stamps: list[str], fmt: str) -> pd.DataFrame:
    source = tmp_path / "export.csv"
    rows = [f"E{i},{t},61091000,12.5" for i, t in enumerate(stamps)]
    source.write_text("id,lodged_at,hs,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.replace("FORMAT", fmt), encoding="utf-8")
    ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    return pd.read_parquet(tmp_path / "out.parquet")


@pytest.mark.parametrize(
    ("fmt", "stamps"),
    [
        ("epoch_s", [str(JAN_1_2026), str(JAN_1_2026 + 90), ""]),
        ("epoch_ms", [str(JAN_1_2026 * 1000), str(JAN_1_2026 * 1000 + 90_123), ""]),
    ],
)
def test_unix_times_are_read_as_utc_to_the_unit_given(tmp_path, fmt, stamps, caplog) -> None:
    caplog.set_level(logging.WARNING)
    got = _ingest(tmp_path, stamps, fmt)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    assert got["declared_at"].iloc[0] == start
    assert got["declared_at"].iloc[1] == start + pd.Timedelta(
        seconds=90 if fmt == "epoch_s" else 90.123
    )
    assert pd.isna(got["declared_at"].iloc[2])
    assert "read as UTC" not in caplog.text  # Unix times are UTC: no zone to warn about


@pytest.mark.parametrize(
    ("fmt", "stamp"),
    [("epoch_s", str(JAN_1_2026 * 1000)), ("epoch_ms", str(JAN_1_2026)), ("epoch_s", "12:00")],
)
def test_numbers_outside_1990_2100_in_the_unit_are_refused_naming_the_unit(
    tmp_path, fmt, stamp
) -> None:
    unit = "seconds" if fmt == "epoch_s" else "milliseconds"
    with pytest.raises(ContractError, match=f"not Unix times in {unit}.*row 1 \\(E0\\)"):
        _ingest(tmp_path, [stamp], fmt)


def test_the_draft_reads_a_date_column_of_unix_times(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [f"E{i},{(JAN_1_2026 + i * 3600) * 1000},61091000,12.5" for i in range(10)]
    source.write_text("id,lodged_at,hs,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    raw, reading = read_for_draft(source)
    columns = yaml.safe_load(draft_mapping(raw, **reading).text)["columns"]
    assert columns["declared_at"] == {"column": "lodged_at", "format": "epoch_ms"}
