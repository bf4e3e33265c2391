"""How an export writes a value, read as the value: Excel text guards on ids, decimal128 HS
codes, float-written numeric country codes, empty HS cells beside tariff notation, zipped CSVs.

Each was read wrong, or refused, by an outside probe (5f); each test failed before its fix.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.io import read_declarations
from features.intake.mapping import join_hs_groups, parse_mapping_text

MAPPING = """\
columns:
  declaration_id: ID
  declared_at: AT
  arrival_office: {value: OFF1}
  channel: {value: postal}
  seller_id: SELLER
  consignee_id: CONS
  origin_country: ORIGIN
  hs_code: HS
  gross_weight_kg: KG
  declared_value: VALUE
  currency: {value: EUR}
  description: TEXT
"""

HEADER = "ID,AT,SELLER,CONS,ORIGIN,HS,KG,VALUE,TEXT\n"


def _export(n: int = 3, seed: int = 5) -> list[list[str]]:
    """``n`` plain rows of the CSV export (cells as text), seeded."""
    rng = np.random.default_rng(seed)
    return [
        [
            f"A{i + 1}",
            f"2026-10-0{i % 9 + 1} 10:00",
            f"S{rng.integers(100, 999)}",
            f"{rng.integers(0, 99999):06d}",
            "CN",
            str(rng.choice(["61091000", "0901210000", "85176200"])),
            f"{rng.uniform(0.1, 3):.2f}",
            f"{rng.uniform(5, 150):.2f}",
            "cotton t-shirt",
        ]
        for i in range(n)
    ]


def _csv(rows: list[list[str]]) -> str:
    return HEADER + "".join(",".join(row) + "\n" for row in rows)


def _ingest(tmp_path: Path, source: str | bytes, name: str = "export.csv", mapping=MAPPING):
    path = tmp_path / name
    if isinstance(source, str):
        path.write_text(source, encoding="utf-8")
    else:
        path.write_bytes(source)
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    summary = ingest_file(
        source=path, mapping_path=tmp_path / "mapping.yaml", out=tmp_path / "out.parquet"
    )
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    return summary, out


# --- finding 15: the tariff-notation count ---------------------------------------------------


def test_empty_hs_cells_are_not_counted_as_codes_joined() -> None:
    mapping = parse_mapping_text(MAPPING)
    raw = pd.DataFrame({"HS": ["61091000", None, np.nan, "85176200"]})
    out, joined = join_hs_groups(raw, mapping)
    assert joined == 0
    assert out["HS"].isna().tolist() == [False, True, True, False]


def test_codes_in_tariff_notation_beside_empty_cells_are_counted_once_each() -> None:
    mapping = parse_mapping_text(MAPPING)
    raw = pd.DataFrame({"HS": ["6109.10.00", None, "85176200", "0901.21 00.00"]})
    out, joined = join_hs_groups(raw, mapping)
    assert joined == 2
    assert out["HS"].tolist()[::2] == ["61091000", "85176200"]
    assert out["HS"].iloc[3] == "0901210000"


# --- finding 14: ISO numeric country codes written from floats -------------------------------

NUMERIC_ORIGIN = MAPPING.replace(
    "  origin_country: ORIGIN\n", "  origin_country: {column: ORIGIN, country_codes: numeric}\n"
)


def test_numeric_country_codes_written_from_floats_are_read_and_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = _export()
    for row, code in zip(rows, ["156.0", "36.0", "276"], strict=True):
        row[4] = code
    with caplog.at_level(logging.WARNING):
        summary, out = _ingest(tmp_path, _csv(rows), mapping=NUMERIC_ORIGIN)
    assert out["origin_country"].tolist() == ["CN", "AU", "DE"]
    assert summary["float_written_values_read"] == {"origin_country": 2}
    assert any(
        "origin_country (source column 'ORIGIN'): 2 value(s) written as floating-point" in m
        for m in caplog.messages
    )
    rows[1][4] = "156.5"  # no whole number: still no country
    with pytest.raises(ContractError, match=r"origin_country .*numeric country codes.*'156\.5'"):
        _ingest(tmp_path, _csv(rows), mapping=NUMERIC_ORIGIN)


# --- finding 9: decimal128 columns (a database's NUMBER) -------------------------------------

PARQUET_MAPPING = """\
columns:
  declaration_id: ID
  declared_at: AT
  arrival_office: {value: OFF1}
  channel: {value: postal}
  origin_country: {value: CN}
  hs_code: HS
  gross_weight_kg: KG
  declared_value: VALUE
  quantity: QTY
  currency: {value: EUR}
"""


def _decimal_export(path: Path, hs: list, hs_type: object) -> None:
    """Three declarations as a database writes NUMBER columns to Parquet: decimal128."""
    import datetime as dt
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = {
        "ID": pa.array([Decimal(12345678901234567890 + i) for i in range(3)], pa.decimal128(20, 0)),
        "AT": pa.array([dt.datetime(2026, 10, 1, 10 + i) for i in range(3)], pa.timestamp("us")),
        "HS": pa.array(hs, hs_type),
        "KG": pa.array([Decimal("0.125"), Decimal("2.000"), Decimal("1.5")], pa.decimal128(9, 3)),
        "VALUE": pa.array(
            [Decimal("10.50"), Decimal("1234567.89"), Decimal("0.01")], pa.decimal128(12, 2)
        ),
        "QTY": pa.array([Decimal(3), Decimal(1), Decimal(2)], pa.decimal128(5, 0)),
    }
    pq.write_table(pa.table(table), path)


@pytest.mark.parametrize("scale", [0, 2])  # NUMBER(10) and NUMBER(12, 2): 901210000.00
def test_decimal_hs_codes_get_their_lost_zero_back_as_integers_do(
    tmp_path: Path, scale: int
) -> None:
    from decimal import Decimal

    import pyarrow as pa

    codes = [Decimal(c) for c in ("901210000", "6109100010", "61091")]  # Arrow gives the scale
    _decimal_export(tmp_path / "export.parquet", codes, pa.decimal128(10 + scale, scale))
    (tmp_path / "mapping.yaml").write_text(PARQUET_MAPPING, encoding="utf-8")
    summary = ingest_file(
        source=tmp_path / "export.parquet",
        mapping_path=tmp_path / "mapping.yaml",
        out=tmp_path / "out.parquet",
    )
    out, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    assert out["hs_code"].tolist() == ["0901210000", "6109100010", "061091"]
    assert summary["hs_code_zeros_restored"] == 2
    # amounts and weights keep their fractions, an id beyond 64 bits its every digit
    assert out["declared_value"].tolist() == pytest.approx([10.5, 1234567.89, 0.01])
    assert out["gross_weight_kg"].tolist() == pytest.approx([0.125, 2.0, 1.5])
    assert out["quantity"].tolist() == [3, 1, 2]
    assert out["declaration_id"].tolist() == [
        "12345678901234567890",
        "12345678901234567891",
        "12345678901234567892",
    ]


# --- finding 4: Excel text guards on codes and identifiers -----------------------------------

GUARDED = MAPPING + "extras:\n  - {column: BROKER, name: broker_id, kind: entity}\n"


def _guarded_export() -> str:
    """Two declarations of one seller and one consignee, the first written "for Excel"."""
    rows = _export(2)
    rows[1][2:4] = ["S001", "000123"]
    rows[1][5] = "0901210000"
    rows[0][:6] = ['="A1"', rows[0][1], "'S001", '="000123"', "CN", '="0901210000"']
    rows[0][8] = '="as written"'
    header = HEADER.rstrip("\n") + ",BROKER\n"
    return header + "".join(
        ",".join(r) + f",{b}\n" for r, b in zip(rows, ["'B01", "B01"], strict=True)
    )


def test_excel_text_guards_are_taken_off_codes_and_identifiers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        summary, out = _ingest(tmp_path, _guarded_export(), mapping=GUARDED)
    assert out["declaration_id"].tolist() == ["A1", "A2"]
    assert out["seller_id"].nunique() == out["consignee_id"].nunique() == 1
    assert out["hs_code"].tolist() == ["0901210000", "0901210000"]
    assert out["broker_id"].tolist() == ["B01", "B01"]
    assert out["description"].iloc[0] == '="as written"'  # free text keeps what it says
    assert summary["excel_text_guards_removed"] == {
        "hs_code": 1,
        "consignee_id": 1,
        "declaration_id": 1,
        "seller_id": 1,
        "broker_id": 1,
    }
    assert any(
        "seller_id (source column 'SELLER'): 1 value(s) written with a spreadsheet's text guard"
        in m
        for m in caplog.messages
    )


def test_an_empty_text_guard_is_an_empty_cell_and_a_quoted_name_is_kept(tmp_path: Path) -> None:
    """=\"\" holds no value (the gate then refuses a declaration without its id); an
    apostrophe inside a name, or around a word, is no guard."""
    rows = _export(3)
    rows[1][2] = '=""'
    rows[2][2] = "'t Hart"
    rows[0][2] = "'S9'"
    _, out = _ingest(tmp_path, _csv(rows))
    assert out["seller_id"].isna().tolist() == [False, True, False]
    assert out["seller_id"].iloc[2] == "'t Hart"
    assert out["seller_id"].iloc[0] == "'S9'"


def test_a_results_file_made_for_excel_names_its_declarations_without_the_guard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from features.intake.mapping import apply_outcome_mapping

    mapping = parse_mapping_text(
        "columns:\n  declaration_id: ID\n"
        "  inspected: {column: DONE, true_values: [Y], false_values: [N]}\n"
    )
    raw = pd.DataFrame({"ID": ['="A1"', "'A2", "A3"], "DONE": ["Y", "N", "Y"]})
    with caplog.at_level(logging.WARNING):
        out = apply_outcome_mapping(raw, mapping)
    assert out["declaration_id"].tolist() == ["A1", "A2", "A3"]
    assert any("declaration_id (source column 'ID'): 2 value(s)" in m for m in caplog.messages)


# --- finding 10: zipped exports ----------------------------------------------------------------


def _zip(path: Path, members: dict[str, str | bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path.read_bytes()


FORK = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "


@pytest.mark.parametrize(
    ("name", "members"),
    [
        ("export.zip", {"export.csv": None}),  # as portals and mail name it
        (  # macOS Finder: the CSV in its folder, its resource fork and the folder's .DS_Store
            "finder.csv.zip",
            {
                "export/": b"",
                "export/export.csv": None,
                "__MACOSX/export/._export.csv": FORK,
                "export/.DS_Store": b"\x00\x00\x00\x01Bud1",
            },
        ),
    ],
)
def test_a_zip_holding_one_csv_is_read_whatever_its_name(
    tmp_path: Path, name: str, members: dict
) -> None:
    text = _csv(_export())
    data = _zip(tmp_path / "made.zip", {k: text if v is None else v for k, v in members.items()})
    _, plain = _ingest(tmp_path, text)
    _, zipped = _ingest(tmp_path, data, name=name)
    pd.testing.assert_frame_equal(zipped, plain)


def test_the_gates_reader_takes_a_finder_zip_too(tmp_path: Path) -> None:
    _, plain = _ingest(tmp_path, _csv(_export()))
    text = plain.assign(declared_at=plain["declared_at"].astype(str)).to_csv(index=False)
    _zip(tmp_path / "contract.zip", {"c/contract.csv": text, "__MACOSX/c/._contract.csv": FORK})
    zipped, _ = read_declarations(tmp_path / "contract.zip", with_outcomes=False)
    assert zipped["declaration_id"].tolist() == plain["declaration_id"].tolist()


def test_a_zip_of_several_exports_is_refused_naming_them(tmp_path: Path) -> None:
    text = _csv(_export())
    data = _zip(tmp_path / "made.zip", {"2026-09.csv": text, "2026-10.csv": text})
    with pytest.raises(ContractError) as err:
        _ingest(tmp_path, data, name="export.zip")
    message = str(err.value)
    assert "a zip archive of 2 data files (2026-09.csv, 2026-10.csv)" in message
    assert "\n" not in message


def test_a_zip_holding_another_format_says_the_name_it_is_read_by(tmp_path: Path) -> None:
    data = _zip(tmp_path / "made.zip", {"export.xml": "<Export/>"})
    with pytest.raises(
        ContractError, match=r"it holds 'export\.xml': name the zip export\.xml\.zip"
    ):
        _ingest(tmp_path, data, name="export.zip")
