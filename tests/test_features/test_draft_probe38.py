"""`mapping draft` on postal exports (probes 36 and 38): CN22/CN23 call the goods description
"contents", and a CONTENTS column of short texts (礼物, подарок, gift, T-shirt) was drafted an
entity extra with no word, the text, watchlist and vague-description features off; with no
description mapped, a free-text column left over is named as the likely one; a SELECTED_BY
column of ``random`` / ``rule:PROFILE_1`` is the selection reason; RECEIVER_ID and RECEIVER are
the consignee, as RECIPIENT_ID and CONSIGNEE are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from features.intake.draft import draft_mapping
from features.intake.mapping import apply_mapping, parse_mapping_text

N = 300
# what senders write on a CN22: short, in any language, under 30 characters
GOODS = ["礼物", "подарок", "gift", "T-shirt", "phone case", "toy car", "shoes", "watch",
         "dress", "socks", "bag", "cap", "sunglasses", "lipstick", "USB cable"]  # fmt: skip


def _postal(seed: int = 38, **more: object) -> pd.DataFrame:
    """A postal export of N mail items, its goods' text written short and varied."""
    rng = np.random.default_rng(seed)
    contents = [
        str(g) if i % 4 else f"{g} x{1 + i % 60}"
        for i, g in enumerate(rng.choice(GOODS, N))  # 60-odd distinct: an entity by count
    ]
    return pd.DataFrame(
        {
            "ITEM_ID": [f"RR{100000000 + i:09d}CN" for i in range(N)],
            "POSTING_DATE": [f"2026-10-{1 + i % 28:02d}" for i in range(N)],
            "DEST_OFFICE": rng.choice(["PLWAW1", "PLKTW1"], N),
            "SENDER": [f"SHOP{i % 40:03d}" for i in range(N)],
            "ORIGIN": rng.choice(["CN", "RU", "TR"], N),
            "HS": rng.choice(["610910", "950300", "420222"], N),
            "WEIGHT_KG": [f"{w:.3f}" for w in rng.uniform(0.1, 3, N)],
            "VALUE": [f"{v:.2f}" for v in rng.uniform(2, 80, N)],
            "CURRENCY": "EUR",
            "CONTENTS": contents,
            **more,
        }
    ).astype("string")


def _read_back(raw: pd.DataFrame, text: str) -> pd.DataFrame:
    mapping = yaml.safe_load(text)
    mapping["columns"] = {"channel": {"value": "postal"}, **mapping["columns"]}
    declarations, _ = apply_mapping(raw, parse_mapping_text(yaml.safe_dump(mapping)))
    return declarations


@pytest.mark.parametrize(
    "name",
    ["CONTENTS", "Goods contents", "CONTENT_DESCRIPTION", "ITEM_CONTENTS", "Nature of contents",
     "Contenu", "Inhalt", "Содержимое", "Вложение", "内件名称", "内容品"],
)  # fmt: skip
def test_a_postal_contents_column_is_the_description(name: str) -> None:
    export = _postal().rename(columns={"CONTENTS": name})
    draft = draft_mapping(export)
    assert draft.mapped["description"] == name
    assert name not in draft.extras
    assert "description" not in draft.checks  # the name says it: nothing to check
    declarations = _read_back(export, draft.text)
    assert declarations["description"].tolist() == export[name].tolist()


def test_a_column_named_like_the_description_beats_the_entity_guess() -> None:
    """One word of the name says description (GOODS_EN); its texts are short (``_fits``
    wants a mean of 8 characters for that): taken for the description, with a CHECK."""
    export = _postal().rename(columns={"CONTENTS": "GOODS_EN"})
    draft = draft_mapping(export)
    assert draft.mapped["description"] == "GOODS_EN"
    assert "GOODS_EN" not in draft.extras
    (check,) = draft.checks["description"]
    assert "chosen by a word of its name, its values words (mean 7 characters)" in check
    line = next(x for x in draft.text.splitlines() if x.startswith("  description:"))
    assert "# CHECK: chosen by a word of its name" in line


def test_codes_and_categories_under_such_a_name_stay_what_they_are() -> None:
    rng = np.random.default_rng(5)
    export = _postal(
        ITEM_TYPE=rng.choice(["gift", "merchandise", "documents"], N),
        ITEM_CODE=[f"SKU{i % 90:04d}" for i in range(N)],
    ).drop(columns="CONTENTS")
    draft = draft_mapping(export)
    assert draft.mapped["category"] == "ITEM_TYPE"
    assert "description" not in draft.mapped  # SKU0001 is a code, never the goods' text
    assert "ITEM_CODE" in draft.extras


def _remarks(seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        f"{g} for my sister, {c} colour, size {s}"
        for g, c, s in zip(
            rng.choice(GOODS, N),
            rng.choice(["red", "blue", "black"], N),
            rng.choice(["S", "M", "L"], N),
            strict=True,
        )
    ]


def test_free_text_left_over_is_named_as_the_likely_description() -> None:
    """No column named for the description: the draft wrote no description line, no TODO, no
    CHECK. A free-text column left over is now proposed, commented out, with a CHECK."""
    export = _postal(NOTE=_remarks()).drop(columns="CONTENTS")
    draft = draft_mapping(export)
    assert "description" not in draft.mapped  # said, not mapped: it may be remarks
    (check,) = draft.checks["description"]
    assert "no column is named for the goods description; NOTE holds text" in check
    line = next(x for x in draft.text.splitlines() if x.startswith("  # description:"))
    assert line.startswith("  # description: NOTE  # CHECK: no column is named")
    (note,) = [i for i in draft.ignored if i.startswith("NOTE ")]
    assert "free text" in note and "the likely goods description" in note
    # uncommented, it reads
    text = draft.text.replace("  # description: NOTE  #", "  description: NOTE  #")
    assert _read_back(export, text)["description"].tolist() == export["NOTE"].tolist()


def test_no_likely_description_where_one_is_mapped_or_none_looks_like_it() -> None:
    mapped = draft_mapping(_postal(NOTE=_remarks()))
    assert mapped.mapped["description"] == "CONTENTS"
    assert "# description:" not in mapped.text
    codes = _postal(REF=[f"X{i:05d}" for i in range(N)]).drop(columns="CONTENTS")
    assert "description" not in draft_mapping(codes).checks


def _controls(seed: int = 38, **more: object) -> pd.DataFrame:
    """A postal export with its controls: CTRL Y/N, a finding and the reason of the selection
    on the rows inspected."""
    rng = np.random.default_rng(seed)
    inspected = rng.random(N) < 0.25
    reason = np.where(rng.random(N) < 0.4, "random", "rule:PROFILE_1")
    return _postal(
        seed,
        CTRL=np.where(inspected, "Y", "N"),
        CTRL_DATE=np.where(inspected, [f"2026-10-{1 + i % 28:02d} 15:30" for i in range(N)], ""),
        FINDING=np.where(inspected, rng.choice(["NIL", "NIL", "SEIZED"], N), ""),
        **more,
        SELECTED_BY=np.where(inspected, reason, ""),
    ).replace("", pd.NA)


def test_a_column_of_random_and_rule_selections_is_the_selection_reason() -> None:
    export = _controls()
    draft = draft_mapping(export)
    assert draft.mapped["selection_reason"] == "SELECTED_BY"  # was "not mapped" (probe 38)
    assert not any(i.startswith("SELECTED_BY") for i in draft.ignored)
    spec = yaml.safe_load(draft.text)["columns"]["selection_reason"]
    assert spec == "SELECTED_BY"  # read as written: random is the contract's own word
    assert "chosen by its values alone" in draft.checks["selection_reason"][0]
    read = _read_back(export, draft.text)
    assert set(read["selection_reason"].dropna()) == {"random", "rule:PROFILE_1"}


def test_a_selection_reason_named_so_and_read_as_written_drafts_a_valid_mapping() -> None:
    """``unlisted: keep`` was written without a ``values`` table, which a mapping refuses."""
    export = _controls().rename(columns={"SELECTED_BY": "SELECTION_REASON"})
    draft = draft_mapping(export)
    assert yaml.safe_load(draft.text)["columns"]["selection_reason"] == "SELECTION_REASON"
    read = _read_back(export, draft.text)
    assert set(read["selection_reason"].dropna()) == {"random", "rule:PROFILE_1"}


@pytest.mark.parametrize(
    "values",
    [["OFF12", "OFF7"], ["rule:PROFILE_1", "rule:PROFILE_2"], ["manual", "random", "x-ray"]],
)
def test_other_values_are_no_selection_reason_by_their_values(values: list[str]) -> None:
    """Officers' codes; rules without the exploration quota's ``random``; words beyond
    ``random`` and ``rule:...``: nothing says a reason."""
    export = _controls()
    picked = np.random.default_rng(1).choice(values, N)
    export["SELECTED_BY"] = export["SELECTED_BY"].where(export["SELECTED_BY"].isna(), picked)
    assert "selection_reason" not in draft_mapping(export).mapped


@pytest.mark.parametrize("name", ["RECEIVER_ID", "RECEIVER", "Receiver Id", "ADDRESSEE_ID"])
def test_the_receiver_is_the_consignee(name: str) -> None:
    """RECEIVER_ID was offered only as a commented-out personal extra (probe 36)."""
    export = _postal(**{name: [f"R{i % 170:05d}" for i in range(N)]})
    draft = draft_mapping(export)
    assert draft.mapped["consignee_id"] == name
    assert name not in draft.personal


def test_the_receivers_postcode_and_an_addressees_name_are_no_consignee_id() -> None:
    export = _postal(
        RECEIVER_POSTCODE=[f"{i % 90:02d}-{i % 900:03d}" for i in range(N)],
        ADDRESSEE_NAME=[f"Person {i % 200}" for i in range(N)],
    )
    draft = draft_mapping(export)
    assert "consignee_id" not in draft.mapped
    assert "ADDRESSEE_NAME" in draft.personal  # a person's name: opted in, never by default
