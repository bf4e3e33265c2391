"""Consignee ids written in two cases are said at ingest, before they are keyed (probe 33
MEDIUM-1: `k0000003` and `K0000003` became two consignees each with half a history, with no
word, where seller ids so written are warned)."""

from __future__ import annotations

import logging

import pandas as pd

from features.intake.ingest import ingest_file

MAPPING = """\
columns:
  declaration_id: ID
  declared_at: AT
  arrival_office: {value: FR01}
  channel: {value: postal}
  hs_code: HS
  declared_value: VALUE
  currency: {value: EUR}
  gross_weight_kg: KG
  origin_country: {value: CN}
  consignee_id: BUYER
extras:
  - {column: TAX_NO, name: tax_no, kind: entity, personal: true}
"""


def _export(tmp_path) -> tuple:
    n = 40
    buyers = [f"K{i % 10:07d}" for i in range(n)]
    buyers[1::4] = [b.lower() for b in buyers[1::4]]  # a clerk's typing: 'k0000001'
    frame = pd.DataFrame(
        {
            "ID": [f"D{i:03d}" for i in range(n)],
            "AT": [f"2026-01-{1 + i % 28:02d} 10:00" for i in range(n)],
            "HS": ["610910"] * n,
            "VALUE": ["12.50"] * n,
            "KG": ["0.35"] * n,
            "BUYER": buyers,
            "TAX_NO": [f"TX{i % 5}" for i in range(n)],  # one spelling each
        }
    )
    source = tmp_path / "export.csv"
    frame.to_csv(source, index=False)
    return source, frame


def test_consignee_spellings_are_said_before_they_are_keyed(tmp_path, caplog) -> None:
    source, frame = _export(tmp_path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    with caplog.at_level(logging.WARNING):
        summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    written = frame["BUYER"].nunique()
    folded = frame["BUYER"].str.upper().nunique()
    assert summary["personal_ids_one_once_folded"] == {"consignee_id": written - folded}
    said = [r.getMessage() for r in caplog.records if "consignee_id" in r.getMessage()]
    assert len(said) == 1 and "map the column with fold: true" in said[0]
    assert f"{written} ids are {folded} once case and spacing are ignored" in said[0]
    # personal: the message names the column, never a value
    assert not any(buyer in said[0] for buyer in frame["BUYER"])
    assert pd.read_parquet(tmp_path / "out.parquet")["consignee_id"].nunique() == written

    # with fold: true, one person whatever the case, and nothing to say
    caplog.clear()
    mapping.write_text(
        MAPPING.replace("consignee_id: BUYER", "consignee_id: {column: BUYER, fold: true}")
    )
    with caplog.at_level(logging.WARNING):
        summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "folded.parquet")
    assert "personal_ids_one_once_folded" not in summary
    assert not [r for r in caplog.records if "consignee_id" in r.getMessage()]
    assert pd.read_parquet(tmp_path / "folded.parquet")["consignee_id"].nunique() == folded


def test_a_personal_extra_is_judged_too(tmp_path, caplog) -> None:
    source, frame = _export(tmp_path)
    frame["TAX_NO"] = [f"tx{i % 5}" if i % 3 == 0 else f"TX{i % 5}" for i in range(len(frame))]
    frame.to_csv(source, index=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    with caplog.at_level(logging.WARNING):
        summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert summary["personal_ids_one_once_folded"]["tax_no"] == 5
