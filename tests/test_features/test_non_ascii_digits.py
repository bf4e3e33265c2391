"""Codes, numbers and times in Arabic-Indic or other non-ASCII digits, read as their ASCII
digits in a request (``Declaration``, its numeric extras) as in a mapped file, and in the
mapping draft (probe 40: /score refused ``"٦٤٠٣٩٩"`` that ingest read as 640399; the draft
took a column of amounts, 15% in Arabic-Indic digits, for an entity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.intake.columns import declarations_frame
from features.intake.contract import Contract, Declaration, ExtraColumn, read_ascii_digits
from features.intake.draft import draft_mapping, profile
from features.intake.ingest import ingest_file
from features.intake.io import read_declarations
from features.intake.rules import Limits, check_records, rules_for
from features.params import FeatureParams

ARABIC_INDIC = str.maketrans("0123456789.", "٠١٢٣٤٥٦٧٨٩٫")
FAULTS = [
    r
    for r in rules_for(Limits.from_params({}, FeatureParams()), with_outcomes=False)
    if r.severity == "fault"
]
ASCII_ROW = {
    "declaration_id": "D1",
    "declared_at": "2026-11-20T08:00:00Z",
    "arrival_office": "DXB",
    "channel": "express",
    "origin_country": "CN",
    "hs_code": "610910",
    "quantity": 3,
    "gross_weight_kg": 0.3,
    "declared_value": 36.67,
    "currency": "AED",
}


def _fields(model: object) -> dict:
    return {name: getattr(model, name) for name in ASCII_ROW}


@pytest.mark.parametrize(
    "code",
    ["٦١٠٩١٠", "۶۱۰۹۱۰", "६१०९१०", "６１０９１０"],
    ids=["arabic", "persian", "hindi", "wide"],
)
def test_a_request_reads_an_hs_code_in_any_scripts_digits_as_ascii(code: str) -> None:
    record = Declaration(**{**ASCII_ROW, "hs_code": code})
    assert record.hs_code == "610910"
    assert not check_records([record], None, FAULTS).items


def test_a_request_in_arabic_indic_digits_reads_as_its_ascii_twin() -> None:
    sent = {
        **ASCII_ROW,
        "declared_at": "٢٠٢٦-١١-٢٠T٠٨:٠٠:٠٠Z",
        "hs_code": "٦١٠٩١٠",
        "quantity": "٣",
        "gross_weight_kg": "٠٫٣",
        "declared_value": "٣٦٫٦٧",
    }
    assert _fields(Declaration(**sent)) == _fields(Declaration(**ASCII_ROW))


def test_a_declaration_id_in_arabic_indic_digits_is_kept_as_sent() -> None:
    """As a file's: an id is read in NFKC (full-width as ASCII), which keeps these digits."""
    assert Declaration(**{**ASCII_ROW, "declaration_id": "D١٢"}).declaration_id == "D١٢"
    assert Declaration(**{**ASCII_ROW, "declaration_id": "D１２"}).declaration_id == "D12"


def test_what_is_no_code_or_number_in_any_digits_is_still_refused() -> None:
    short = Declaration(**{**ASCII_ROW, "hs_code": "٦١٠٩١"})  # 5 digits
    [finding] = check_records([short], None, FAULTS).items
    assert finding.rule.name == "hs_code.format"
    with pytest.raises(ValidationError, match="declared_value"):
        Declaration(**{**ASCII_ROW, "declared_value": "٣٦٫٦٧ AED"})
    with pytest.raises(ValidationError, match="ISO 8601 text with a time zone"):
        Declaration(**{**ASCII_ROW, "declared_at": "١٧٨٠٠٠٠٠٠٠"})  # Unix seconds


def test_a_numeric_extra_sent_in_arabic_indic_digits_is_a_number() -> None:
    contract = Contract(extras=(ExtraColumn("duty_paid", "numeric"),))
    records = [
        Declaration(**{**ASCII_ROW, "declaration_id": f"D{i}", "duty_paid": v})
        for i, v in enumerate(["١٢٫٥", 12.5, "x١"])
    ]
    [refused] = [f for f in check_records(records, contract, FAULTS).items]
    assert "duty_paid" in str(refused) and "'x١'" in str(refused)
    frame = declarations_frame(records[:2], contract)
    assert frame["duty_paid"].tolist() == [12.5, 12.5]


def test_ascii_text_is_returned_as_the_same_object() -> None:
    """The fast path: a request in ASCII pays one ``isascii`` per field."""
    text = "610910"
    assert read_ascii_digits(text) is text


MAPPING = """\
columns:
  declaration_id: ID
  declared_at: {column: AT, format: "%Y-%m-%d %H:%M", timezone: Asia/Dubai}
  arrival_office: {value: DXB}
  channel: {column: MODE, values: {"41": express, "50": postal}}
  origin_country: {value: CN}
  hs_code: HS
  gross_weight_kg: {column: GRAMS, scale: 0.001}
  declared_value: VALUE
  currency: {value: AED}
  aeo_operator: {column: AEO, true_values: ["1"], false_values: ["0"]}
"""


def test_a_mapped_file_reads_codes_a_table_lists_in_arabic_indic_digits(tmp_path: Path) -> None:
    """The draft lists a channel ٤١ as 41 and a flag ١ as 1: ingest reads them so."""
    rows = ["ID,AT,MODE,HS,GRAMS,VALUE,AEO", "A1,2026-11-20 10:00,41,610910,300,36.67,1"]
    rows.append(rows[1].translate(ARABIC_INDIC).replace("A١", "A2"))
    (tmp_path / "x.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    ingest_file(source=tmp_path / "x.csv", mapping_path=tmp_path / "m.yaml", out=tmp_path / "o.pq")
    out, _ = read_declarations(tmp_path / "o.pq", with_outcomes=False)
    first, second = (out.iloc[i].drop("declaration_id").to_dict() for i in (0, 1))
    assert second == first and first["channel"] == "express" and first["aeo_operator"]


def test_a_code_no_table_lists_is_still_refused_in_any_digits(tmp_path: Path) -> None:
    rows = ["ID,AT,MODE,HS,GRAMS,VALUE,AEO", "A1,2026-11-20 10:00,٤٣,610910,300,36.67,1"]
    (tmp_path / "x.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    with pytest.raises(Exception, match=r"codes not in the 'values' table .*'٤٣'"):
        ingest_file(
            source=tmp_path / "x.csv", mapping_path=tmp_path / "m.yaml", out=tmp_path / "o.pq"
        )


def _amounts(share_arabic: float, name: str = "amount_paid", seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = [f"{v:.2f}" for v in rng.lognormal(3, 1, 400)]
    arabic = rng.random(400) < share_arabic
    values = [v.translate(ARABIC_INDIC) if a else v for v, a in zip(values, arabic, strict=True)]
    return pd.DataFrame({"declaration_id": [f"D{i}" for i in range(400)], name: values})


def test_the_draft_reads_every_scripts_digits_as_ascii() -> None:
    column = profile(_amounts(0.15))[1]
    assert column.values == profile(_amounts(0.0))[1].values


@pytest.mark.parametrize(
    ("name", "drafted"),
    [
        ("amount_paid", "  declared_value: amount_paid\n"),
        # a name the draft does not read: an extra, of numbers (was an entity, or unmapped)
        ("القيمة", "{column: القيمة, name: column_2, kind: numeric}"),
    ],
)
def test_a_column_of_amounts_partly_in_arabic_indic_digits_is_drafted_as_numbers(
    name: str, drafted: str
) -> None:
    assert drafted in draft_mapping(_amounts(0.15, name)).text
