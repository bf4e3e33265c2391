"""Text a reader cannot see or tell apart (``features.intake.hidden_text``; red-team probes 20
and 22). An id is kept as sent and keyed as what it prints: hidden marks dropped, look-alike
letters read as the Latin ones, so a trader cannot make one seller or consignee several; only
controls and bidi controls are refused (and any hidden mark in a declaration id), so real
names in any script go through, on files and requests alike. A description is read as the
words it prints before any feature reads it."""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from features.intake.contract import (
    DECLARATION_ID_INVISIBLE_PROBLEM,
    INVISIBLE_PROBLEM,
    NUL_PROBLEM,
    Contract,
    Declaration,
    parse_declarations,
)
from features.intake.hidden_text import INVISIBLE, is_obscured, key_skeleton, readable_text

# Format characters that print (the Arabic and Syriac number and end-of-ayah signs, the
# Kaithi number signs, Egyptian hieroglyph format controls): not hidden
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
    for c in (0xAD, 0x34F, 0x61C, 0x115F, 0x180E, 0x3164, 0xFE0F, 0xE0041, 0x2800):
        assert hidden.match(chr(c)), f"U+{c:04X}"
    assert not hidden.search("Ромашка Trading é ü ß 深圳")


# --- ids: kept as sent, keyed as they print ---------------------------------------------------

SPLIT = "SSPLITB"
VARIANTS = [
    "S\u00adSPLITB",  # soft hyphen
    "SSPLIT\u034fB",  # combining grapheme joiner
    "SSPLITB\u3164",  # Hangul filler
    "SSPLITB\ufe0f",  # variation selector
    "SSPLITB\U000e0041",  # tag letter
    "SSPLITB\u0301",  # an accent B has no composed form for
    "\u0405SPLITB",  # Cyrillic Ѕ
    "\u0405\u0405\u0420L\u0406\u0422\u0412",  # Cyrillic wherever it has a look-alike
    "\ua4e2SPLITB",  # Lisu S
    "\ua731SPLITB",  # Latin small capital S
    "SSPL\u0131TB",  # dotless i
    "SSPLITB\u2800",  # braille blank
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_look_alike_id_is_the_entity_it_prints(variant) -> None:
    """Probes 20 and 22: each of these started a new, empty history (a split order yellow ->
    green). Accepted as sent, keyed as the id it prints; on files and requests alike."""
    frame = pd.DataFrame({"declaration_id": ["A1", "A2"], "seller_id": [SPLIT, variant]})
    out, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert not bad and out["seller_id"].iloc[1] != SPLIT  # kept as sent
    assert key_skeleton(out["seller_id"].iloc[1]).upper() == SPLIT
    sent = Declaration.model_validate({**BODY, "seller_id": variant}).seller_id
    assert sent == out["seller_id"].iloc[1]


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("ABC-123", "ABC-123"),
        ("\u0410\u0412\u0421-123", "ABC-123"),  # wholly in Cyrillic: mixes no script
        ("\u0391\u0392\u0393", "AB\u0393"),  # Greek: Gamma prints as no Latin letter
        ("ABC\u2013123", "ABC-123"),  # an en dash for the hyphen
        ("ABC\u2212123", "ABC-123"),  # a minus sign
        ("\u1d00\u0299\u1d04", "ABC"),  # Latin small capitals
        ("\u6df1\u5733ABC", "\u6df1\u5733ABC"),
        ("پارس\u200cآریا", "پارسآریا"),  # the non-joiner spells; the key drops it
    ],
)
def test_an_identifier_is_keyed_as_it_prints(sent, key) -> None:
    assert key_skeleton(sent) == key


def test_look_alike_ids_are_one_entity_and_one_pseudonym() -> None:
    from features.intake.pseudonym import pseudonym_of
    from features.params import FeatureParams
    from features.pipeline.prepare import prepare

    key = b"k" * 32
    assert pseudonym_of("\u0410\u0412\u0421-123", key) == pseudonym_of("ABC-123", key)
    assert pseudonym_of("C\u00ad1", key) == pseudonym_of("C1", key)
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


def test_a_free_text_field_made_an_entity_is_keyed_as_it_prints() -> None:
    """Probe 22: a consignee_region put in features.entities took look-alike letters raw, one
    region several entities; only the identifier fields were keyed as they print."""
    from features.params import FeatureParams
    from features.pipeline.prepare import prepare

    frame = pd.DataFrame(
        {**{k: [v, v, v] for k, v in BODY.items()}, "declaration_id": ["D1", "D2", "D3"],
         "consignee_region": ["FR10", "FR\u200b10", "\u0415S30"]}  # zero-width, Cyrillic E
    )  # fmt: skip
    out, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert not bad
    params = FeatureParams()
    as_entity = params.model_copy(update={"entities": (*params.entities, "consignee_region")})
    assert prepare(out, Contract(), as_entity)["consignee_region"].tolist() == [
        "FR10",
        "FR10",
        "ES30",
    ]


LEGIT = [
    "شرکت بازرگانی پارس\u200cآریا",  # Persian, its non-joiner
    "\u0915\u094d\u200d\u0937 ट्रेडर्स",  # Devanagari, a joiner
    "Love\u2764\ufe0fStore",  # an emoji with its presentation selector
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 Family Shop",  # a joined emoji
    "\u1ecd\u0300ba",  # Yoruba ọ̀
    "g\u0303uarani",  # Guarani g̃
    "\u00b5Tech GmbH",  # the keyboard's micro sign
    "\u0414\u0435\u043b\u0442\u0430-Trade",  # Делта-Trade
    "Nguye\u0302\u0303n",  # Vietnamese written decomposed
    "ООО Ромашка", "ΑΒΓ Α.Ε.", "深圳ABC科技", "株式会社ｶﾀｶﾅ", "מסחר בע\"מ", "บริษัท ไทย",
]  # fmt: skip


@pytest.mark.parametrize("name", LEGIT)
def test_real_names_in_any_script_go_through_on_files_and_requests(name) -> None:
    """Probe 22: ten real names were refused by rules that refused whatever could hide."""
    frame = pd.DataFrame({"declaration_id": ["A1"], "seller_id": [name], "consignee_id": [name]})
    out, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert not bad, [b.problem for b in bad]
    sent = Declaration.model_validate({**BODY, "seller_id": name, "consignee_id": name})
    assert sent.seller_id == out["seller_id"].iloc[0] == unicodedata.normalize("NFKC", name)
    assert sent.consignee_id == out["consignee_id"].iloc[0]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("seller_id", "SSPLIT\u202eB", INVISIBLE_PROBLEM),  # a right-to-left override
        ("seller_id", "SSPLIT\u061cB", INVISIBLE_PROBLEM),  # the Arabic letter mark
        ("seller_id", "SSPLIT\x07B", INVISIBLE_PROBLEM),
        ("seller_id", "SSPLIT\u2028B", INVISIBLE_PROBLEM),
        ("declaration_id", "D1\u200b", DECLARATION_ID_INVISIBLE_PROBLEM),
        ("declaration_id", "D\u00ad1", DECLARATION_ID_INVISIBLE_PROBLEM),
    ],
)
def test_controls_and_bidi_controls_are_refused_on_files_and_requests(
    field, value, problem
) -> None:
    frame = pd.DataFrame({"declaration_id": ["A1", "A2"], "seller_id": ["S", "S"]})
    frame.loc[1, field] = value
    _, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert [(b.field, b.rows.tolist(), b.problem) for b in bad] == [(field, [1], problem)]
    with pytest.raises(ValidationError, match=re.escape(problem)):
        Declaration.model_validate({**BODY, field: value})
    # a consignee id is personal: refused alike, its value never shown
    if field == "seller_id":
        frame = pd.DataFrame({"declaration_id": ["A1"], "consignee_id": [value]})
        _, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
        assert [b.problem for b in bad] == [problem] and value not in str(bad[0].values)


def test_every_row_is_refused_for_the_first_rule_it_fails_none_let_through() -> None:
    """One problem per column at a time let the rest through: a NUL in one row skipped the
    invisible check of every other row of the column."""
    frame = pd.DataFrame(
        {"declaration_id": ["A1", "A2", "A3"], "seller_id": ["S\x00", "S\u202e1", "S2"]}
    )
    _, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert {b.problem: b.rows.tolist() for b in bad} == {NUL_PROBLEM: [0], INVISIBLE_PROBLEM: [1]}


def test_quarantine_sets_a_refused_id_aside_and_ingests_the_rest(tmp_path: Path) -> None:
    """Probe 22: one listing name the identifier rules refuse stopped `ingest --quarantine`
    and `score --mapping --quarantine` whole (exit 2, nothing written)."""
    from features.intake.ingest import ingest_file
    from features.intake.mapping import REJECTED_REASONS

    rows = 200
    frame = pd.DataFrame(
        {
            "ID": [f"D{i}" for i in range(rows)],
            "AT": ["2026-01-02T10:00:00Z"] * rows,
            "SELLER": ["S1"] * rows,
            "HS": ["610910"] * rows,
            "VAL": ["12.5"] * rows,
            "DESC": ["t-shirt"] * rows,
        }
    )
    frame.loc[7, "SELLER"] = "Evil\u202eStore"
    frame.loc[8, "SELLER"] = "Love\u2764\ufe0fStore"  # a real name: ingested
    (tmp_path / "export.csv").write_text(frame.to_csv(index=False), encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(
        "columns:\n  declaration_id: ID\n  declared_at: AT\n  seller_id: SELLER\n"
        "  hs_code: HS\n  declared_value: VAL\n  description: DESC\n"
        "  currency: {value: EUR}\n  channel: {value: postal}\n"
        "  arrival_office: {value: FR01}\n  origin_country: {value: CN}\n"
        "  gross_weight_kg: {value: 0.5}\n"
    )
    summary = ingest_file(
        source=tmp_path / "export.csv",
        mapping_path=tmp_path / "mapping.yaml",
        out=tmp_path / "out.parquet",
        quarantine=tmp_path / "rejected.csv",
    )
    assert summary["rows"] == rows - 1 and summary["rows_rejected"] == 1
    (reason,) = summary["rejected_reasons"]
    assert "seller_id" in reason and INVISIBLE_PROBLEM in reason
    rejected = pd.read_csv(tmp_path / "rejected.csv")
    assert rejected["ID"].tolist() == ["D7"] and INVISIBLE_PROBLEM in rejected[REJECTED_REASONS][0]
    kept = pd.read_parquet(tmp_path / "out.parquet")
    assert "Love\u2764\ufe0fStore" in set(kept["seller_id"])


# --- descriptions: read as the words they print ------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "read", "obscured"),
    [
        ("kratom powder", "kratom powder", False),
        ("kr\u0430tom powder", "kratom powder", True),  # Cyrillic а
        ("ana\u00adbolic ster\u200boid tablets", "anabolic steroid tablets", True),
        ("steroid\u2060s", "steroids", True),
        ("krat\u1d0fm", "kratOm", True),  # a small capital O (read case-blind)
        ("kr\u0251tom", "kratom", True),  # Latin alpha
        ("krat\u0585m", "kratom", True),  # Armenian o
        ("kra\u2800tom", "kra tom", True),  # a braille blank prints as a space: said
        ("kratom\u2800powder", "kratom powder", True),  # ... and parts no words
        # wholly Cyrillic look-alikes: the word itself, and its Latin reading (probe 38)
        ("\u041a\u041d\u0410\u0422 leaves", "\u041a\u041d\u0410\u0422 leaves / KHAT leaves", False),
        ("МАК пищевой", "МАК пищевой / MAK пищевой", False),  # Russian "poppy" stays Russian too
        ("ＫＲＡＴＯＭ powder", "KRATOM powder", False),  # a compatibility form: not hiding
        ("кратом порошок", "кратом порошок", False),  # Russian stays Russian
        ("USB-кабель", "USB-кабель", False),  # two words: no false warning
        ("\u03b1-lipoic acid", "\u03b1-lipoic acid / a-lipoic acid", False),
        ("ana\u200dbolic", "anabolic", True),  # a joiner no Latin word spells with (probe 38)
        ("\u7535\u200d\u5b50\u70df", "\u7535\u5b50\u70df", True),
        (
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
            "\u0645\u06cc\u062e\u0648\u0627\u0647\u0645",
            False,
        ),  # Persian spells with it
        ("Love\u2764\ufe0f mug", "Love\u2764 mug", False),  # a selector spells, hides nothing
        ("café e\u0301", "café é", False),
        # a tatweel prints (a stretched stroke) and the words drop it (``words.fold``): said
        # only beside a letter it joins nothing to (probe 40)
        ("حبوب كبـتاجون", "حبوب كبـتاجون", False),
        ("كبـــتاجون ١٤٤٥هـ", "كبـــتاجون ١٤٤٥هـ", False),  # several, a Hijri year's
        ("کـتاب", "کـتاب", False),  # Persian typography too
        ("kra\u0640tom", "kra\u0640tom", True),
        ("kratom\u0640", "kratom\u0640", True),
    ],
)
def test_a_description_is_read_as_the_words_it_prints(sent, read, obscured) -> None:
    assert readable_text(sent) == read
    assert is_obscured(sent) is obscured


def test_an_entity_extra_follows_the_identifier_rules() -> None:
    """Probe 22: a mapped broker id took a bidi override and a control character."""
    from features.intake.contract import ExtraColumn, extra_value_faults

    broker = ExtraColumn("broker_id", "entity")
    values = pd.Series(["B1", "B\u202e2", "B\u00ad3", "B\x074"], dtype="str")
    (bad,) = extra_value_faults(broker, values, values)
    assert (bad.field, bad.rows.tolist(), bad.problem) == ("broker_id", [1, 3], INVISIBLE_PROBLEM)
    personal = ExtraColumn("agent_id", "entity", personal=True)
    (bad,) = extra_value_faults(personal, values, values)
    assert "\u202e" not in str(bad.values)  # a person's value never shown
    # a categorical extra is a code, not an identifier: its own rules only
    assert extra_value_faults(ExtraColumn("lane_code", "categorical"), values, values) == []
