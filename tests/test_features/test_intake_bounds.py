"""Hostile files are refused in bounded memory, naming the file (probe 34: 4 MB of gzip held
4 GiB of one line, and ingest grew to 4.6 GB before failing; `mapping draft` of a 12 MB zip
to 5.6 GB)."""

from __future__ import annotations

import gzip
import re
import zipfile
from pathlib import Path

import pytest

from features.intake import io as intake_io
from features.intake.contract import ContractError
from features.intake.ingest import ingest_file

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"


def _rows(n: int) -> bytes:
    """The worked example's header and n copies of its first row: valid, and compressing
    about as far as any repeated text does."""
    header, first = (EXAMPLES / "foreign_declarations.csv").read_bytes().split(b"\n")[:2]
    return header + b"\n" + (first + b"\n") * n


@pytest.fixture
def small_bound(monkeypatch) -> None:
    monkeypatch.setattr(intake_io, "EXPANSION_FLOOR", 1024**2)  # 1 MB, not 256


def test_a_gzip_expanding_beyond_its_bound_is_refused_naming_it(tmp_path, small_bound) -> None:
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(_rows(40_000), 9))  # ~8 MB of text in ~0.05 MB
    out = tmp_path / "out.parquet"
    with pytest.raises(ContractError) as refused:
        ingest_file(source=bomb, mapping_path=EXAMPLES / "mapping.yaml", out=out)
    said = str(refused.value)
    assert said.startswith(f"{bomb}: expands to over ") and "more than 100 times its size" in said
    assert "cannot read file" not in said  # not buried under another reader's words
    assert not out.exists()
    # the same rows within the bound read as before
    fine = tmp_path / "fine.csv.gz"
    fine.write_bytes(gzip.compress(_rows(20), 9))
    assert ingest_file(source=fine, mapping_path=EXAMPLES / "mapping.yaml", out=out)["rows"] > 0


def test_a_zip_declaring_a_member_beyond_the_bound_is_refused_before_it_is_read(
    tmp_path, small_bound, monkeypatch
) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export.csv", _rows(40_000))
    opened = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: opened.append(a) or 1 / 0)
    refused = pytest.raises(ContractError, match=r"expands to over 7 MB from 0\.0 MB compressed")
    with refused, intake_io.open_bytes(bomb):
        pass
    assert opened == []


def test_a_line_too_long_for_any_export_is_refused_naming_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(intake_io, "MAX_LINE_CHARS", 1000)
    path = tmp_path / "one_line.csv"
    path.write_text("ID;VALUE\n" + "x" * 5000)
    with pytest.raises(ContractError, match=r"one_line.csv: line 2 is longer than"):
        intake_io.first_lines(path, "utf-8")
    path.write_text("ID;VALUE\n" + "x" * 900 + "\n1;2\n")
    assert len(intake_io.first_lines(path, "utf-8")) == 3


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"PK\x03\x04rest of a workbook", "is a zip archive (an .xlsx or .ods workbook, or a zip)"),
        (b"PAR1\x15\x04rest", "is a Parquet file, not text: name the file for what it is"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "is an Excel 97-2003 workbook"),
    ],
)
def test_a_binary_file_named_as_text_is_refused_saying_what_it_is(tmp_path, content, says):
    """An .xlsx or a Parquet file saved as export.csv was refused as "not utf-8 text: set
    encoding: cp1252", a hint that led nowhere (probe 34)."""
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    with pytest.raises(ContractError, match=re.escape(says)):
        ingest_file(source=path, mapping_path=EXAMPLES / "mapping.yaml", out=tmp_path / "o.parquet")
    # the same inside a gzip named .csv.gz
    packed = tmp_path / "export.csv.gz"
    packed.write_bytes(gzip.compress(content))
    refused = pytest.raises(ContractError, match=re.escape("(its compressed data) " + says[:12]))
    with refused, intake_io.open_bytes(packed):
        pass


def test_a_path_that_is_no_regular_file_is_refused_before_it_is_opened(tmp_path) -> None:
    """A FIFO named export.csv hung ingest and the draft for ever; a link to /dev/zero was
    read until memory ran out (probe 34)."""
    import os

    from features.intake.draft import read_for_draft

    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)  # no writer: any open() would block
    zero = tmp_path / "zero.csv"
    zero.symlink_to("/dev/zero")
    for path, what in [(fifo, "a FIFO (named pipe)"), (zero, "a device")]:
        said = f"{path} is {what}, not a file"
        with pytest.raises(ContractError, match=re.escape(said)):
            ingest_file(source=path, mapping_path=EXAMPLES / "mapping.yaml", out=tmp_path / "o.pq")
        with pytest.raises(ContractError, match=re.escape(said)):
            read_for_draft(path)


def test_a_parquet_list_or_struct_column_is_refused_when_mapped_and_left_out_otherwise(
    tmp_path, caplog
) -> None:
    """A list or struct column ended ingest, the draft and the results readers in Arrow's
    "Unsupported cast from list<...> to large_utf8", a traceback (probe 34)."""
    import logging

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.read_csv(EXAMPLES / "foreign_declarations.csv", sep=";", dtype=str)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    listed = pa.array([[text, text] for text in frame["DESIGNATION"]])
    at = table.schema.get_field_index("DESIGNATION")
    pq.write_table(table.set_column(at, "DESIGNATION", listed), tmp_path / "list.parquet")
    with pytest.raises(ContractError, match=r"'DESIGNATION' is list<element: string>, not one"):
        ingest_file(
            source=tmp_path / "list.parquet",
            mapping_path=EXAMPLES / "mapping.yaml",
            out=tmp_path / "out.parquet",
        )
    # a column the mapping does not read: left out, said
    pq.write_table(table.append_column("TAGS", listed), tmp_path / "extra.parquet")
    with caplog.at_level(logging.WARNING):
        summary = ingest_file(
            source=tmp_path / "extra.parquet",
            mapping_path=EXAMPLES / "mapping.yaml",
            out=tmp_path / "out.parquet",
        )
    assert summary["rows"] == len(frame)
    assert "column(s) TAGS hold lists or records, not one value per row: not read" in caplog.text


def test_text_starting_like_a_signature_is_still_text(tmp_path) -> None:
    """bzip2's signature is "BZh" and a digit: a header "BZh_CODE" is a CSV's."""
    path = tmp_path / "export.csv"
    path.write_bytes(b"BZh_CODE;VALUE\n1;2\n")
    with intake_io.open_bytes(path) as fh:
        assert fh.read() == b"BZh_CODE;VALUE\n1;2\n"
    path.write_bytes(b"BZh91AY&SY")
    with (
        pytest.raises(ContractError, match="is bzip2-compressed, not text"),
        intake_io.open_bytes(path),
    ):
        pass
