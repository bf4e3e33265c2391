"""Bring-your-own-data ingest: a YAML mapping turns foreign columns into the contract."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.io import read_declarations
from features.intake.mapping import apply_mapping, load_mapping
from features.intake.mapping import parse_mapping_text as load_mapping_text

FOREIGN_CSV = """\
DECL_NO;LODGED;OFFICE;MODE;OPER;SELLER;S_CTRY;BUYER;ORIGIN;HS;GOODS;QTY;WEIGHT_G;VALUE;IOSS;AEO;KIND;CTRL;CTRL_AT;RESULT;OFFENCE;RECOVERED;BROKER;INCOTERM;INSURED;CLERK
X1;29/03/2026 01:30;FR01;P;LAPOSTE;S9;CN;B1;CN;0610910;T-shirt;2;450;12,50;Y;N;M;Y;30/03/2026 10:00;POS;UV;3,10;BRK1;DAP;13,75;agt1
X2;29/03/2026 03:30;FR01;E;DHL;S9;NO;B2;NO;851762;Earbuds;1;120;1.018,00;N;Y;G;N;;;;;BRK2;DDP;;agt2
X3;15/07/2026 14:05;FR02;C;UPS;S7;US;B3;US;950300;Plush toy;3;900;9,99;N;N;M;Y;16/07/2026 09:00;NEG;;0;BRK1;DAP;10;agt1
"""

MAPPING = """\
delimiter: ";"
columns:
  declaration_id: DECL_NO
  declared_at: {column: LODGED, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
  arrival_office: OFFICE
  channel: {column: MODE, values: {P: postal, E: express, C: courier}}
  operator_id: OPER
  seller_id: SELLER
  seller_country: S_CTRY
  consignee_id: BUYER
  origin_country: ORIGIN
  hs_code: HS
  description: GOODS
  quantity: QTY
  gross_weight_kg: {column: WEIGHT_G, scale: 0.001}
  declared_value: {column: VALUE, decimal: ",", thousands: "."}
  currency: {value: EUR}
  category: {column: KIND, values: {M: merchandise, G: gift}}
  ioss_prepaid: {column: IOSS, true_values: ["Y"], false_values: ["N"]}
  aeo_operator: {column: AEO, true_values: ["Y"], false_values: ["N"]}
  inspected: {column: CTRL, true_values: ["Y"], false_values: ["N"]}
  inspected_at: {column: CTRL_AT, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
  illicit: {column: RESULT, values: {POS: true, NEG: false}}
  offence_type: {column: OFFENCE, values: {UV: undervaluation}}
  revenue_recovered: {column: RECOVERED, decimal: ","}
extras:
  - {column: BROKER, name: broker_id, kind: entity}
  - {column: INCOTERM, name: incoterm, kind: categorical}
  - {column: INSURED, name: insured_value, kind: numeric, decimal: ","}
"""


def _files(tmp_path: Path, csv: str = FOREIGN_CSV, mapping: str = MAPPING) -> tuple[Path, Path]:
    source, mapping_path = tmp_path / "foreign.csv", tmp_path / "mapping.yaml"
    source.write_text(csv, encoding="utf-8")
    mapping_path.write_text(mapping, encoding="utf-8")
    return source, mapping_path


def _raw(csv: str = FOREIGN_CSV) -> pd.DataFrame:
    from io import StringIO

    return pd.read_csv(StringIO(csv), sep=";", dtype="str", keep_default_na=False, na_values=[""])


def test_mapping_produces_the_contract(tmp_path) -> None:
    source, mapping_path = _files(tmp_path)
    out = tmp_path / "out" / "declarations.parquet"
    summary = ingest_file(source=source, mapping_path=mapping_path, out=out)

    assert summary["rows"] == 3
    assert summary["extras"] == {
        "broker_id": "entity",
        "incoterm": "categorical",
        "insured_value": "numeric",
    }
    assert summary["ignored_source_columns"] == 1  # CLERK
    df, contract = read_declarations(out)
    assert [e.name for e in contract.extras] == ["broker_id", "incoterm", "insured_value"]
    # Europe/Paris: 01:30 is CET (UTC+1); 03:30 is after the spring-forward (UTC+2); July is CEST.
    assert df["declared_at"].tolist() == [
        pd.Timestamp("2026-03-29 00:30", tz="UTC"),
        pd.Timestamp("2026-03-29 01:30", tz="UTC"),
        pd.Timestamp("2026-07-15 12:05", tz="UTC"),
    ]
    assert df["channel"].tolist() == ["postal", "express", "courier"]
    assert df["hs_code"].tolist() == ["0610910", "851762", "950300"]  # text: leading zero kept
    assert df["seller_country"].tolist() == ["CN", "NO", "US"]  # Norway is not YAML false
    assert df["declared_value"].tolist() == [12.5, 1018.0, 9.99]
    assert df["gross_weight_kg"].tolist() == pytest.approx([0.45, 0.12, 0.9])
    assert df["currency"].tolist() == ["EUR"] * 3
    assert df["ioss_prepaid"].tolist() == [True, False, False]
    assert df["illicit"].tolist() == [True, pd.NA, False]
    assert df["offence_type"].tolist()[0] == "undervaluation"
    assert df["revenue_recovered"].tolist()[0] == pytest.approx(3.1)
    assert df["broker_id"].tolist() == ["BRK1", "BRK2", "BRK1"]
    assert df["insured_value"].tolist()[0] == 13.75
    assert pd.isna(df["insured_value"].iloc[1])
    assert df["selection_reason"].isna().all()  # optional outcome, not mapped: null


def test_file_without_outcomes_is_a_file_to_score() -> None:
    mapping = load_mapping_text(_without_outcomes(MAPPING))
    df, _ = apply_mapping(_raw(), mapping)
    assert "inspected" not in df.columns
    assert len(df) == 3


def test_only_inspected_mapped_leaves_other_outcomes_null() -> None:
    text = _without_outcomes(MAPPING).replace(
        "extras:", "  inspected: {column: CTRL, true_values: [Y], false_values: [N]}\nextras:"
    )
    df, _ = apply_mapping(_raw(), load_mapping_text(text))
    assert df["inspected"].tolist() == [True, False, True]
    assert df[["inspected_at", "illicit", "offence_type", "revenue_recovered"]].isna().all().all()


def test_values_table_target_outside_the_domain_is_rejected() -> None:
    with pytest.raises(ContractError, match=r"channel: 'drone' not in postal"):
        load_mapping_text(MAPPING.replace("C: courier", "C: drone"))


def test_outcome_without_inspected_is_rejected() -> None:
    text = _without_outcomes(MAPPING).replace(
        "extras:", "  illicit: {column: RESULT, values: {POS: true, NEG: false}}\nextras:"
    )
    with pytest.raises(ContractError, match=r"without 'inspected'.*illicit"):
        apply_mapping(_raw(), load_mapping_text(text))


def test_unmapped_required_fields_are_listed_together() -> None:
    text = MAPPING.replace("  origin_country: ORIGIN\n", "").replace(
        "  arrival_office: OFFICE\n", ""
    )
    with pytest.raises(ContractError, match=r"not mapped: arrival_office, origin_country"):
        apply_mapping(_raw(), load_mapping_text(text))


def test_missing_source_columns_are_listed_together() -> None:
    raw = _raw().drop(columns=["OPER", "BROKER"])
    with pytest.raises(ContractError, match=r"absent from the file: 'OPER', 'BROKER'"):
        apply_mapping(raw, load_mapping_text(MAPPING))


def test_unknown_code_in_values_table_names_field_column_and_row() -> None:
    raw = _raw()
    raw.loc[1, "MODE"] = "Z"
    with pytest.raises(ContractError, match=r"channel \(source column 'MODE'\).*row 2 \(X2\): 'Z'"):
        apply_mapping(raw, load_mapping_text(MAPPING))


def test_bad_date_names_field_column_and_row() -> None:
    raw = _raw()
    raw.loc[2, "LODGED"] = "2026-07-15"
    with pytest.raises(ContractError, match=r"declared_at \(source column 'LODGED'\).*row 3"):
        apply_mapping(raw, load_mapping_text(MAPPING))


def test_all_bad_columns_are_reported_at_once() -> None:
    raw = _raw()
    raw.loc[0, "QTY"] = "two"
    raw.loc[0, "IOSS"] = "maybe"
    with pytest.raises(ContractError) as err:
        apply_mapping(raw, load_mapping_text(MAPPING))
    assert "quantity (source column 'QTY')" in str(err.value)
    assert "ioss_prepaid (source column 'IOSS')" in str(err.value)


def test_unknown_yaml_key_is_rejected(tmp_path) -> None:
    _, mapping_path = _files(
        tmp_path, mapping=MAPPING.replace("scale: 0.001", "scale: 0.001, unit: g")
    )
    with pytest.raises(ContractError, match=r"columns.gross_weight_kg.unit: unknown key"):
        load_mapping(mapping_path)


def test_unknown_contract_field_is_rejected() -> None:
    with pytest.raises(ContractError, match=r"unknown contract field\(s\): parcel_colour"):
        load_mapping_text(MAPPING.replace("columns:\n", "columns:\n  parcel_colour: COLOUR\n"))


def test_malformed_yaml_is_a_contract_error(tmp_path) -> None:
    _, mapping_path = _files(tmp_path, mapping="columns: {declaration_id: [unclosed\n")
    with pytest.raises(ContractError, match="malformed YAML"):
        load_mapping(mapping_path)


def test_extra_name_clashing_with_contract_is_rejected() -> None:
    with pytest.raises(ContractError, match="clashes with a contract field"):
        load_mapping_text(MAPPING.replace("name: incoterm", "name: seller_id"))


def test_worked_example_ingests(tmp_path) -> None:
    root = Path(__file__).resolve().parents[2] / "data" / "examples"
    out = tmp_path / "example.parquet"
    summary = ingest_file(
        source=root / "foreign_declarations.csv", mapping_path=root / "mapping.yaml", out=out
    )
    assert summary["rows"] >= 20
    df, contract = read_declarations(out)
    assert {e.kind for e in contract.extras} == {"entity", "categorical", "numeric"}
    assert df["declared_at"].notna().all()


def _without_outcomes(text: str) -> str:
    outcome_keys = ("inspected", "inspected_at", "illicit", "offence_type", "revenue_recovered")
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not line.strip().startswith(tuple(f"{k}:" for k in outcome_keys))
    )


def test_default_fills_empty_cells_and_is_read_like_a_source_value() -> None:
    raw = _raw()
    raw.loc[1, "KIND"] = None  # empty cell
    text = MAPPING.replace(
        "category: {column: KIND, values: {M: merchandise, G: gift}}",
        "category: {column: KIND, values: {M: merchandise, G: gift}, default: G}",
    )
    out, _ = apply_mapping(raw, load_mapping_text(text))
    assert out["category"].tolist() == ["merchandise", "gift", "merchandise"]


def test_offset_moves_timestamps_after_reading() -> None:
    """Results known the day after a date-only declaration: inspected_at = date + 1 day."""
    raw = _raw()
    raw["DAY"] = ["2026-03-29", "2026-03-29", "2026-07-15"]
    text = MAPPING.replace(
        'declared_at: {column: LODGED, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}',
        'declared_at: {column: DAY, format: "%Y-%m-%d", timezone: Asia/Seoul}',
    ).replace(
        'inspected_at: {column: CTRL_AT, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}',
        'inspected_at: {column: DAY, format: "%Y-%m-%d", timezone: Asia/Seoul, offset: "1 day"}',
    )
    raw.loc[1, "DAY"] = "2026-03-29"
    out, _ = apply_mapping(raw, load_mapping_text(text))
    # local midnight in Seoul (UTC+9) is 15:00 UTC the day before
    assert out["declared_at"].iloc[0] == pd.Timestamp("2026-03-28T15:00Z")
    assert out["inspected_at"].iloc[0] == pd.Timestamp("2026-03-29T15:00Z")


def test_a_format_ending_in_a_literal_z_reads_utc_whatever_the_timezone() -> None:
    """``...%SZ`` says the values are UTC: read in the mapping's timezone (Paris) they were an
    hour early, unsaid (probe 32). ``%z`` read them right already."""
    raw = _raw()
    raw["STAMP"] = ["2026-03-29T10:30:00Z", "2026-03-29T11:00:00Z", "2026-07-15T08:00:00Z"]
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z"):
        text = MAPPING.replace(
            'declared_at: {column: LODGED, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}',
            f'declared_at: {{column: STAMP, format: "{fmt}", timezone: Europe/Paris}}',
        )
        out, _ = apply_mapping(raw, load_mapping_text(text))
        assert out["declared_at"].tolist() == [
            pd.Timestamp("2026-03-29T10:30Z"),
            pd.Timestamp("2026-03-29T11:00Z"),
            pd.Timestamp("2026-07-15T08:00Z"),
        ], fmt


def _week(rows: int, layout: str) -> pd.DataFrame:
    """``rows`` copies of the foreign rows declared over 1-9 November 2026, in ``layout``."""
    raw = pd.concat([_raw()] * (rows // 3 + 1), ignore_index=True).head(rows)
    raw["DECL_NO"] = [f"W{i:04d}" for i in range(rows)]
    days = pd.Timestamp("2026-11-01 08:00") + pd.to_timedelta(
        [i * (8 * 24 * 60 // rows) for i in range(rows)], unit="min"
    )
    raw["LODGED"] = days.strftime(layout)
    return raw


def test_dates_written_in_the_other_day_month_order_are_refused_naming_the_fix() -> None:
    """An export switched to month/day: its week of 1-9 November read day first became
    11 January .. 11 September, passed the gate and went into the history (probe 32)."""
    mapping = load_mapping_text(MAPPING)
    with pytest.raises(ContractError) as refused:
        apply_mapping(_week(60, "%m/%d/%Y %H:%M"), mapping)
    message = str(refused.value)
    assert "column 'LODGED'" in message and "from 2026-01-11 to 2026-09-11" in message
    assert "within 2026-11-01 .. 2026-11-09" in message
    assert "give format '%m/%d/%Y %H:%M'" in message
    # the same week written day first, as the mapping says, reads as it is
    out, _ = apply_mapping(_week(60, "%d/%m/%Y %H:%M"), mapping)
    assert out["declared_at"].min() >= pd.Timestamp("2026-11-01", tz="UTC")
    assert out["declared_at"].max() < pd.Timestamp("2026-11-10", tz="UTC")
    # a handful of rows is not judged (a swap cannot be told from chance on them)
    apply_mapping(_week(12, "%m/%d/%Y %H:%M"), mapping)


def test_a_long_column_is_judged_on_a_sample_and_confirmed_on_every_value(monkeypatch) -> None:
    import features.intake.mapping as mapping_module

    monkeypatch.setattr(mapping_module, "SWAP_SAMPLE", 25)  # 60 rows: every second sampled
    mapping = load_mapping_text(MAPPING)
    with pytest.raises(ContractError, match="give format '%m/%d/%Y %H:%M'"):
        apply_mapping(_week(60, "%m/%d/%Y %H:%M"), mapping)
    # one value the sample skipped has a day above 12: the column reads as written
    raw = _week(60, "%m/%d/%Y %H:%M")
    raw.loc[1, "LODGED"] = "13/11/2026 09:00"
    out, _ = apply_mapping(raw, mapping)
    assert out["declared_at"].iloc[1] == pd.Timestamp("2026-11-13T08:00Z")


def test_constant_inspected_for_an_administration_that_inspects_everything() -> None:
    text = MAPPING.replace(
        '  inspected: {column: CTRL, true_values: ["Y"], false_values: ["N"]}\n',
        "  inspected: {value: true}\n",
    ).replace(
        "illicit: {column: RESULT, values: {POS: true, NEG: false}}",
        "illicit: {column: RESULT, values: {POS: true, NEG: false}, default: NEG}",
    )
    raw = _raw()
    raw["CTRL_AT"] = raw["CTRL_AT"].fillna("30/03/2026 12:00")
    out, _ = apply_mapping(raw, load_mapping_text(text))
    assert out["inspected"].tolist() == [True, True, True]
    assert out["illicit"].tolist() == [True, False, False]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ('{column: LODGED, offset: "one day"}', "is not a duration"),
        ("{value: EUR, default: USD}", "'default' fills empty cells"),
    ],
)
def test_bad_default_or_offset_is_a_mapping_error(spec: str, problem: str) -> None:
    text = MAPPING.replace(
        'declared_at: {column: LODGED, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}',
        f"declared_at: {spec}",
    )
    with pytest.raises(ContractError, match=problem):
        load_mapping_text(text)


def test_optional_fields_may_stay_unmapped() -> None:
    optional = ("platform_id", "seller_id", "description", "quantity", "category", "ioss_prepaid")
    lines = [line for line in MAPPING.splitlines() if not line.strip().startswith(optional)]
    out, _ = apply_mapping(_raw(), load_mapping_text("\n".join(lines) + "\n"))
    assert out[list(optional)].isna().all().all()
