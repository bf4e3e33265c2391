"""Codes, numbers and times in Arabic-Indic or other non-ASCII digits, read as their ASCII
digits in a request (``Declaration``, its numeric extras) as in a mapped file (probe 40: /score
refused ``"٦٤٠٣٩٩"`` that ingest read as 640399).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from features.intake.columns import declarations_frame
from features.intake.contract import Contract, Declaration, ExtraColumn, read_ascii_digits
from features.intake.rules import Limits, check_records, rules_for
from features.params import FeatureParams

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
