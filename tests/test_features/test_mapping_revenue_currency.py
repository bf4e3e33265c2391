"""Recovered revenue recorded in the administration's currency (BRL, XOF, the row's declared
currency) is put in EUR, the contract's unit, at ingest: never kept on the wrong scale, and a
missing rate is named, not guessed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.mapping import parse_mapping_text

EXPORT = """\
ID;DATE;OFFICE;HS;KG;VALUE;CUR;ORIGIN;CHECKED;RESULT;REVENUE
B1;2026-08-01;BR01;610910;1,0;100,00;BRL;CN;S;POS;62,50
B2;2026-08-01;BR01;610910;1,0;20,00;USD;CN;S;POS;10,00
B3;2026-08-02;BR01;851762;2,0;30,00;BRL;CN;S;NEG;
B4;2026-08-02;BR01;851762;2,0;30,00;BRL;CN;N;;
"""

MAPPING = """\
outcomes_only_if_inspected: true
columns:
  declaration_id: ID
  declared_at: {column: DATE, timezone: America/Sao_Paulo}
  arrival_office: OFFICE
  channel: {value: postal}
  hs_code: HS
  gross_weight_kg: {column: KG, decimal: ","}
  declared_value: {column: VALUE, decimal: ","}
  currency: CUR
  origin_country: ORIGIN
  inspected: {column: CHECKED, true_values: [S], false_values: [N]}
  inspected_at: {column: DATE, timezone: America/Sao_Paulo, offset: "1 day"}
  illicit: {column: RESULT, values: {POS: true, NEG: false}}
  revenue_recovered: {column: REVENUE, decimal: ",", currency: %s}
"""

RATES = {"EUR": 1.0, "BRL": 0.2, "USD": 0.9}


def _ingest(
    tmp_path: Path,
    currency: str,
    export: str = EXPORT,
    fx: dict[str, float] | None = RATES,
    **kwargs,
) -> tuple[dict, pd.DataFrame]:
    source, spec = tmp_path / "export.csv", tmp_path / "mapping.yaml"
    source.write_text(export)
    spec.write_text(MAPPING % currency)
    out = tmp_path / "out.parquet"
    summary = ingest_file(source=source, mapping_path=spec, out=out, fx_to_base=fx, **kwargs)
    return summary, pd.read_parquet(out).set_index("declaration_id")


def test_revenue_in_one_currency_is_put_in_eur(tmp_path) -> None:
    summary, got = _ingest(tmp_path, "BRL")
    assert got.loc["B1", "revenue_recovered"] == pytest.approx(12.5)  # 62.50 BRL x 0.2
    assert got.loc["B2", "revenue_recovered"] == pytest.approx(2.0)  # the column's, not the row's
    assert got.loc[["B3", "B4"], "revenue_recovered"].isna().all()  # empty stays empty
    assert summary["revenue_recovered_converted_to_eur"] == {"from": "BRL", "rows": 2}


def test_revenue_in_each_rows_currency(tmp_path) -> None:
    summary, got = _ingest(tmp_path, "row")
    assert got.loc["B1", "revenue_recovered"] == pytest.approx(12.5)
    assert got.loc["B2", "revenue_recovered"] == pytest.approx(9.0)  # 10 USD x 0.9
    assert summary["revenue_recovered_converted_to_eur"]["rows"] == 2
    # the declared values stay as declared: they are converted in features, row by row
    assert got.loc["B1", "declared_value"] == pytest.approx(100.0)


def test_another_base_currency_converts_through_its_eur_rate(tmp_path) -> None:
    # a West-African administration: rates to XOF; revenue recorded in XOF
    fx = {"XOF": 1.0, "EUR": 655.957, "BRL": 120.0, "USD": 600.0}
    export = EXPORT.replace("62,50", "655957,00")
    _, got = _ingest(tmp_path, "XOF", export=export, fx=fx)
    assert got.loc["B1", "revenue_recovered"] == pytest.approx(1000.0)


def test_without_a_currency_the_amounts_are_taken_as_eur(tmp_path) -> None:
    source, spec = tmp_path / "export.csv", tmp_path / "mapping.yaml"
    source.write_text(EXPORT)
    spec.write_text(MAPPING.replace(", currency: %s", ""))
    out = tmp_path / "out.parquet"
    summary = ingest_file(source=source, mapping_path=spec, out=out)
    assert pd.read_parquet(out)["revenue_recovered"].max() == pytest.approx(62.5)
    assert "revenue_recovered_converted_to_eur" not in summary


def test_a_row_currency_without_a_rate_stops_the_ingest_naming_it(tmp_path) -> None:
    export = EXPORT.replace("20,00;USD", "20,00;XOF")
    with pytest.raises(ContractError) as refused:
        _ingest(tmp_path, "row", export=export)
    message = str(refused.value)
    assert "revenue_recovered" in message and "XOF" in message and "B2" in message
    assert "fx_to_base" in message
    assert not (tmp_path / "out.parquet").exists()


def test_a_row_currency_without_a_rate_is_quarantined_with_its_reason(tmp_path) -> None:
    export = EXPORT.replace("20,00;USD", "20,00;XOF")
    rejected = tmp_path / "rejected.csv"
    summary, got = _ingest(tmp_path, "row", export=export, quarantine=rejected, max_rejected=0.5)
    assert list(got.index) == ["B1", "B3", "B4"]
    assert got.loc["B1", "revenue_recovered"] == pytest.approx(12.5)
    held = pd.read_csv(rejected, sep=",", dtype=str)
    assert held["ID"].tolist() == ["B2"]
    assert "XOF" in held["parcelrisk_reasons"].iloc[0]
    assert summary["rows_rejected"] == 1


def test_a_row_without_revenue_needs_no_rate(tmp_path) -> None:
    # B3 and B4 have no amount: their currency's rate is not needed
    export = EXPORT.replace("30,00;BRL;CN;S;NEG", "30,00;XOF;CN;S;NEG")
    _, got = _ingest(tmp_path, "row", export=export)
    assert got.loc["B3", "currency"] == "XOF"


@pytest.mark.parametrize(
    ("fx", "expected"),
    [
        ({"EUR": 1.0, "USD": 0.9}, "no rate for BRL"),
        ({"XOF": 1.0, "BRL": 120.0}, "no rate for EUR"),
        (None, "needs the exchange rates"),
    ],
)
def test_a_missing_rate_is_refused_before_reading(tmp_path, fx, expected) -> None:
    with pytest.raises(ContractError, match=expected):
        _ingest(tmp_path, "BRL", fx=fx)
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MAPPING % "RMB", "write CNY"),
        (MAPPING % "brl", "write BRL"),
        (MAPPING % "reais", "neither an ISO 4217 code"),
        ((MAPPING % "row").replace("  currency: CUR\n", ""), "'currency' is not mapped"),
        (
            (MAPPING % "BRL").replace(
                'VALUE, decimal: ","}', 'VALUE, decimal: ",", currency: BRL}'
            ),
            "declared_value: 'currency' converts revenue_recovered only",
        ),
        (
            (MAPPING % "BRL")
            + "extras:\n  - {column: FOB, name: fob, kind: numeric, currency: BRL}\n",
            "amount: true",
        ),
    ],
)
def test_mapping_mistakes_about_the_currency_are_named(text, expected) -> None:
    with pytest.raises(ContractError, match=expected):
        parse_mapping_text(text)
