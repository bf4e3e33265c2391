"""Messy customs exports through ``parcelrisk ingest``: a NUL byte in a cell, a Latin-1 file
read as UTF-8, a compressed CSV whose delimiter is not a comma. Each is read right or refused
in one message naming where; none is kept silently, nor ends in a codec's traceback."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.io import read_raw_declarations
from features.intake.mapping import (
    SHOWN_IGNORED_COLUMNS,
    apply_outcome_mapping,
    parse_mapping_text,
)

SOURCE = """\
ID;AT;OFFICE;MODE;ORIGIN;HS;KG;VALUE;GOODS
A1;2026-01-02T10:00:00Z;FR01;P;CN;851762;0,45;12,50;Écouteurs
A2;2026-01-03T10:00:00Z;FR01;P;CN;950300;1,20;18,00;Peluche bébé
A3;2026-01-04T10:00:00Z;FR02;P;US;610910;0,90;9,99;T-shirt
"""

# no delimiter: sniffed from the header line
MAPPING = """\
columns:
  declaration_id: ID
  declared_at: AT
  arrival_office: OFFICE
  channel: {column: MODE, values: {P: postal}}
  origin_country: ORIGIN
  hs_code: HS
  gross_weight_kg: {column: KG, decimal: ","}
  declared_value: {column: VALUE, decimal: ","}
  currency: {value: EUR}
  description: GOODS
"""


def _ingest(tmp_path: Path, source: Path, mapping: str = MAPPING) -> tuple[dict, Path]:
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(mapping, encoding="utf-8")
    out = tmp_path / "out.parquet"
    return ingest_file(source=source, mapping_path=mapping_path, out=out), out


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "plain.csv"
    path.write_text(SOURCE, encoding="utf-8")
    return path


# --- a NUL byte inside a cell -----------------------------------------------------------------


def test_a_nul_byte_in_a_text_cell_is_refused_naming_field_column_and_row(tmp_path) -> None:
    source = tmp_path / "export.csv"
    source.write_text(SOURCE.replace("Peluche bébé", "Peluche\x00bébé"), encoding="utf-8")
    with pytest.raises(ContractError) as refused:
        _ingest(tmp_path, source)
    message = str(refused.value)
    assert "description (source column 'GOODS')" in message
    assert "NUL" in message and "row 2 (A2): 'Peluche\\x00bébé'" in message
    assert not (tmp_path / "out.parquet").exists()


def test_a_nul_byte_in_a_parquet_source_is_refused_too(tmp_path) -> None:
    source = tmp_path / "export.parquet"
    raw = pd.read_csv(_csv(tmp_path), sep=";", dtype="str")
    raw.loc[0, "ID"] = "A1\x00\x00"  # a fixed-width id padded with NULs
    raw.to_parquet(source)
    with pytest.raises(ContractError, match=r"declaration_id \(source column 'ID'\): .*NUL"):
        _ingest(tmp_path, source)


def test_a_nul_byte_in_a_results_file_is_refused() -> None:
    mapping = parse_mapping_text(
        "columns:\n  declaration_id: ID\n  inspected_at: AT\n  illicit: {value: true}\n"
    )
    raw = pd.DataFrame({"ID": ["D1", "D\x002"], "AT": ["2026-01-05T10:00:00Z"] * 2})
    with pytest.raises(ContractError, match=r"row 2: 'D\\x002'"):
        apply_outcome_mapping(raw, mapping)


def test_a_column_the_mapping_ignores_may_hold_a_nul_byte(tmp_path) -> None:
    source = tmp_path / "export.csv"
    source.write_text(
        "\n".join(
            line + (";NOTE" if i == 0 else ";x\x00y") for i, line in enumerate(SOURCE.splitlines())
        )
        + "\n",
        encoding="utf-8",
    )
    summary, _ = _ingest(tmp_path, source)
    assert summary["rows"] == 3 and summary["ignored_source_column_names"] == ["NOTE"]


def test_a_wide_export_names_its_first_unmapped_columns_and_counts_them_all(tmp_path) -> None:
    """A header of 100,000 columns printed 100,000 names in the summary (probe 34)."""
    extra = [f"X{i:04d}" for i in range(SHOWN_IGNORED_COLUMNS + 25)]
    lines = SOURCE.splitlines()
    source = tmp_path / "wide.csv"
    source.write_text(
        "\n".join(
            line + ";" + ";".join(extra if i == 0 else ["v"] * len(extra))
            for i, line in enumerate(lines)
        )
        + "\n",
        encoding="utf-8",
    )
    summary, _ = _ingest(tmp_path, source)
    assert summary["ignored_source_columns"] == len(extra)
    assert summary["ignored_source_column_names"] == extra[:SHOWN_IGNORED_COLUMNS]
    assert summary["ignored_source_column_names_cut_at"] == SHOWN_IGNORED_COLUMNS


def test_a_narrow_export_names_every_unmapped_column_uncut(tmp_path) -> None:
    source = tmp_path / "narrow.csv"
    source.write_text(
        "\n".join(
            line + (";A;B" if i == 0 else ";1;2") for i, line in enumerate(SOURCE.splitlines())
        )
        + "\n",
        encoding="utf-8",
    )
    summary, _ = _ingest(tmp_path, source)
    assert summary["ignored_source_column_names"] == ["A", "B"]
    assert "ignored_source_column_names_cut_at" not in summary


# --- a file that is not UTF-8 -----------------------------------------------------------------


def test_a_latin1_export_without_encoding_is_refused_in_one_line_naming_byte_and_line(
    tmp_path,
) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(SOURCE.encode("cp1252"))
    with pytest.raises(ContractError) as refused:
        _ingest(tmp_path, source)
    message = str(refused.value)
    first = source.read_bytes().index(b"\xc9")  # É, on the first data row
    assert message == (
        f"{source}: not utf-8 text: byte {first} (line 2) is b'\\xc9'; set the file's encoding "
        "in the mapping, e.g. `encoding: cp1252` (a Windows export) or `encoding: latin-1`"
    )
    assert "codec" not in message


def test_a_latin1_export_reads_with_its_encoding_in_the_mapping(tmp_path) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(SOURCE.encode("cp1252"))
    summary, out = _ingest(tmp_path, source, "encoding: cp1252\n" + MAPPING)
    assert summary["rows"] == 3
    assert pd.read_parquet(out)["description"].tolist() == ["Écouteurs", "Peluche bébé", "T-shirt"]


def test_a_compressed_latin1_export_is_located_in_the_decompressed_text(tmp_path) -> None:
    source = tmp_path / "export.csv.gz"
    source.write_bytes(gzip.compress(SOURCE.replace("Écouteurs", "Ecouteurs").encode("cp1252")))
    with pytest.raises(ContractError, match=r"not utf-8 text: byte \d+ \(line 3\) is b'\\xe9'"):
        _ingest(tmp_path, source)


def test_the_cli_says_it_in_one_line(tmp_path) -> None:
    """``serving.main.main`` prints a ParcelriskError as one ``error:`` line: it must be one."""
    from serving.main import app

    source = tmp_path / "export.csv"
    source.write_bytes(SOURCE.encode("cp1252"))
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    out = tmp_path / "out.parquet"
    run = CliRunner().invoke(
        app, ["ingest", str(source), "--mapping", str(mapping), "--out", str(out)]
    )
    assert isinstance(run.exception, ContractError), run.output
    assert "\n" not in str(run.exception) and "encoding: cp1252" in str(run.exception)
    assert not out.exists()


# --- compressed CSVs: the delimiter is sniffed as for a plain one ------------------------------


def _zip(data: bytes) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("export.csv", data)
    return buffer.getvalue()


COMPRESSED = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zip": _zip}


@pytest.mark.parametrize("suffix", list(COMPRESSED))
def test_a_compressed_semicolon_export_is_sniffed_like_a_plain_one(tmp_path, suffix) -> None:
    source = tmp_path / f"export.csv{suffix}"
    source.write_bytes(COMPRESSED[suffix](SOURCE.encode("utf-8")))
    summary, out = _ingest(tmp_path, source)
    (tmp_path / "plain").mkdir()
    plain, plain_out = _ingest(tmp_path / "plain", _csv(tmp_path / "plain"))
    assert summary["rows"] == plain["rows"] == 3
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(plain_out))


def test_the_gate_sniffs_a_compressed_contract_csv_too(tmp_path) -> None:
    path = tmp_path / "declarations.csv.gz"
    path.write_bytes(gzip.compress(b"declaration_id;description\nD1;caf\xe9\n"))
    frame, _ = read_raw_declarations(path)
    assert frame.to_dict("records") == [{"declaration_id": "D1", "description": "café"}]


def test_the_delimiter_is_the_one_that_finds_the_mapped_columns(tmp_path) -> None:
    """Header names holding commas ("POIDS, KG") made the sniffer pick ',' for a ';' export;
    the mapping knows which names it reads, and the delimiter that finds them wins."""
    source = tmp_path / "commas_in_names.csv"
    source.write_text(SOURCE.replace("KG;VALUE", "POIDS, KG;VALEUR, EUR"), encoding="utf-8")
    mapping = MAPPING.replace("column: KG,", '"column": "POIDS, KG",').replace(
        "column: VALUE,", '"column": "VALEUR, EUR",'
    )
    summary, out = _ingest(tmp_path, source, mapping)
    got = pd.read_parquet(out)
    assert summary["rows"] == 3
    assert got["gross_weight_kg"].tolist() == [0.45, 1.2, 0.9]
    assert got["declared_value"].tolist() == [12.5, 18.0, 9.99]


# --- a file cut short -------------------------------------------------------------------------
# GOODS is optional: an export cut inside the last row's GOODS cell (or before it) would read
# as a declaration without a description, and pass every rule.


def test_an_export_cut_inside_its_optional_last_column_is_refused(tmp_path) -> None:
    source = tmp_path / "cut.csv"
    source.write_text(SOURCE.rstrip("\n").rsplit(";", 1)[0], encoding="utf-8")  # no GOODS cell
    with pytest.raises(ContractError, match=r"last row has 8 of the header's 9 columns.*cut short"):
        _ingest(tmp_path, source)
    assert not (tmp_path / "out.parquet").exists()


def test_short_rows_that_end_their_line_are_read_as_written(tmp_path) -> None:
    # some exporters leave out trailing empty cells: with its line break the row is whole
    source = tmp_path / "short.csv"
    source.write_text(SOURCE.rstrip("\n").rsplit(";", 1)[0] + "\n", encoding="utf-8")
    summary, out = _ingest(tmp_path, source)
    assert summary["rows"] == 3 and pd.read_parquet(out)["description"].isna().tolist()[-1]


def test_a_whole_last_row_without_a_line_break_is_read_with_a_warning(tmp_path, caplog) -> None:
    source = tmp_path / "no-eol.csv"
    source.write_text(SOURCE.rstrip("\n"), encoding="utf-8")
    summary, _ = _ingest(tmp_path, source)
    assert summary["rows"] == 3
    assert "does not end with a line break" in caplog.text and "T-shirt" not in caplog.text


def test_a_quoted_cell_spanning_lines_is_not_taken_for_a_cut(tmp_path) -> None:
    source = tmp_path / "quoted.csv"
    source.write_text(SOURCE.rstrip("\n").replace("T-shirt", '"T-shirt\nblanc"'), "utf-8")
    _, out = _ingest(tmp_path, source)
    assert pd.read_parquet(out)["description"].tolist()[-1] == "T-shirt\nblanc"


def test_a_contract_csv_cut_short_is_refused_by_the_gate_too(tmp_path) -> None:
    source = tmp_path / "declarations.csv"
    source.write_text("declaration_id,declared_at,description\nA1,2026-01-02T10:00:00Z", "utf-8")
    with pytest.raises(ContractError, match="cut short"):
        read_raw_declarations(source)


# --- a row with one field more than the header ------------------------------------------------


def test_an_unquoted_delimiter_in_the_first_row_is_refused_not_read_one_column_over(
    tmp_path,
) -> None:
    """pandas reads a first row of one extra field as index + shifted columns (ids became
    dates, dates operators, without an error): refused naming the line, as a later row is."""
    lines = SOURCE.splitlines()
    lines[1] = lines[1].replace("Écouteurs", "Écouteurs; sans fil")
    path = tmp_path / "shifted.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ContractError, match=r"line 2 holds 10 fields where the header has 9"):
        _ingest(tmp_path, path)
    later = SOURCE.splitlines()
    later[3] = later[3].replace("T-shirt", "T-shirt; coton")
    path.write_text("\n".join(later) + "\n", encoding="utf-8")
    with pytest.raises(ContractError, match=r"Expected 9 fields in line 4, saw 10"):
        _ingest(tmp_path, path)


def test_a_delimiter_ending_every_data_line_but_not_the_header_reads_as_written(
    tmp_path,
) -> None:
    lines = SOURCE.splitlines()
    path = tmp_path / "trailing.csv"
    path.write_text("\n".join([lines[0]] + [f"{line};" for line in lines[1:]]) + "\n")
    _, out = _ingest(tmp_path, path)
    _, plain = _ingest(tmp_path, _csv(tmp_path))
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(plain))


def test_a_contract_csv_with_a_shifted_first_row_is_refused(tmp_path) -> None:
    """The contract's own CSV reader (``validate``, ``features build``) looks the same way."""
    path = tmp_path / "declarations.csv"
    path.write_text("declaration_id;description;hs_code\nD1;bag; leather;420221\nD2;toy;950300\n")
    with pytest.raises(ContractError, match="line 2 holds 4 fields where the header has 3"):
        read_raw_declarations(path)
    path.write_text("declaration_id;description;hs_code\nD1;bag;420221;\nD2;toy;950300;\n")
    frame = read_raw_declarations(path)[0]
    assert frame["hs_code"].tolist() == ["420221", "950300"]
    assert frame["declaration_id"].tolist() == ["D1", "D2"]
