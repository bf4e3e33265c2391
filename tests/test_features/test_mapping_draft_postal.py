"""`mapping draft` on a postal export in the shape of UPU ITMATT / CN23 content lines (probe 11):
the mail item (its S10 barcode) is the declaration, never the line number; the office of
destination is the arrival office; the item's gross weight, not the lines' net grams; CN23
category codes read; the addressee's address held as a pseudonym."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml

from features.intake.draft import draft_mapping


def _itmatt(items: int = 300, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(items):
        barcode = f"RR{100000000 + i * 7:09d}CN"
        lines = int(rng.integers(1, 4))
        gross = round(float(rng.uniform(0.2, 3.0)), 3)
        for line in range(1, lines + 1):
            rows.append(
                {
                    "MAILITM_FID": barcode,
                    "ITEM_NO": line,
                    "POSTING_DATE": f"2026-{1 + i % 9:02d}-{1 + i % 27:02d}",
                    "ORIG_OFFICE": f"CN{100 + i % 5}",
                    "DEST_OFFICE": f"PLWAW{i % 3}",
                    "SENDER_NAME": f"SHOP {i % 40}",
                    "ADDRESSEE_NAME": f"Person {i}",
                    "ADDRESSEE_ADDR": f"ul. Polna {i % 200}",
                    "ORIG_COUNTRY_CD": "CN",
                    "CONTENT_DESC": ["phone case", "t-shirt", "toy car"][line % 3],
                    "CONTENT_PIECES": int(rng.integers(1, 5)),
                    "CONTENT_NET_WEIGHT_G": int(gross * 1000 * 0.8 / lines),
                    "ITEM_GROSS_WEIGHT_KG": gross,
                    "CONTENT_VALUE": round(float(rng.uniform(2, 60)), 2),
                    "VALUE_CURRENCY": "USD",
                    "CONTENT_CATEGORY_CD": ["91", "31", "32", "21", "11"][i % 5],
                }
            )
    return pd.DataFrame(rows).astype("string")


def test_the_mail_item_is_the_declaration_and_its_lines_its_items() -> None:
    draft = draft_mapping(_itmatt())
    drafted = yaml.safe_load(draft.text)
    columns = drafted["columns"]
    assert columns["declaration_id"] == "MAILITM_FID"  # not ITEM_NO, the line number
    assert drafted["items"]["gross_weight_kg"] == "agree"
    assert columns["arrival_office"] == "DEST_OFFICE"  # not the office of posting
    assert columns["gross_weight_kg"] == "ITEM_GROSS_WEIGHT_KG"  # not the lines' net grams
    assert columns["category"]["values"] == {
        "11": "return",
        "21": "sample",
        "31": "gift",
        "32": "documents",
        "91": "merchandise",
    }
    # the addressee's name and address: drafted personal and commented out, read only if
    # opted in (data minimisation, probe 18 M5)
    assert draft.personal == ["ADDRESSEE_NAME", "ADDRESSEE_ADDR"]
    assert [e["column"] for e in drafted["extras"]] == ["ORIG_OFFICE", "CONTENT_NET_WEIGHT_G"]
    commented = {
        line.split("column: ")[1].split(",")[0]: line
        for line in draft.text.splitlines()
        if line.startswith("  # - ")
    }
    assert "personal: true" in commented["ADDRESSEE_ADDR"]
    # a person's name is one pseudonym whatever its case
    assert "personal: true, fold: true}" in commented["ADDRESSEE_NAME"]


def test_a_senders_name_as_its_id_is_one_seller_whatever_its_spelling() -> None:
    """1,443 senders read as 2,269 sellers, each variant a new one with no history: a bad
    sender escaped by the case of its name (probe 11). The draft folds a name used as an id."""
    from features.intake.mapping import apply_mapping, parse_mapping_text

    export = _itmatt()
    export.loc[::2, "SENDER_NAME"] = export.loc[::2, "SENDER_NAME"].str.lower()
    export.loc[1::4, "SENDER_NAME"] = export.loc[1::4, "SENDER_NAME"].str.replace(" ", "   ")
    drafted = draft_mapping(export)
    spec = yaml.safe_load(drafted.text)["columns"]["seller_id"]
    assert spec == {"column": "SENDER_NAME", "fold": True}
    mapping = parse_mapping_text(
        drafted.text.replace("# channel: TODO", "channel: {value: postal}  #")
    )
    declarations, _ = apply_mapping(export, mapping)
    assert declarations["seller_id"].nunique() == 40  # SHOP 0 .. SHOP 39, one each
    assert set(declarations["seller_id"]) == {f"SHOP {i}" for i in range(40)}


def test_a_seizure_logs_result_column_is_the_result() -> None:
    """SEIZED, DUTY and RELEASED were listed as "not mapped" and illicit left a TODO: only a
    column of two words was read as yes/no (probe 11)."""
    log = pd.DataFrame(
        {
            "ITEM_ID": [f"RR{100000000 + i:09d}CN" for i in range(60)],
            "CONTROL_DATE": [f"{1 + i % 28:02d}-10-2026" for i in range(60)],
            "RESULT": (["RELEASED"] * 4 + ["SEIZED", "DUTY"]) * 10,
        }
    ).astype("string")
    columns = yaml.safe_load(draft_mapping(log, results=True).text)["columns"]
    assert columns["illicit"] == {
        "column": "RESULT",
        "true_values": ["DUTY", "SEIZED"],
        "false_values": ["RELEASED"],
    }


def test_ingest_says_of_spellings_and_of_items_without_an_hs_code(tmp_path, caplog) -> None:
    """An ingest mapped without fold wrote 159 sellers for 94 senders, and 1,986 declarations
    without an HS code, without a word (probe 11)."""
    import logging

    from features.intake.ingest import ingest_file

    export = _itmatt(items=120)
    export["HS_TARIFF_NO"] = ["610910", None, "950300"] * (len(export) // 3) + [None] * (
        len(export) % 3
    )
    lower = export["MAILITM_FID"].str[2:11].astype(int) % 3 == 0  # whole mail items
    export.loc[lower, "SENDER_NAME"] = export.loc[lower, "SENDER_NAME"].str.lower()
    source = tmp_path / "itmatt.csv"
    export.to_csv(source, index=False)
    text = draft_mapping(export).text.replace("# channel: TODO", "channel: {value: postal}  #")
    mapping = yaml.safe_load(text)
    mapping["columns"]["seller_id"] = "SENDER_NAME"  # the hand mapping, without fold
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    with caplog.at_level(logging.WARNING):
        summary = ingest_file(source=source, mapping_path=path, out=tmp_path / "out.parquet")
    assert summary["ids_one_once_folded"]["seller_id"] > 0
    assert summary["hs_code_empty"] > 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "map the column with fold: true" in said and "hs_code: empty on" in said


def test_fold_reads_names_only() -> None:
    import pytest

    from features.intake.contract import ContractError
    from features.intake.mapping import parse_mapping_text

    with pytest.raises(ContractError, match="'fold' reads names as one party"):
        parse_mapping_text(
            "columns:\n  declaration_id: ID\n  gross_weight_kg: {column: W, fold: true}\n"
        )
