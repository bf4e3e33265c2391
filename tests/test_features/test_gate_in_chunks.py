"""The gate a chunk at a time (the Dask engine's): the whole-file gate's findings, bounded memory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.intake.io import write_declarations
from features.intake.validation import (
    GateError,
    check_declarations,
    check_parquet_in_chunks,
    require_valid,
)
from tests.test_features.test_contract import EXTRAS, make_declarations
from tests.test_features.test_validation import LIMITS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ROWS = 600


def _spread_faults() -> pd.DataFrame:
    """A history whose faults and warnings fall in several chunks of 100 rows, some rules broken
    in one chunk only, an id repeated across chunks, and a column of text with unreadable values
    (a file as an export gives it, not as the generator writes it)."""
    df = make_declarations(ROWS)
    for column in ("declaration_id", "origin_country", "declared_value", "illicit"):
        df[column] = df[column].astype(object)
    df.loc[[5, 450], "declaration_id"] = "DUPLICATE-1"  # chunks 0 and 4
    df.loc[[120, 121, 599], "declaration_id"] = "DUPLICATE-2"  # chunks 1 and 5
    df.loc[[7, 333], "declaration_id"] = None  # missing ids: not duplicates of each other
    df.loc[[250, 251], "origin_country"] = "CHN"  # chunk 2 only
    df.loc[[30, 560], "origin_country"] = None
    df["declared_value"] = df["declared_value"].astype(str)
    df.loc[[40, 541], "declared_value"] = "12 EUR"  # unreadable, chunks 0 and 5
    df.loc[[42, 300], "gross_weight_kg"] = [-1.0, 80_000.0]  # a fault, and a warning
    df.loc[[1, 401], "declared_at"] = pd.Timestamp("2100-01-01", tz="UTC")
    df.loc[[3], "illicit"] = True  # not inspected: recorded anyway
    return df


def _comparable(result) -> dict:
    return result.to_record()  # holds no clock: the two checks compare as they are


@pytest.mark.parametrize("chunk_rows", [1, 100, 137, ROWS, 10 * ROWS])
def test_chunks_give_the_whole_files_findings(tmp_path: Path, chunk_rows: int) -> None:
    df = _spread_faults()
    path = tmp_path / "declarations.parquet"
    write_declarations(df, path, EXTRAS)
    whole, _ = check_declarations(pd.read_parquet(path), EXTRAS, LIMITS, now=NOW)
    chunked = check_parquet_in_chunks(path, LIMITS, now=NOW, chunk_rows=chunk_rows)
    assert not whole.success and len(whole.findings.faults) >= 6
    assert len(whole.findings.warnings) >= 1
    assert _comparable(chunked) == _comparable(whole)
    assert chunked.render() == whole.render()
    # every finding row for row, values included, in the whole file's order
    for got, want in zip(chunked.findings.items, whole.findings.items, strict=True):
        assert got.rule.name == want.rule.name
        np.testing.assert_array_equal(got.rows, want.rows)
        assert got.values == want.values


def test_duplicates_across_chunks_name_each_id_and_count(tmp_path: Path) -> None:
    df = make_declarations(300)
    df.loc[[10, 290], "declaration_id"] = "D00010"  # row 10's own id, again in the last chunk
    path = tmp_path / "d.parquet"
    write_declarations(df, path, EXTRAS)
    result = check_parquet_in_chunks(path, LIMITS, now=NOW, chunk_rows=50)
    [finding] = result.findings.faults
    assert finding.rule.name == "declaration_id.unique"
    assert finding.rows.tolist() == [10, 290]
    assert finding.values == [("D00010", 2), ("D00010", 2)]
    assert result.examples(finding)[1] == {
        "row": 291,
        "declaration_id": "D00010",
        "message": "declaration_id: 'D00010' appears 2 times",
    }


def test_a_valid_file_passes_and_an_empty_one_fails(tmp_path: Path) -> None:
    path = tmp_path / "ok.parquet"
    write_declarations(make_declarations(250), path, EXTRAS)
    result = check_parquet_in_chunks(path, LIMITS, now=NOW, chunk_rows=64)
    assert result.success and result.rows == 250 and not result.findings.items

    empty = tmp_path / "empty.parquet"
    write_declarations(make_declarations(6).iloc[:0], empty, EXTRAS)
    whole, _ = check_declarations(pd.read_parquet(empty), EXTRAS, LIMITS, now=NOW)
    chunked = check_parquet_in_chunks(empty, LIMITS, now=NOW)
    assert not chunked.success and chunked.rows == 0
    assert _comparable(chunked) == _comparable(whole)


def test_a_missing_column_is_one_fault_as_in_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    write_declarations(make_declarations(200).drop(columns=["origin_country"]), path, EXTRAS)
    chunked = check_parquet_in_chunks(path, LIMITS, now=NOW, chunk_rows=70)
    assert chunked.missing_columns == ["origin_country"]
    assert not chunked.success


def test_a_file_that_is_not_parquet_is_named_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(Exception, match=r"d\.parquet: cannot read file"):
        check_parquet_in_chunks(path, LIMITS)


def test_require_valid_in_chunks_refuses_and_passes_as_the_whole_file_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad, good = tmp_path / "bad.parquet", tmp_path / "good.parquet"
    write_declarations(_spread_faults(), bad, EXTRAS)
    write_declarations(make_declarations(120), good, EXTRAS)

    def whole_read(*_args, **_kwargs):
        raise AssertionError("the chunked gate read the whole file")

    monkeypatch.setattr("features.intake.validation.read_raw_declarations", whole_read)
    with pytest.raises(GateError, match=r"declaration_id\.unique") as refused:
        require_valid(bad, LIMITS, in_chunks=True, what="features build")
    assert "600 rows" in str(refused.value) and "features build refuses it" in str(refused.value)
    outcome = require_valid(good, LIMITS, in_chunks=True)
    assert outcome.status == "passed" and outcome.declarations is None


def test_validate_checks_a_large_file_in_chunks_and_says_what_it_sampled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`parcelrisk validate` of a file over ``large_rows``: the whole-file findings without a
    whole-file read; the column profile and the GX cross-check read the first chunk, said so
    in the text, the record and the report."""
    from features.intake.validation import validate_file

    path = tmp_path / "declarations.parquet"
    write_declarations(_spread_faults(), path, EXTRAS)
    whole = validate_file(path, LIMITS, cross_check=False, now=NOW)
    assert whole.sampled_rows is None

    def whole_read(*_args, **_kwargs):
        raise AssertionError("validate read the whole file")

    monkeypatch.setattr("features.intake.validation.read_raw_declarations", whole_read)
    report = tmp_path / "report"
    chunked = validate_file(
        path, LIMITS, report_dir=report, now=NOW, large_rows=500, chunk_rows=250
    )
    record = _comparable(chunked)
    assert record.pop("sampled_rows") == 250 and record.pop("cross_check") is not None
    assert record == {
        k: v for k, v in _comparable(whole).items() if k not in ("sampled_rows", "cross_check")
    }
    assert "disagrees" not in chunked.render().lower().replace("agrees on all", "")
    assert "(on the first 250 rows of 600)" in chunked.render()
    html = (report / "index.html").read_text()
    assert "On the first 250 rows of 600" in html
    assert '"sampled_rows": 250' in (report / "validation.json").read_text()


def test_a_damaged_row_group_is_named_with_its_rows(tmp_path: Path) -> None:
    """A file whose footer is intact but whose fourth row group is damaged (a disk or transfer
    fault mid-file): every reading path stops with the path, the row group and its rows; none
    passes the rows it could read as the whole file."""
    import pyarrow.parquet as pq

    from features.errors import ParcelriskError
    from features.intake.validation import validate_file
    from tests.corpus.data_faults import damage_row_group

    path = tmp_path / "declarations.parquet"
    write_declarations(make_declarations(ROWS), path, EXTRAS)
    pq.write_table(pq.read_table(path), path, row_group_size=100)  # contract metadata kept
    damage_row_group(path, 3)

    message = (
        r"declarations\.parquet: cannot read file: row group 4 of 6 \(rows 300 to 399 of 600\)"
        r" is damaged: .*snappy"
    )
    with pytest.raises(ParcelriskError, match=message):
        check_parquet_in_chunks(path, LIMITS, now=NOW, chunk_rows=100)
    with pytest.raises(ParcelriskError, match=message):
        require_valid(path, LIMITS, in_chunks=True)  # default chunks: the file in one
    with pytest.raises(ParcelriskError, match=message):
        validate_file(path, LIMITS, cross_check=False, now=NOW, large_rows=200, chunk_rows=100)
    with pytest.raises(ParcelriskError, match=message):
        validate_file(path, LIMITS, cross_check=False, now=NOW)  # the whole-file read too
