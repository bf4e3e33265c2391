"""`mapping draft` on postal exports (probe 39): a CN22/CN23 category-of-item column (Gift /
Sale of goods / Documents; Geschenk / Warenverkauf) under "Nature of contents" or "Inhalt" was
drafted as the goods' description, the goods' text a categorical extra; a CN23 value column
named 内件价值 or 价值 was no declared value; RECV_ID, RCPT_ID, EMPFAENGER_ID, 收件人编号 and
受取人ID were entity extras, not the consignee."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from features.intake.draft import draft_mapping
from features.intake.mapping import apply_mapping, parse_mapping_text

N = 400
GOODS = ["礼物", "подарок", "gift", "T-shirt", "Schuhe", "livre", "手机壳", "Kopfhörer", "jouet",
         "chaussures", "книга", "玩具"]  # fmt: skip
# the CN22/CN23 category of item as forms print it, in the contract's order of kinds:
# gift, merchandise, documents, sample, return
CATEGORIES = {
    "en": ["Gift", "Sale of goods", "Documents", "Commercial sample", "Returned goods"],
    "de": ["Geschenk", "Warenverkauf", "Dokumente", "Warenmuster", "Rücksendung"],
    "fr": ["Cadeau", "Vente de marchandises", "Documents", "Échantillon commercial",
           "Retour de marchandise"],
    "ru": ["Подарок", "Продажа товаров", "Документы", "Коммерческий образец", "Возврат товара"],
    "zh": ["礼品", "销售商品", "文件", "商品样品", "退回物品"],
}  # fmt: skip
KINDS = ["gift", "merchandise", "documents", "sample", "return"]


def _postal(seed: int = 39, **columns: object) -> pd.DataFrame:
    """A postal export of N mail items; ``columns`` come after the weight."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "ITEM_NO": [f"EA{i:09d}DE" for i in range(N)],
            "POSTED": [f"2026-09-{1 + i % 28:02d} 10:{i % 60:02d}" for i in range(N)],
            "DEST_OFFICE": rng.choice(["DEFRA1", "DEMUC1"], N),
            "HS": rng.choice(["610910", "640399", "490199", "950300"], N),
            "CURRENCY": rng.choice(["EUR", "USD"], N),
            "WEIGHT_KG": [f"{w:.3f}" for w in rng.uniform(0.1, 2, N)],
            "ORIGIN": rng.choice(["CN", "US", "RU", "TR"], N),
            "SENDER": [f"SND{x:05d}" for x in rng.integers(0, 300, N)],
            **columns,
        }
    ).astype("string")


def _with_value(export: pd.DataFrame, name: str = "VALUE") -> pd.DataFrame:
    values = np.random.default_rng(3).lognormal(3, 0.6, N).round(2)
    return export.assign(**{name: [f"{v:.2f}" for v in values]}).astype("string")


def _read_back(raw: pd.DataFrame, text: str) -> pd.DataFrame:
    mapping = yaml.safe_load(text)
    mapping["columns"] = {"channel": {"value": "postal"}, **mapping["columns"]}
    declarations, _ = apply_mapping(raw, parse_mapping_text(yaml.safe_dump(mapping)))
    return declarations


def _goods(seed: int = 1) -> list[str]:
    return list(np.random.default_rng(seed).choice(GOODS, N))


def _categories(language: str, seed: int = 2) -> tuple[list[str], list[str]]:
    """(the column as written, the contract's kind of each row)."""
    picked = np.random.default_rng(seed).choice(len(KINDS), N, p=[0.3, 0.55, 0.05, 0.05, 0.05])
    return [CATEGORIES[language][i] for i in picked], [KINDS[i] for i in picked]


@pytest.mark.parametrize(
    ("language", "category", "goods", "says_contents"),
    [
        ("en", "NATURE_OF_CONTENTS", "ITEM_DESC", True),
        ("en", "Category of item", "Detailed description of contents", False),
        ("de", "Inhalt", "Warenbeschreibung", True),
        ("fr", "Nature du contenu", "Description du contenu", True),
        ("fr", "Contenu", "Désignation", True),
        ("ru", "Вложение", "Описание товара", True),
        ("zh", "内件性质", "内件名称", False),
        ("zh", "内件", "品名", True),
    ],
)
def test_a_category_of_item_column_is_the_category_and_the_goods_text_the_description(
    language: str, category: str, goods: str, says_contents: bool
) -> None:
    written, kinds = _categories(language)
    export = _with_value(_postal(**{goods: _goods(), category: written}))
    draft = draft_mapping(export)
    assert draft.mapped["category"] == category  # was the description (probe 39)
    assert draft.mapped["description"] == goods  # was a categorical extra
    assert goods not in draft.extras
    # a name saying the contents is checked; "Category of item" and 内件性质 say the category
    checks = draft.checks.get("category", [])
    assert any("CN22/CN23 categories of item" in c for c in checks) == says_contents
    read = _read_back(export, draft.text)
    assert read["category"].tolist() == kinds
    assert read["description"].tolist() == export[goods].tolist()


def test_other_is_read_as_no_category_with_a_check() -> None:
    """The contract has no "other" kind: null, said to be checked, not a code left unread that
    ingest would refuse."""
    written, kinds = _categories("en")
    written = ["Other" if i % 10 == 0 else w for i, w in enumerate(written)]
    export = _with_value(_postal(ITEM_DESC=_goods(), NATURE_OF_CONTENTS=written))
    draft = draft_mapping(export)
    assert draft.mapped["category"] == "NATURE_OF_CONTENTS"
    spec = yaml.safe_load(draft.text)["columns"]["category"]
    assert spec["values"]["Other"] is None
    assert any("Other: no category of the contract's" in c for c in draft.checks["category"])
    read = _read_back(export, draft.text)
    assert read["category"][::10].isna().all()
    assert read["category"][1::10].tolist() == kinds[1::10]


@pytest.mark.parametrize("name", ["NATURE_OF_CONTENTS", "Inhalt"])
def test_goods_text_under_a_contents_name_stays_the_description(name: str) -> None:
    """A few senders write "gift" or 礼物 among their goods: the values are still goods."""
    export = _with_value(_postal(**{name: _goods()}))
    draft = draft_mapping(export)
    assert draft.mapped["description"] == name
    assert "category" not in draft.mapped
    assert "description" not in draft.checks


@pytest.mark.parametrize(
    "name", ["内件价值", "价值", "申报价值", "货值", "物品价值", "価格", "価額", "가격", "신고가격"]
)
def test_a_cjk_value_of_contents_is_the_declared_value(name: str) -> None:
    """内件价值 (value of contents) beside 内件名称 was a numeric extra named column_N and the
    declared value a TODO (probe 39)."""
    export = _with_value(_postal(内件名称=_goods()), name)
    draft = draft_mapping(export)
    assert draft.mapped["declared_value"] == name
    assert "declared_value" not in draft.missing
    assert name not in draft.extras
    read = _read_back(export, draft.text)
    assert read["declared_value"].tolist() == export[name].astype(float).tolist()


@pytest.mark.parametrize(
    "name",
    ["RECV_ID", "RCPT_ID", "EMPFAENGER_ID", "收件人编号", "受取人ID", "RECV_REF", "CNEE",
     "Warenempfaenger", "收货人编号", "수취인"],
)  # fmt: skip
def test_the_recipients_abbreviations_and_translations_are_the_consignee(name: str) -> None:
    """Each was an entity extra (受取人ID named "id"), the split-order features without a
    consignee (probe 39)."""
    export = _with_value(_postal(**{name: [f"0{i % 170:06d}" for i in range(N)]}))
    draft = draft_mapping(export)
    assert draft.mapped["consignee_id"] == name
    assert name not in draft.extras


def test_a_receipt_number_and_a_receipt_date_are_no_consignee() -> None:
    """A bare "rcpt" is a receipt too: RCPT_NO is no recipient's id, RCPT_DATE no party."""
    export = _with_value(
        _postal(
            RCPT_NO=[f"RC{i:08d}" for i in range(N)],
            RCPT_DATE=[f"2026-09-{1 + i % 28:02d}" for i in range(N)],
        )
    )
    assert "consignee_id" not in draft_mapping(export).mapped
