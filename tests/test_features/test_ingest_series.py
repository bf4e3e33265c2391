"""``ingest`` of a series of exports (a file a month) into one contract file: each file read
with the one mapping, a declaration found in overlapping files taken once, disagreements
between files refused naming both, and every message naming its file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from features.intake.contract import ContractError
from features.intake.ingest import REJECTED_FILE, ingest_file
from features.intake.io import read_contract
from features.intake.mapping import REJECTED_REASONS, REJECTED_ROW
from features.intake.rules import Limits
from features.intake.validation import validate_file
from features.params import load_settings

MAPPING = """\
columns:
  declaration_id: ID
  declared_at: {column: AT, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
  arrival_office: {value: FR01}
  channel: {value: postal}
  hs_code: HS
  declared_value: {column: VAL, decimal: ",", aliases: [VALEUR]}
  currency: {value: EUR}
  gross_weight_kg: {column: KG, decimal: ","}
  origin_country: {column: PAYS, country_codes: alpha3}
  description: DESC
  inspected: {column: CTRL, true_values: ["O"], false_values: ["N"]}
  inspected_at: {column: DATE_CTRL, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
  illicit: {column: RES, true_values: ["POS"], false_values: ["NEG"]}
extras:
  - {column: TRANSITAIRE, name: broker_id, kind: entity}
"""


def _month(month: int, ids: range, cells: dict | None = None) -> pd.DataFrame:
    n = len(ids)
    frame = pd.DataFrame(
        {
            "ID": [f"D{i}" for i in ids],
            "AT": [f"{1 + i % 27:02d}/{month:02d}/2026 10:00" for i in ids],
            "HS": ["610910"] * n,
            "VAL": [f"{10 + i},50" for i in ids],
            "KG": ["0,5"] * n,
            "PAYS": ["CHN"] * n,
            "DESC": ["t-shirt"] * n,
            "CTRL": ["N"] * n,
            "DATE_CTRL": [""] * n,
            "RES": [""] * n,
            "TRANSITAIRE": [f"B{i % 3}" for i in ids],
        }
    )
    for (row, column), value in (cells or {}).items():
        frame.loc[row, column] = value
    return frame


def _write(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_csv(path, sep=";", index=False)
    return path


def _ingest(tmp_path: Path, sources, **options) -> dict:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return ingest_file(
        source=sources, mapping_path=mapping, out=tmp_path / "out.parquet", **options
    )


def _read(tmp_path: Path) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "out.parquet")


def test_a_series_equals_its_files_ingested_as_one(tmp_path) -> None:
    jan, feb = _month(1, range(0, 30)), _month(2, range(30, 60))
    # the value column was renamed in February: the mapping's alias reads it
    feb = feb.rename(columns={"VAL": "VALEUR"})
    summary = _ingest(
        tmp_path, [_write(tmp_path, "jan.csv", jan), _write(tmp_path, "feb.csv", feb)]
    )
    series = _read(tmp_path)
    assert summary["rows"] == 60 and summary["files"] == 2
    assert summary["per_file"][str(tmp_path / "feb.csv")]["columns_read_by_alias"] == {
        "declared_value": "VALEUR"
    }
    # the extras are declared in the one file written, as for a single export
    assert [e.name for e in read_contract(tmp_path / "out.parquet").extras] == ["broker_id"]
    whole = pd.concat([jan, feb.rename(columns={"VALEUR": "VAL"})], ignore_index=True)
    single = tmp_path / "single"
    single.mkdir()
    _ingest(single, _write(single, "all.csv", whole))
    assert_frame_equal(series, _read(single))
    limits = Limits.from_settings(load_settings(None))
    assert validate_file(tmp_path / "out.parquet", limits, cross_check=False).success


def test_overlapping_exports_take_a_declaration_once(tmp_path) -> None:
    # February's export re-exports the last ten declarations of January, unchanged
    jan, feb = _month(1, range(0, 30)), _month(1, range(20, 50))
    summary = _ingest(
        tmp_path, [_write(tmp_path, "jan.csv", jan), _write(tmp_path, "feb.csv", feb)]
    )
    out = _read(tmp_path)
    assert len(out) == 50 and out["declaration_id"].is_unique
    assert summary["declarations_in_several_files"] == 10
    assert summary["overlapping_rows_dropped"] == 10
    assert summary["results_taken_from_a_later_file"] == 0


def test_a_result_exported_later_is_kept(tmp_path) -> None:
    jan = _month(1, range(0, 10))
    # D5 was not inspected yet when January was exported; February's file has its result
    feb = _month(1, range(5, 15), {(0, "CTRL"): "O", (0, "DATE_CTRL"): "20/01/2026 09:00"})
    feb.loc[0, "RES"] = "POS"
    summary = _ingest(
        tmp_path, [_write(tmp_path, "jan.csv", jan), _write(tmp_path, "feb.csv", feb)]
    )
    out = _read(tmp_path).set_index("declaration_id")
    assert len(out) == 15
    assert bool(out.loc["D5", "inspected"]) and bool(out.loc["D5", "illicit"])
    assert summary["results_taken_from_a_later_file"] == 1


@pytest.mark.parametrize(
    ("column", "value", "named"),
    [("VAL", "99,00", "declared_value: 15.5 vs 99.0"), ("RES", "NEG", "illicit")],
)
def test_files_that_disagree_on_a_declaration_are_refused_naming_both(
    tmp_path, column, value, named
) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous")
    jan = _month(1, range(0, 10), {(5, "CTRL"): "O", (5, "DATE_CTRL"): "20/01/2026 09:00"})
    jan.loc[5, "RES"] = "POS"
    feb = _month(1, range(5, 15), {(0, "CTRL"): "O", (0, "DATE_CTRL"): "20/01/2026 09:00"})
    feb.loc[0, "RES"] = "POS"
    feb.loc[0, column] = value
    sources = [_write(tmp_path, "jan.csv", jan), _write(tmp_path, "feb.csv", feb)]
    with pytest.raises(ContractError) as caught:
        _ingest(tmp_path, sources, quarantine=tmp_path / "rejected.csv")
    message = str(caught.value)
    assert "D5 in " in message and "jan.csv" in message and "feb.csv" in message
    assert named in message and "\n" not in message
    assert out.read_bytes() == b"previous"  # nothing written


def test_a_bad_value_names_its_file(tmp_path) -> None:
    jan = _month(1, range(0, 10))
    feb = _month(2, range(10, 20), {(3, "VAL"): "douze"})
    sources = [_write(tmp_path, "jan.csv", jan), _write(tmp_path, "feb.csv", feb)]
    with pytest.raises(ContractError, match=r"(?s)feb\.csv: .*declared_value.*D13"):
        _ingest(tmp_path, sources)
    assert not (tmp_path / "out.parquet").exists()


def test_the_quarantine_of_a_series_says_which_file_each_row_is_in(tmp_path) -> None:
    jan = _month(1, range(0, 200), {(7, "KG"): "-1"})
    feb = _month(2, range(200, 400), {(3, "VAL"): "douze"}).rename(columns={"VAL": "VALEUR"})
    sources = [_write(tmp_path, "jan.csv", jan), _write(tmp_path, "feb.csv", feb)]
    summary = _ingest(tmp_path, sources, quarantine=tmp_path / "rejected.csv", max_rejected=0.05)
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str, keep_default_na=False)
    assert rejected[REJECTED_FILE].tolist() == [str(sources[0]), str(sources[1])]
    assert rejected[REJECTED_ROW].tolist() == ["8", "4"]
    assert rejected["ID"].tolist() == ["D7", "D203"]
    # each file's columns as it holds them: the renamed column is its own
    assert rejected["VALEUR"].tolist() == ["", "douze"]
    assert rejected.columns[-1] == REJECTED_REASONS
    assert summary["rows"] == 398 and summary["rows_read"] == 400
    assert summary["rows_rejected"] == 2 and len(_read(tmp_path)) == 398


def test_paths_that_cannot_make_a_series_are_refused(tmp_path) -> None:
    jan = _write(tmp_path, "jan.csv", _month(1, range(0, 5)))
    with pytest.raises(ContractError, match="is a directory: name its exports"):
        _ingest(tmp_path, [tmp_path])
    with pytest.raises(ContractError, match="given twice"):
        _ingest(tmp_path, [jan, tmp_path / "." / "jan.csv"])
    with pytest.raises(ContractError, match="one of the exports read"):
        _ingest(tmp_path, [jan, tmp_path / "out.parquet"])
    with pytest.raises(ContractError, match="no export"):
        _ingest(tmp_path, [])


def test_the_cli_takes_several_exports(tmp_path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    jan = _write(tmp_path, "jan.csv", _month(1, range(0, 10)))
    feb = _write(tmp_path, "feb.csv", _month(2, range(10, 20), {(2, "PAYS"): "ZZZ"}))
    command = [sys.executable, "-m", "serving.main", "ingest", str(jan), str(feb)]
    command += ["--mapping", str(mapping), "--out", str(tmp_path / "out.parquet")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2  # the console script's exit code for bad input
    assert "Traceback" not in run.stderr and "feb.csv" in run.stderr and "ZZZ" in run.stderr
    feb = _write(tmp_path, "feb.csv", _month(2, range(10, 20)))
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert '"files": 2' in run.stdout and len(_read(tmp_path)) == 20


def test_a_missing_file_is_named_before_any_is_read(tmp_path, monkeypatch) -> None:
    import features.intake.ingest as ingest

    jan = _write(tmp_path, "jan.csv", _month(1, range(0, 5)))
    read: list = []
    monkeypatch.setattr(ingest, "read_export", lambda *a, **k: read.append(a) or None)
    with pytest.raises(ContractError, match=r"source file not found: .*fbe\.csv"):
        _ingest(tmp_path, [jan, tmp_path / "fbe.csv"])
    assert read == []
