"""Text a reader cannot see or tell apart (``features.intake.hidden_text``, probe 20): ids
holding a mark Unicode renders as nothing, or a word mixing Latin with Cyrillic or Greek
letters, are refused on files and requests alike; forms a reader cannot tell apart are one id;
a description is read as the words it prints before any feature reads it."""

from __future__ import annotations

import re
import sys
import unicodedata

import pandas as pd
import pytest
from pydantic import ValidationError

from features.intake.contract import (
    INVISIBLE_PROBLEM,
    NUL_PROBLEM,
    Contract,
    Declaration,
    parse_declarations,
)
from features.intake.hidden_text import (
    INVISIBLE,
    MIXED_SCRIPT_PROBLEM,
    STRAY_MARK_PROBLEM,
    is_obscured,
    key_skeleton,
    mixed_script_word,
    readable_text,
)

# Format characters that print (the Arabic and Syriac number and end-of-ayah signs, the
# Kaithi number signs, Egyptian hieroglyph format controls): not hidden, so not refused
VISIBLE_FORMATS = {0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x6DD, 0x70F, 0x890, 0x891,
                   0x8E2, 0x110BD, 0x110CD, *range(0x13430, 0x13440)}  # fmt: skip

BODY = {
    "declaration_id": "D1", "declared_at": "2026-07-01T08:00:00Z", "arrival_office": "O1",
    "channel": "express", "operator_id": "E1", "seller_id": "S1", "seller_country": "CN",
    "consignee_id": "C1", "origin_country": "CN", "hs_code": "610910",
    "description": "t-shirt", "quantity": 1, "gross_weight_kg": 1.0, "declared_value": 9.5,
    "currency": "EUR", "category": "merchandise", "ioss_prepaid": False, "aeo_operator": False,
}  # fmt: skip


def test_every_invisible_format_or_control_character_is_in_the_set() -> None:
    """Unicode's own categories, not a hand-written list: the next hidden mark is in already."""
    hidden = re.compile(INVISIBLE)
    missing = [
        f"U+{c:04X}"
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp")
        and c not in VISIBLE_FORMATS
        and not hidden.match(chr(c))
    ]
    assert missing == []
    # what probe 20 got through: soft hyphen, grapheme joiner, Arabic letter mark, Hangul
    # fillers, Mongolian vowel separator, a variation selector, a tag letter
    for c in (0xAD, 0x34F, 0x61C, 0x115F, 0x180E, 0x3164, 0xFE0F, 0xE0041):
        assert hidden.match(chr(c)), f"U+{c:04X}"
    assert not hidden.search("Ромашка Trading é ü ß 深圳")


@pytest.mark.parametrize(
    ("text", "mixing"),
    [
        ("SSPLITB", None),
        ("\u0405SPLITB", "\u0405SPLITB"),  # a Cyrillic S first
        ("SEL-\u041e1", "SEL-\u041e1"),  # a Cyrillic O for a zero, after a hyphen
        ("Ромашка Trading", None),  # a word each: a name
        ("ΑΒΓ Ltd", None),
        ("кратом", None),
        ("深圳ABC", None),  # Han with Latin: no look-alike
    ],
)
def test_a_word_mixing_latin_with_cyrillic_or_greek_is_found(text, mixing) -> None:
    assert mixed_script_word(text) == mixing


@pytest.mark.parametrize(
    ("sent", "read", "obscured"),
    [
        ("kratom powder", "kratom powder", False),
        ("kr\u0430tom powder", "kratom powder", True),  # Cyrillic а
        ("ana\u00adbolic ster\u200boid tablets", "anabolic steroid tablets", True),
        ("steroid\u2060s", "steroids", True),
        ("ＫＲＡＴＯＭ powder", "KRATOM powder", False),  # a compatibility form: not hiding
        ("кратом порошок", "кратом порошок", False),  # Russian stays Russian
        ("café e\u0301", "café é", False),
    ],
)
def test_a_description_is_read_as_the_words_it_prints(sent, read, obscured) -> None:
    assert readable_text(sent) == read
    assert is_obscured(sent) is obscured


@pytest.mark.parametrize(
    ("seller", "problem"),
    [
        ("S\u00adSPLITB", INVISIBLE_PROBLEM),
        ("SSPLIT\u061cB", INVISIBLE_PROBLEM),
        ("SSPLITB\u3164", INVISIBLE_PROBLEM),
        ("SSPLITB\U000e0041", INVISIBLE_PROBLEM),
        ("\u0405SPLITB", MIXED_SCRIPT_PROBLEM),
        ("SSPL\u0399TB", MIXED_SCRIPT_PROBLEM),  # a Greek capital iota
        ("SSPLITB\u0301", STRAY_MARK_PROBLEM),  # an accent B has no composed form for
        ("S1\u0335", STRAY_MARK_PROBLEM),  # a strike-through on a digit
    ],
)
def test_a_hidden_or_look_alike_id_is_refused_on_files_and_requests(seller, problem) -> None:
    frame = pd.DataFrame({"declaration_id": ["A1", "A2"], "seller_id": ["SSPLITB", seller]})
    _, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert [(b.field, b.rows.tolist(), b.problem) for b in bad] == [("seller_id", [1], problem)]
    with pytest.raises(ValidationError, match=re.escape(problem)):
        Declaration.model_validate({**BODY, "seller_id": seller})
    # a consignee id is personal: refused alike, its value never shown
    frame = pd.DataFrame({"declaration_id": ["A1"], "consignee_id": [seller]})
    _, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert [b.problem for b in bad] == [problem] and seller not in str(bad[0].values)


def test_forms_a_reader_cannot_tell_apart_are_one_id_on_files_and_requests() -> None:
    """NFKC, as UTS #31 compares identifiers: a combining accent is the precomposed letter, a
    thin or no-break space a space, full-width digits ASCII."""
    sent = ["Cafe\u0301 Shop", "Café\u2009Shop", "Café\u00a0Shop", "Ｃａｆé Shop"]
    frame = pd.DataFrame({"declaration_id": [f"A{i}" for i in range(4)], "seller_id": sent})
    out, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert not bad and set(out["seller_id"]) == {"Café Shop"}
    for seller in sent:
        assert Declaration.model_validate({**BODY, "seller_id": seller}).seller_id == "Café Shop"
    # names in one script a word are names: accepted as sent
    assert Declaration.model_validate({**BODY, "seller_id": "Ромашка Trading"}).seller_id == (
        "Ромашка Trading"
    )


def test_every_row_is_refused_for_the_first_rule_it_fails_none_let_through() -> None:
    """One problem per column at a time let the rest through: a NUL in one row skipped the
    invisible check of every other, so "S\u00ad1" went in beside the refused NUL."""
    frame = pd.DataFrame(
        {
            "declaration_id": ["A1", "A2", "A3", "A4", "A5"],
            "seller_id": ["S\x00", "S\u00ad1", "\u0405ELLER", "SB\u0301", "Ромашка"],
        }
    )
    _, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    found = {b.problem: b.rows.tolist() for b in bad if b.field == "seller_id"}
    assert found == {
        NUL_PROBLEM: [0],
        INVISIBLE_PROBLEM: [1],
        MIXED_SCRIPT_PROBLEM: [2],
        STRAY_MARK_PROBLEM: [3],
    }


@pytest.mark.parametrize(
    "name", ["Nguy\u1ec5n", "\u0915\u093f\u0924\u093e\u092c", "\u0645\u064e\u062d\u0652"]
)
def test_marks_of_other_scripts_and_composed_letters_are_ids_as_sent(name) -> None:
    """Vietnamese letters compose; Devanagari and Arabic marks are their letters'."""
    assert Declaration.model_validate({**BODY, "seller_id": name}).seller_id == name


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("ABC-123", "ABC-123"),
        ("\u0410\u0412\u0421-123", "ABC-123"),  # wholly in Cyrillic: mixes no script
        ("\u0391\u0392\u0393", "AB\u0393"),  # Greek: Gamma prints as no Latin letter
        ("ABC\u2013123", "ABC-123"),  # an en dash for the hyphen
        ("\u1d00\u0299\u1d04", "ABC"),  # Latin small capitals
        ("\u6df1\u5733ABC", "\u6df1\u5733ABC"),
    ],
)
def test_an_identifier_is_keyed_as_it_prints(sent, key) -> None:
    assert key_skeleton(sent) == key


def test_look_alike_ids_are_one_entity_and_one_pseudonym() -> None:
    """Probe 20's evasion without mixing scripts: a seller or consignee written wholly in
    Cyrillic look-alikes is the one written in Latin, to the features and to the pseudonym."""
    import numpy as np

    from features.intake.pseudonym import pseudonym_of
    from features.params import FeatureParams
    from features.pipeline.prepare import prepare

    key = b"k" * 32
    assert pseudonym_of("\u0410\u0412\u0421-123", key) == pseudonym_of("ABC-123", key)
    assert pseudonym_of("Cafe\u0301", key) == pseudonym_of("Caf\u00e9", key)  # NFKC too
    assert pseudonym_of("Ромашка", key) != pseudonym_of("Romashka", key)
    frame = pd.DataFrame(
        {**{k: [v, v] for k, v in BODY.items()}, "declaration_id": ["D1", "D2"],
         "seller_id": ["ABC-123", "\u0410\u0412\u0421\u2013123"]}
    )  # fmt: skip
    out, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert not bad
    assert out["seller_id"].tolist() == ["ABC-123", "\u0410\u0412\u0421\u2013123"]  # as sent
    prep = prepare(out, Contract(), FeatureParams())
    assert prep["seller_id"].tolist() == ["ABC-123", "ABC-123"]
    assert np.array_equal(prep["t_us"], prep["t_us"][[0, 0]])
