"""What a Brazilian-style export taught the ingest (probe, 2026-12): workbook numbers joined to
their unit keep their decimals, currency symbols are refused with the mapping's fix, revenue
taken as EUR and local times taken as UTC are said, and a UTF-8 file read as cp1252 is named."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file

CSV = """\
ID;DATA;UNIDADE;NCM;PESO;UN;VALOR;MOEDA;ORIGEM;CANAL;TRIBUTO
BR1;01/08/2026 10:00;0101;8517.13.00;1,506;kg;100,00;BRL;CN;S;62,50
BR2;01/08/2026 11:00;0101;8517.13.00;350;g;20,00;USD;CN;N;
BR3;02/08/2026 09:30;0101;6109.10.00;0,409;kg;30,00;CNY;CN;N;
"""

MAPPING = """\
delimiter: ";"
outcomes_only_if_inspected: true
columns:
  declaration_id: ID
  declared_at: {column: DATA, format: "%d/%m/%Y %H:%M"TZ}
  arrival_office: UNIDADE
  channel: {value: postal}
  hs_code: NCM
  gross_weight_kg: {columns: [PESO, UN], units: {g: 0.001, kg: 1}, decimal: ",", thousands: "."}
  declared_value: {column: VALOR, decimal: ",", thousands: "."}
  currency: MOEDA
  origin_country: ORIGEM
  inspected: {column: CANAL, true_values: [S], false_values: [N]}
  inspected_at: {column: DATA, format: "%d/%m/%Y %H:%M"TZ, offset: "1 day"}
  illicit: {column: CANAL, values: {S: true, N: false}}
  revenue_recovered: {column: TRIBUTO, decimal: ","REVENUE}
"""

ZONE = ", timezone: America/Sao_Paulo"


def _mapping(tz: str = ZONE, revenue: str = ", currency: BRL") -> str:
    return MAPPING.replace("TZ", tz).replace("REVENUE", revenue)


def _ingest(tmp_path: Path, source: Path, mapping: str, **kwargs) -> tuple[dict, pd.DataFrame]:
    spec = tmp_path / "mapping.yaml"
    spec.write_text(mapping, encoding="utf-8")
    out = tmp_path / "out.parquet"
    summary = ingest_file(
        source=source, mapping_path=spec, out=out, fx_to_base={"EUR": 1, "BRL": 0.2}, **kwargs
    )
    return summary, pd.read_parquet(out).set_index("declaration_id")


def _csv(tmp_path: Path, text: str = CSV) -> Path:
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_workbook_numbers_joined_to_their_unit_keep_their_decimals(tmp_path) -> None:
    # the CSV's mapping (decimal ",", thousands ".") reused on the workbook of the same export,
    # whose weights are typed numbers: 1.506 kg was read 1506 kg
    frame = pd.read_csv(_csv(tmp_path), sep=";", dtype=str)
    frame["PESO"] = [1.506, 350, 0.409]
    frame["VALOR"] = [100.0, 20.0, 30.0]
    book = tmp_path / "export.xlsx"
    frame.to_excel(book, index=False, engine="openpyxl")
    _, got = _ingest(tmp_path, book, _mapping().replace('delimiter: ";"\n', ""))
    assert got["gross_weight_kg"].tolist() == pytest.approx([1.506, 0.35, 0.409])


def test_a_joined_parquet_number_column_keeps_its_decimals(tmp_path) -> None:
    frame = pd.read_csv(_csv(tmp_path), sep=";", dtype=str)
    frame["PESO"] = [1.506, 350.0, 0.409]
    source = tmp_path / "export.parquet"
    frame.to_parquet(source)
    _, got = _ingest(tmp_path, source, _mapping().replace('delimiter: ";"\n', ""))
    assert got["gross_weight_kg"].tolist() == pytest.approx([1.506, 0.35, 0.409])


@pytest.mark.parametrize(
    ("written", "hint"), [("R$", "'R$' (write BRL)"), ("US$", "'US$' (write USD)"), ("ZZZ", "")]
)
def test_a_currency_that_is_no_iso_code_stops_the_ingest_with_the_mapping_fix(
    tmp_path, written, hint
) -> None:
    source = _csv(tmp_path, CSV.replace(";20,00;USD;", f";20,00;{written};"))
    with pytest.raises(ContractError) as refused:
        _ingest(tmp_path, source, _mapping())
    message = str(refused.value)
    assert "currency (source column 'MOEDA'): not ISO 4217 currency codes" in message
    assert hint in message and "values: {" in message and "unlisted: keep" in message
    assert "BR2" in message and "fx_to_base" not in message


def test_currency_symbols_are_set_aside_by_the_quarantine(tmp_path) -> None:
    source = _csv(tmp_path, CSV.replace(";20,00;USD;", ";20,00;R$;"))
    rejected = tmp_path / "rejected.csv"
    summary, got = _ingest(tmp_path, source, _mapping(), quarantine=rejected, max_rejected=0.5)
    assert summary["rows_rejected"] == 1
    assert list(got.index) == ["BR1", "BR3"]
    assert "write BRL" in pd.read_csv(rejected, dtype=str)["parcelrisk_reasons"].iloc[0]


def test_a_values_table_maps_the_symbols(tmp_path) -> None:
    source = _csv(tmp_path, CSV.replace(";20,00;USD;", ";20,00;US$;"))
    mapping = _mapping().replace(
        "currency: MOEDA", 'currency: {column: MOEDA, values: {"US$": USD}, unlisted: keep}'
    )
    _, got = _ingest(tmp_path, source, mapping)
    assert got.loc["BR2", "currency"] == "USD"


def test_revenue_without_a_currency_is_taken_as_eur_and_said(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="features.intake.mapping"):
        summary, got = _ingest(tmp_path, _csv(tmp_path), _mapping(revenue=""))
    assert got.loc["BR1", "revenue_recovered"] == pytest.approx(62.5)  # as written
    assert summary["revenue_recovered_currency"] == "EUR (assumed: the mapping gives none)"
    assert "is read as EUR" in caplog.text
    assert "none of the 1 rows with an amount declares its value in EUR (BRL 100%)" in caplog.text


def test_revenue_said_to_be_eur_is_not_warned(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="features.intake.mapping"):
        summary, _ = _ingest(tmp_path, _csv(tmp_path), _mapping(revenue=", currency: EUR"))
    assert "read as EUR" not in caplog.text
    assert summary["revenue_recovered_currency"] == "EUR (as the mapping says)"
    assert "revenue_recovered_converted_to_eur" not in summary  # nothing was converted


def test_local_times_read_as_utc_are_warned_against_the_administrations_zone(
    tmp_path, caplog
) -> None:
    source = _csv(tmp_path)
    with caplog.at_level(logging.WARNING, logger="features.intake.mapping"):
        summary, _ = _ingest(tmp_path, source, _mapping(tz=""), timezone="America/Sao_Paulo")
    assert summary["times_read_as_utc"] == ["declared_at", "inspected_at"]
    assert "add timezone: America/Sao_Paulo to the spec" in caplog.text


@pytest.mark.parametrize(
    ("tz", "zone"),
    [
        (ZONE, "America/Sao_Paulo"),  # the spec gives the zone
        (", timezone: UTC", "America/Sao_Paulo"),  # the spec says the times are UTC
        ("", "UTC"),  # the administration works in UTC
        ("", None),  # no params at hand
    ],
)
def test_times_with_a_zone_said_are_not_warned(tmp_path, caplog, tz, zone) -> None:
    with caplog.at_level(logging.WARNING, logger="features.intake.mapping"):
        summary, _ = _ingest(tmp_path, _csv(tmp_path), _mapping(tz=tz), timezone=zone)
    assert "times_read_as_utc" not in summary and "is read as UTC" not in caplog.text
    assert "declared_at_zone_unlike_features" not in summary


def test_local_times_of_another_zone_than_the_calendar_features_are_warned(
    tmp_path, caplog
) -> None:
    """Dates read as Sao Paulo's local times, calendar features in UTC: every weekday and hour
    the model sees is the UTC one; said, with the params key to set."""
    with caplog.at_level(logging.WARNING, logger="features.intake.mapping"):
        summary, _ = _ingest(tmp_path, _csv(tmp_path), _mapping(tz=ZONE), timezone="UTC")
    assert summary["declared_at_zone_unlike_features"] == "America/Sao_Paulo"
    assert "set features.timezone: America/Sao_Paulo in params.yaml" in caplog.text


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("2026-08-01T10:00:00-03:00", True),
        ("2026-08-01 10:00+0200", True),
        ("2026-08-01T10:00:00Z", True),
        ("01-08-2026", False),  # ends in "-2026": a year, not an offset
        ("2026-08-01", False),
        ("01/08/2026 10:00", False),
    ],
)
def test_an_offset_is_read_only_after_a_time_of_day(text, offset) -> None:
    from features.intake.mapping import _WITH_OFFSET

    assert bool(_WITH_OFFSET.search(text)) is offset


def test_times_written_with_their_offset_are_not_warned(tmp_path, caplog) -> None:
    text = CSV.replace("01/08/2026 10:00", "2026-08-01T10:00:00-03:00")
    text = text.replace("01/08/2026 11:00", "2026-08-01T11:00:00-03:00")
    text = text.replace("02/08/2026 09:30", "2026-08-02T09:30:00Z")
    mapping = _mapping(tz="").replace('format: "%d/%m/%Y %H:%M"', "format: ISO8601")
    with caplog.at_level(logging.WARNING, logger="features.intake.mapping"):
        summary, _ = _ingest(tmp_path, _csv(tmp_path, text), mapping, timezone="Asia/Seoul")
    assert "times_read_as_utc" not in summary


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("ORIGEM_PAÍS", "`encoding: utf-8-sig` (the file is UTF-8 text)"),  # 0x8d: no cp1252
        ("ORIGEM_PAÇO", "set encoding: utf-8-sig"),  # decodes, into mojibake and a BOM
    ],
)
def test_a_utf8_file_read_as_cp1252_is_named_as_an_encoding_problem(
    tmp_path, column, expected
) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(CSV.replace("ORIGEM", column).encode("utf-8-sig"))
    mapping = (
        _mapping()
        .replace("ORIGEM", column)
        .replace('delimiter: ";"', 'delimiter: ";"\nencoding: cp1252')
    )
    with pytest.raises(ContractError) as refused:
        _ingest(tmp_path, source, mapping)
    assert expected in str(refused.value)


def test_a_column_renamed_between_exports_is_read_by_its_alias(tmp_path) -> None:
    mapping = _mapping().replace(
        "revenue_recovered: {column: TRIBUTO,",
        'revenue_recovered: {column: TRIBUTO, aliases: ["VLR TRIBUTO"],',
    )
    before, got_before = _ingest(tmp_path, _csv(tmp_path), mapping)
    renamed = CSV.replace(";TRIBUTO\n", ";VLR TRIBUTO\n")
    after, got_after = _ingest(tmp_path, _csv(tmp_path, renamed), mapping)
    assert "columns_read_by_alias" not in before
    assert after["columns_read_by_alias"] == {"revenue_recovered": "VLR TRIBUTO"}
    assert "VLR TRIBUTO" not in after["ignored_source_column_names"]
    pd.testing.assert_frame_equal(got_before, got_after)


def test_a_file_with_both_names_of_a_column_is_refused(tmp_path) -> None:
    mapping = _mapping().replace(
        "revenue_recovered: {column: TRIBUTO,",
        "revenue_recovered: {column: TRIBUTO, aliases: [UN],",
    )
    with pytest.raises(ContractError, match="the file has 'TRIBUTO' and 'UN'"):
        _ingest(tmp_path, _csv(tmp_path), mapping)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{value: 1.0, aliases: [X]}", "'aliases' are other names of a 'column'"),
        ("{column: TRIBUTO, aliases: [TRIBUTO]}", "must name other columns"),
        ("{column: TRIBUTO, aliases: []}", "must name other columns"),
    ],
)
def test_aliases_must_be_other_names_of_a_column(spec, expected) -> None:
    from features.intake.mapping import parse_mapping_text

    text = _mapping().replace(
        'revenue_recovered: {column: TRIBUTO, decimal: ",", currency: BRL}',
        f"revenue_recovered: {spec}",
    )
    with pytest.raises(ContractError, match=expected):
        parse_mapping_text(text)
