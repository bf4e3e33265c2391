"""An export with a title above its header (a report's name, when it was made, a blank line):
read from its header, by the mapping's names or, for a draft, by the shape of its lines."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.intake.contract import ContractError
from features.intake.draft import draft_mapping, read_for_draft
from features.intake.ingest import ingest_file
from features.intake.io import header_line

MAPPING = """\
delimiter: ";"
columns:
  declaration_id: NUM
  declared_at: {column: DATA, format: "%d/%m/%Y", timezone: Europe/Lisbon}
  arrival_office: {value: PTLIS01}
  channel: {value: postal}
  hs_code: NCM
  declared_value: {column: VALOR, decimal: ","}
  currency: {value: EUR}
  origin_country: ORIGEM
  gross_weight_kg: {value: 0.5}
"""
ROWS = [f"PT{i};0{i % 9 + 1}/03/2026;6109100{i % 10};{i + 1},50;CN" for i in range(12)]
TITLE = ["Relatório de remessas - março 2026", "Gerado em 01/04/2026 por SISCOMEX", ""]


def _export(path: Path, title: list[str]) -> Path:
    path.write_text("\n".join([*title, "NUM;DATA;NCM;VALOR;ORIGEM", *ROWS]) + "\n", "utf-8")
    return path


def _ingest(tmp_path: Path, source: Path, mapping: str = MAPPING) -> pd.DataFrame:
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(mapping, encoding="utf-8")
    ingest_file(source=source, mapping_path=mapping_path, out=tmp_path / "out.parquet")
    return pd.read_parquet(tmp_path / "out.parquet")


def test_title_lines_above_the_header_are_skipped_and_said(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    got = _ingest(tmp_path, _export(tmp_path / "export.csv", TITLE))
    assert list(got["declaration_id"]) == [f"PT{i}" for i in range(12)]
    assert got["declared_value"].iloc[0] == 1.5
    assert "the header is line 4; the 3 line(s) above it (a title) are not read" in caplog.text


def test_a_draft_finds_the_header_below_a_title_and_its_mapping_reads_the_file(tmp_path) -> None:
    source = _export(tmp_path / "export.csv", TITLE)
    raw, reading = read_for_draft(source)
    assert list(raw.columns) == ["NUM", "DATA", "NCM", "VALOR", "ORIGEM"]
    assert reading["delimiter"] == ";" and len(raw) == 12
    draft = draft_mapping(raw, **reading)
    assert yaml.safe_load(draft.text)["columns"]["declared_value"]["decimal"] == ","


@pytest.mark.parametrize(
    "lines",
    [
        # decimal commas: ',' splits the rows in two, never a reason to skip the ';' header
        ["NUM;VALOR", "A;1,5", "B;2,5", "C;3,5"],
        # trailing empty cells left out by the exporter: the header is still the first line
        ["NUM;VALOR;NOTA", "A;1", "B;2", "C;3;x"],
        # one row only
        ["NUM;VALOR", "A;1"],
    ],
)
def test_a_file_without_a_title_starts_at_its_first_line(lines) -> None:
    assert header_line([line + "\n" for line in lines]) == 0


def test_names_the_mapping_reads_on_no_line_are_refused_as_before(tmp_path) -> None:
    source = _export(tmp_path / "export.csv", TITLE)
    with pytest.raises(ContractError, match="none of the first lines holds them all"):
        _ingest(tmp_path, source, MAPPING.replace("NCM\n", "HS_CODE\n"))


def test_a_workbook_with_title_rows_is_read_from_its_header(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    book = tmp_path / "export.xlsx"
    table = pd.DataFrame(
        {
            "NUM": ["PT1", "PT2"],
            "DATA": [dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 2)],
            "NCM": ["61091000", "85044090"],
            "VALOR": [1.5, 2.5],
            "ORIGEM": ["CN", "US"],
        }
    )
    with pd.ExcelWriter(book, engine="openpyxl") as writer:
        pd.DataFrame([["Relatório de remessas"], ["Gerado em 01/04/2026"]]).to_excel(
            writer, sheet_name="Remessas", index=False, header=False
        )
        table.to_excel(writer, sheet_name="Remessas", index=False, startrow=3)
    mapping = MAPPING.replace('delimiter: ";"\n', "").replace(', format: "%d/%m/%Y"', "")
    got = _ingest(tmp_path, book, mapping.replace('decimal: ","', "scale: 1"))
    assert list(got["declaration_id"]) == ["PT1", "PT2"]
    assert list(got["declared_value"]) == [1.5, 2.5]
    assert "the header is row 4; the 3 row(s) above it (a title) are not read" in caplog.text
    raw, _ = read_for_draft(book)
    assert list(raw.columns) == ["NUM", "DATA", "NCM", "VALOR", "ORIGEM"] and len(raw) == 2


@pytest.mark.parametrize("word", ["TOPLAM", "Genel Toplam: 12", "Razem", "Ogółem"])
def test_turkish_and_polish_totals_rows_are_not_read(tmp_path, word) -> None:
    source = tmp_path / "export.csv"
    source.write_text("\n".join(["NUM;DATA;NCM;VALOR;ORIGEM", *ROWS, f"{word};;;90,00;"]) + "\n")
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(MAPPING, encoding="utf-8")
    summary = ingest_file(source=source, mapping_path=mapping_path, out=tmp_path / "o.parquet")
    assert summary["rows"] == len(ROWS)
    assert summary["rows_not_declarations_dropped"] == {"empty": 0, "totals": 1}


def test_empty_rows_and_a_totals_footer_are_not_read_and_are_counted(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    source = tmp_path / "export.csv"
    lines = ["NUM;DATA;NCM;VALOR;ORIGEM", *ROWS[:6], ";;;;", *ROWS[6:], ";;;;"]
    lines += ["Subtotal;;;45,00;", "TOTAL (12 remessas);;;90,00;"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(MAPPING, encoding="utf-8")
    summary = ingest_file(source=source, mapping_path=mapping_path, out=tmp_path / "o.parquet")
    assert summary["rows"] == 12
    assert summary["rows_not_declarations_dropped"] == {"empty": 2, "totals": 2}
    assert "the last 2 row(s) are totals (id 'Subtotal', 'TOTAL (12 remessas)'" in caplog.text


@pytest.mark.parametrize(
    "last",
    [
        "PT99;;61091000;1,00;CN",  # an id that is no total word: a declaration missing its date
        "Totally Legit Ltd;05/03/2026;61091000;1,00;CN",  # dated: a declaration
    ],
)
def test_a_last_row_that_may_be_a_declaration_is_read_not_dropped(tmp_path, last) -> None:
    source = tmp_path / "export.csv"
    source.write_text("\n".join(["NUM;DATA;NCM;VALOR;ORIGEM", *ROWS, last]) + "\n", "utf-8")
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(MAPPING, encoding="utf-8")
    summary = ingest_file(source=source, mapping_path=mapping_path, out=tmp_path / "o.parquet")
    assert summary["rows"] == 13 and "rows_not_declarations_dropped" not in summary


def test_an_item_export_never_takes_an_item_row_without_its_id_for_totals(tmp_path) -> None:
    """In an item export an empty id at the end is an item row missing its declaration's id:
    refused as such (naming the row), as before, not dropped as a totals row."""
    source = tmp_path / "items.csv"
    lines = ["NUM;DATA;NCM;VALOR;ORIGEM", "PT1;01/03/2026;61091000;1,00;CN", ";;61091000;2,00;"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping_path = tmp_path / "mapping.yaml"
    items = "items:\n  declared_value: sum\n  gross_weight_kg: agree\n"
    mapping_path.write_text(MAPPING + items, encoding="utf-8")
    with pytest.raises(ContractError, match="declaration_id is empty on 1 item row"):
        ingest_file(source=source, mapping_path=mapping_path, out=tmp_path / "o.parquet")


def test_rows_after_an_empty_row_keep_their_numbers_in_messages_and_quarantine(tmp_path) -> None:
    """An empty row left out mid-file does not renumber the rows after it: a bad value is
    named by the row the file holds it on (data rows counted from 1), with and without
    --quarantine."""
    source = tmp_path / "export.csv"
    bad = "PTX;07/03/2026;61091000;abc;CN"  # the 8th data row of the file
    lines = ["NUM;DATA;NCM;VALOR;ORIGEM", *ROWS[:3], ";;;;", *ROWS[3:6], bad, *ROWS[6:]]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    with pytest.raises(ContractError, match=r"row 8 \(PTX\): 'abc'"):
        ingest_file(source=source, mapping_path=mapping, out=tmp_path / "o.parquet")
    quarantine = tmp_path / "rejected.csv"
    summary = ingest_file(
        source=source,
        mapping_path=mapping,
        out=tmp_path / "o.parquet",
        quarantine=quarantine,
        max_rejected=0.2,
    )
    assert summary["rows"] == 12
    rejected = pd.read_csv(quarantine, sep=None, engine="python", dtype=str)
    assert rejected.iloc[0, 0] == "8" and "PTX" in rejected.iloc[0].tolist()
