"""A description longer than the contract's 1,024 characters (the gate's ``description.length``
fault) was written by ``ingest`` with exit 0 and no word, then ``validate``, ``features build``
and ``score`` refused the whole file (probe 38). Ingest now applies the length rule as it
applies the gate's identifier rules: the row is refused by number without ``--quarantine`` and
set aside with it; joined item texts are held to the limit too."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import FIELDS_BY_NAME, ContractError
from features.intake.ingest import ingest_file
from features.intake.mapping import REJECTED_REASONS, REJECTED_ROW
from features.intake.rules import Limits
from features.intake.validation import validate_file
from features.params import load_settings

LIMIT = FIELDS_BY_NAME["description"].max_length

MAPPING = """\
columns:
  declaration_id: ID
  declared_at: {column: AT, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
  arrival_office: {value: FR01}
  channel: {value: postal}
  seller_id: SELLER
  consignee_id: BUYER
  hs_code: HS
  declared_value: {column: VAL, decimal: ","}
  currency: {value: EUR}
  gross_weight_kg: {column: KG, decimal: ","}
  origin_country: {column: PAYS, country_codes: alpha3}
  description: DESC
"""
ROWS = 60


def _passes_the_gate(path: Path) -> bool:
    limits = Limits.from_settings(load_settings(None))
    return validate_file(path, limits, cross_check=False).success


def _export(tmp_path: Path, **cells: tuple[int, str]) -> Path:
    """A clean export of ROWS rows, with ``cells`` (column: (row, value)) written over it."""
    frame = pd.DataFrame(
        {
            "ID": [f"D{i}" for i in range(ROWS)],
            "AT": ["02/01/2026 10:00"] * ROWS,
            "SELLER": [f"S{i % 7}" for i in range(ROWS)],
            "BUYER": [f"C{i % 11}" for i in range(ROWS)],
            "HS": ["610910"] * ROWS,
            "VAL": ["12,50"] * ROWS,
            "KG": ["0,5"] * ROWS,
            "PAYS": ["CHN"] * ROWS,
            "DESC": ["cotton t-shirt"] * ROWS,
        }
    )
    for column, (row, value) in cells.items():
        frame.loc[row, column] = value
    path = tmp_path / "export.csv"
    frame.to_csv(path, sep=";", index=False)
    return path


def _ingest(tmp_path: Path, source: Path, mapping: str = MAPPING, **options) -> dict:
    path = tmp_path / "mapping.yaml"
    path.write_text(mapping, encoding="utf-8")
    out = tmp_path / "out.parquet"
    return ingest_file(source=source, mapping_path=path, out=out, **options)


def test_a_description_at_the_limit_is_ingested_and_passes_the_gate(tmp_path) -> None:
    source = _export(tmp_path, DESC=(4, "a" * LIMIT))
    assert _ingest(tmp_path, source)["rows"] == ROWS
    assert _passes_the_gate(tmp_path / "out.parquet")


def test_a_longer_description_is_refused_naming_the_row_the_field_and_the_limit(
    tmp_path,
) -> None:
    source = _export(tmp_path, DESC=(4, ("gift " * 206).strip()))  # 1,029 characters
    with pytest.raises(ContractError) as refused:
        _ingest(tmp_path, source)
    said = str(refused.value)
    assert "description (source column 'DESC')" in said
    assert "longer than 1,024 characters" in said and "description.length" in said
    assert "row 5 (D4)" in said  # the file's row (after the header), and its declaration
    assert "(1,029 characters)" in said and "gift " * 20 not in said  # its start, not all
    assert not (tmp_path / "out.parquet").exists()


def test_with_quarantine_the_row_is_set_aside_with_that_reason(tmp_path) -> None:
    source = _export(tmp_path, DESC=(4, "x" * (LIMIT + 1)))
    summary = _ingest(tmp_path, source, quarantine=tmp_path / "rejected.csv", max_rejected=0.05)
    assert summary["rows"] == ROWS - 1
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str, keep_default_na=False)
    assert rejected[REJECTED_ROW].tolist() == ["5"]
    assert rejected["DESC"].iloc[0] == "x" * (LIMIT + 1)  # the source's cell, as written
    assert "longer than 1,024 characters" in rejected[REJECTED_REASONS].iloc[0]
    assert _passes_the_gate(tmp_path / "out.parquet")  # what was written passes the gate


def test_other_text_fields_are_held_to_their_limits_too(tmp_path) -> None:
    """The seller's id (64 characters) was written too; a consignee's over-long id stopped a
    quarantined ingest whole, as its check came after the rows were set aside."""
    seller = FIELDS_BY_NAME["seller_id"].max_length
    with pytest.raises(ContractError, match=rf"seller_id .*longer than {seller} characters"):
        _ingest(tmp_path, _export(tmp_path, SELLER=(2, "S" * (seller + 1))))
    source = _export(tmp_path, BUYER=(3, "Jan Kowalski " * 6))
    summary = _ingest(tmp_path, source, quarantine=tmp_path / "rejected.csv", max_rejected=0.05)
    assert summary["rows"] == ROWS - 1
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str, keep_default_na=False)
    reason = rejected[REJECTED_REASONS].iloc[0]
    assert "consignee_id" in reason and "Kowalski" not in reason  # a person's: not shown


ITEMS_MAPPING = MAPPING + "items:\n  declared_value: sum\n  gross_weight_kg: agree\n"


def _items_export(tmp_path: Path) -> Path:
    """D0 of three items whose texts (500 characters each) joined exceed the limit; D1 of
    one item."""
    rows = [
        f"D0;02/01/2026 10:00;S1;C1;610910;5,00;0,5;CHN;{word * 100}"
        for word in ("blue ", "grey ", "pink ")
    ]
    rows.append("D1;02/01/2026 11:00;S2;C2;950300;9,00;0,2;CHN;toy car")
    path = tmp_path / "items.csv"
    header = "ID;AT;SELLER;BUYER;HS;VAL;KG;PAYS;DESC"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_item_texts_joined_beyond_the_limit_are_refused_naming_the_declaration(
    tmp_path,
) -> None:
    with pytest.raises(ContractError) as refused:
        _ingest(tmp_path, _items_export(tmp_path), ITEMS_MAPPING)
    said = str(refused.value)
    assert "description: the items' texts joined by ' | '" in said
    assert "longer than 1,024 characters" in said
    assert "D0 (rows 1, 2, 3)" in said and "items: description: principal" in said


def test_item_texts_joined_beyond_the_limit_are_set_aside_with_quarantine(tmp_path) -> None:
    summary = _ingest(
        tmp_path,
        _items_export(tmp_path),
        ITEMS_MAPPING,
        quarantine=tmp_path / "rejected.csv",
        max_rejected=1.0,
    )
    assert summary["rows"] == 1
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str, keep_default_na=False)
    assert rejected["ID"].tolist() == ["D0", "D0", "D0"]
    assert "description" in rejected[REJECTED_REASONS].iloc[0]


def test_one_items_text_kept_whole_is_within_the_limit(tmp_path) -> None:
    mapping = ITEMS_MAPPING + "  description: principal\n"
    assert _ingest(tmp_path, _items_export(tmp_path), mapping)["rows"] == 2
