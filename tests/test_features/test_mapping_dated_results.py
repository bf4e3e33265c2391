"""A result known by its day alone counts from the end of that day, on every path that reads
one through a mapping (``ingest``, ``history join --mapping``, ``outcomes ingest --mapping``),
as a results file's ISO days are read without one. Read at the day's start, a result dated
10/03 counted for a parcel of the same seller declared 10/03 09:00, hours before the
inspection may have been recorded, and a same-day result of a parcel declared at noon was
refused as "before its declaration" (probe 23)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from features.intake.ingest import ingest_file
from features.intake.mapping import apply_outcome_mapping, parse_mapping_text
from tests.test_features.exports import ingest_text

EXPORT = """\
ID;DEPOT;CONTROLE;RESULTAT
A1;10/03/2026 12:00;10/03/2026;POS
A2;10/03/2026 08:00;10/03/2026 09:30;NEG
A3;29/03/2026 01:00;29/03/2026;NEG
A4;11/03/2026 08:00;;
A5;25/10/2026 09:00;25/10/2026;NEG
"""

MAPPING = """\
delimiter: ";"
columns:
  declaration_id: ID
  declared_at: {column: DEPOT, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
  arrival_office: {value: FR001}
  channel: {value: postal}
  hs_code: {value: "950300"}
  gross_weight_kg: {value: 1.0}
  declared_value: {value: 20.0}
  currency: {value: EUR}
  origin_country: {value: CN}
  inspected: {column: CONTROLE, given: true}
  inspected_at: {column: CONTROLE, format: ["%d/%m/%Y %H:%M", "%d/%m/%Y"], timezone: Europe/Paris}
  illicit: {column: RESULTAT, values: {POS: true, NEG: false}}
"""


def _ingest(tmp_path: Path, mapping: str = MAPPING) -> tuple[dict, pd.DataFrame]:
    return ingest_text(tmp_path, EXPORT, mapping)


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_a_result_dated_by_its_day_counts_from_the_next_local_midnight(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        summary, got = _ingest(tmp_path)
    at = got["inspected_at"]
    # the end of 10/03 in Paris (CET): 23:00 UTC; accepted although declared at noon that day
    assert at["A1"] == _utc("2026-03-10T23:00") and got.loc["A1", "illicit"]
    assert at["A2"] == _utc("2026-03-10T08:30")  # a time given: as written
    # the day of the spring change (23 hours) ends at 22:00 UTC, the autumn one (25) at 23:00:
    # not 24 hours on, which left the autumn day's last hour counting the result (probe 25)
    assert at["A3"] == _utc("2026-03-29T22:00")
    assert at["A5"] == _utc("2026-10-25T23:00")
    assert pd.isna(at["A4"])
    assert summary["dated_without_time"] == 3
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "3 result time(s) that are a day alone" in warned
    assert "read as the end of that day" in warned


def test_an_explicit_offset_is_the_mappings_word(tmp_path) -> None:
    """The drafted mappings' `offset: 1 day` is not added twice."""
    mapping = MAPPING.replace(
        "timezone: Europe/Paris}\n  illicit", 'timezone: Europe/Paris, offset: "1 day"}\n  illicit'
    )
    assert 'offset: "1 day"' in mapping
    summary, got = _ingest(tmp_path, mapping)
    assert got.loc["A1", "inspected_at"] == _utc("2026-03-10T23:00")  # one day, not two
    assert got.loc["A2", "inspected_at"] == _utc("2026-03-11T08:30")  # the offset for all
    assert not summary.get("dated_without_time")


def test_a_declaration_dated_by_its_day_stays_at_its_start(tmp_path) -> None:
    """Only a result is moved: a parcel declared on a day is declared from its start."""
    mapping = MAPPING.replace(
        '{column: DEPOT, format: "%d/%m/%Y %H:%M"',
        '{column: DEPOT, format: ["%d/%m/%Y %H:%M", "%d/%m/%Y"]',
    )
    source = tmp_path / "export.csv"
    _ingest(tmp_path, mapping)  # writes the export
    source.write_text(EXPORT.replace("11/03/2026 08:00;;", "11/03/2026;;"))
    (tmp_path / "mapping.yaml").write_text(mapping)
    summary = ingest_file(
        source=source, mapping_path=tmp_path / "mapping.yaml", out=tmp_path / "o.parquet"
    )
    got = pd.read_parquet(tmp_path / "o.parquet").set_index("declaration_id")
    assert got.loc["A4", "declared_at"] == _utc("2026-03-10T23:00")  # 11/03 00:00 Paris
    # counted apart from the results' days (it read 0 for them, probe 32)
    assert summary["declared_without_time"] == 1


@pytest.mark.parametrize(
    ("spec", "cell", "stored"),
    [
        # a database's DATE exported as a time at midnight, and a mixed workbook column's
        # date cell written so (probe 26): days alone
        ("{column: DAY, timezone: Europe/Paris}", "2026-11-21 00:00:00", "2026-11-21T23:00"),
        ('{column: DAY, format: "%Y-%m-%d %H:%M:%S"}', "2026-11-21 00:00:00", "2026-11-22T00:00"),
        # a spreadsheet serial: a whole one is a day, one with a fraction a time (probe 26)
        ("{column: DAY, format: excel}", "46347", "2026-11-22T00:00"),
        ("{column: DAY, format: excel}", "46347.5", "2026-11-21T12:00"),
        # instants: a Unix time, a time written with its zone
        ("{column: DAY, format: epoch_s}", "1763683200", "2025-11-21T00:00"),
        ("{column: DAY}", "2026-11-21T00:00:00Z", "2026-11-21T00:00"),
        (
            '{column: DAY, format: "%d/%m/%Y", timezone: Asia/Seoul}',
            "10/03/2026",
            "2026-03-10T15:00",
        ),
        ("{column: DAY, timezone: Asia/Seoul}", "2026-03-10", "2026-03-10T15:00"),  # ISO
        ("{column: DAY}", "2026-03-10", "2026-03-11T00:00"),  # UTC, as without a mapping
        ("{column: DAY}", "2026-03-10T16:45:00Z", "2026-03-10T16:45"),
    ],
)
def test_a_results_file_read_through_a_mapping_moves_its_days_alone(spec, cell, stored) -> None:
    """`history join --mapping` and `outcomes ingest --mapping` read results so."""
    mapping = parse_mapping_text(
        f"columns:\n  declaration_id: ID\n  inspected_at: {spec}\n"
        "  illicit: {column: R, values: {POS: true, NEG: false}}\n"
    )
    raw = pd.DataFrame({"ID": ["A1"], "DAY": [cell], "R": ["POS"]})
    got = apply_outcome_mapping(raw, mapping)
    assert got["inspected_at"].iloc[0] == _utc(stored)


def test_a_workbook_date_cell_is_a_day_alone(tmp_path) -> None:
    """Probe 25: an .xlsx results column of date cells (no time) was read at the start of its
    day, unwarned, whatever the mapping's format said."""
    import datetime as dt

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["NUM", "DATE_CONTROLE", "RESULTAT"])
    sheet.append(["A1", dt.datetime(2026, 11, 21), "POS"])  # what Excel keeps of a typed date
    sheet.append(["A2", dt.datetime(2026, 11, 21, 16, 30), "NEG"])  # a time: as typed
    sheet.append(["A3", "2026-11-20 08:15", "NEG"])  # a text cell: the column is text (probe 26)
    book.save(tmp_path / "results.xlsx")
    mapping = parse_mapping_text(
        "columns:\n  declaration_id: NUM\n"
        "  inspected_at: {column: DATE_CONTROLE, timezone: Europe/Paris}\n"
        "  illicit: {column: RESULTAT, values: {POS: true, NEG: false}}\n"
    )
    from features.intake.mapping import read_source

    got = apply_outcome_mapping(read_source(tmp_path / "results.xlsx", mapping), mapping)
    assert got["inspected_at"].tolist() == [
        _utc("2026-11-21T23:00"),
        _utc("2026-11-21T15:30"),
        _utc("2026-11-20T07:15"),
    ]
