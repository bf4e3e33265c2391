"""`mapping draft` of names written without spaces, and of numbers that are ids whatever their name
(probe 42, finding 4).

A Thai export's ``เลขประจำตัวผู้รับ`` ("consignee id number": 13-digit national ids) was drafted an
active numeric extra, read raw; ``มูลค่าสำแดง`` (declared value) and ``ประเภทการขนส่ง``
(transport) were TODOs, ``ชื่อผู้ขาย`` (seller name) an extra: Thai writes a compound name as
one word, and the synonyms were matched as whole words only. The row counter ``ลำดับ`` was a
numeric extra.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from features.intake.draft import Draft, _name_score, _personal_particular, draft_mapping, profile

N = 300


def _ids(rng: np.random.Generator, n: int) -> list[str]:
    return [str(v) for v in rng.integers(10**12, 10**13, n)]


def _thai_export(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = _ids(rng, 120)  # 120 consignees over 300 rows
    return pd.DataFrame(
        {
            "เลขที่ใบขนสินค้า": [f"A2605{i:07d}" for i in range(N)],
            "วันที่ยื่น": [f"{1 + i % 28:02d}/05/2026" for i in range(N)],
            "ด่านศุลกากร": rng.choice(["ไปรษณีย์หลักสี่", "ด่านศุลกากรสะเดา"], N),
            "ประเภทการขนส่ง": rng.choice(["ไปรษณีย์", "ขนส่งเร่งด่วน"], N),
            "ชื่อผู้ขาย": rng.choice(["Yiwu Trading Co., Ltd", "Hanoi Fashion Co., Ltd"], N),
            "ประเทศผู้ขาย": rng.choice(["CN", "VN"], N),
            "เลขประจำตัวผู้รับ": [ids[k] for k in rng.integers(0, len(ids), N)],
            "จังหวัดผู้รับ": rng.choice(["กรุงเทพมหานคร", "เชียงใหม่", "ขอนแก่น"], N),
            "ประเทศต้นทาง": rng.choice(["CN", "VN", "HK"], N),
            "พิกัดศุลกากร": rng.choice(["6403.99.90", "6109.10.00"], N),
            "รายการสินค้า": rng.choice(["รองเท้ากีฬา", "เสื้อยืดผ้าฝ้าย"], N),
            "น้ำหนัก (กก.)": [f"{v:.2f}" for v in rng.uniform(0.1, 3, N)],
            "มูลค่าสำแดง": [f"{v:,.2f}" for v in rng.uniform(100, 5000, N)],
            "สกุลเงิน": "THB",
        }
    )


def _extras(draft: Draft) -> dict[str, dict]:
    return {e["column"]: e for e in yaml.safe_load(draft.text).get("extras") or []}


def test_thai_compound_names_are_read_by_the_words_inside_them() -> None:
    draft = draft_mapping(_thai_export())
    assert draft.mapped["consignee_id"] == "เลขประจำตัวผู้รับ"
    assert draft.mapped["declared_value"] == "มูลค่าสำแดง"
    assert draft.mapped["channel"] == "ประเภทการขนส่ง"
    assert draft.mapped["seller_id"] == "ชื่อผู้ขาย"
    assert draft.mapped["origin_country"] == "ประเทศต้นทาง"
    assert draft.mapped["seller_country"] == "ประเทศผู้ขาย"
    # the consignee's province is where they are, not who: never their id
    assert draft.mapped["consignee_region"] == "จังหวัดผู้รับ"
    assert not draft.missing


def test_the_thai_consignee_id_is_never_a_numeric_extra_beside_another_consignee() -> None:
    # the consignee taken by another column: the id is a personal extra, commented out
    export = _thai_export()
    export.insert(6, "ผู้นำเข้า", [f"IMP{v % 40}" for v in range(N)])
    draft = draft_mapping(export)
    assert draft.mapped["consignee_id"] == "ผู้นำเข้า"
    assert "เลขประจำตัวผู้รับ" not in _extras(draft)  # no active extra
    assert "เลขประจำตัวผู้รับ" in draft.personal


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("ชื่อผู้ขาย", "seller_id"),  # seller name
        ("เลขประจำตัวผู้รับ", "consignee_id"),  # consignee id number
        ("มูลค่าสำแดง", "declared_value"),  # declared value
        ("รูปแบบการขนส่ง", "channel"),  # form of transport
        ("收件人身份证号码", "consignee_id"),  # the Chinese, inside a compound
        ("申报价格人民币", "declared_value"),
        ("輸入者氏名", "consignee_id"),  # and the Japanese
    ],
)
def test_a_synonym_inside_an_unspaced_name_scores_as_a_word_of_it(name: str, field: str) -> None:
    (column,) = profile(pd.DataFrame({name: ["x"] * 3}))
    assert _name_score(column, field) == 0.6


def test_an_unspaced_name_is_read_longest_first_not_across_its_words() -> None:
    # เหตุผล|การตรวจ (the reason for the inspection) holds ผลการตรวจ (its result) across its
    # words: the selection's reason, not the inspection's result
    (reason,) = profile(pd.DataFrame({"เหตุผลการตรวจ": ["สุ่มตรวจ"] * 3}))
    assert _name_score(reason, "selection_reason") == 1.0
    assert _name_score(reason, "illicit") == 0.0
    # the inspection's date, not the declaration's (วันที่ inside วันที่ตรวจ)
    (checked,) = profile(pd.DataFrame({"วันที่ตรวจสอบ": ["01/05/2026"] * 3}))
    assert _name_score(checked, "inspected_at") == 0.6
    assert _name_score(checked, "declared_at") == 0.0


def test_a_word_inside_a_thai_name_is_found_with_its_marks() -> None:
    # ช่องทางการชำระเงิน (payment channel) holds ชอ, which ชื่อ (name) is without its marks
    values = ["บัตรเครดิต", "โอนเงิน", "เก็บเงินปลายทาง"] * 10
    (channel,) = profile(pd.DataFrame({"ช่องทางการชำระเงิน": values}))
    assert _personal_particular(channel) is None
    (name,) = profile(pd.DataFrame({"ชื่อผู้รับ": values}))
    assert _personal_particular(name) == "name"


def test_a_name_without_a_synonym_inside_stays_unmapped() -> None:
    (remark,) = profile(pd.DataFrame({"หมายเหตุ": ["ชำระอากรแล้ว"] * 3}))
    assert all(_name_score(remark, field) == 0.0 for field in ("illicit", "description"))


def _with(column: str, values: list[str]) -> Draft:
    export = _thai_export()
    export[column] = values
    return draft_mapping(export)


def test_13_digit_numbers_are_no_numeric_extra_whatever_their_name() -> None:
    rng = np.random.default_rng(3)
    ids = _ids(rng, 60)
    draft = _with("ข้อมูลเพิ่มเติม", [ids[k] for k in rng.integers(0, 60, N)])  # "more data"
    assert _extras(draft)["ข้อมูลเพิ่มเติม"]["kind"] == "entity"
    # nearly all distinct: a different value on every row, no extra at all
    draft = _with("ข้อมูลเพิ่มเติม", _ids(rng, N))
    assert "ข้อมูลเพิ่มเติม" not in _extras(draft)
    assert any(i.startswith("ข้อมูลเพิ่มเติม (a different value") for i in draft.ignored)


def _thai_national_ids(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for first in rng.integers(10**11, 10**12, n):
        digits = str(first)
        total = sum(int(d) * w for d, w in zip(digits, range(13, 1, -1), strict=True))
        out.append(digits + str((11 - total % 11) % 10))
    return out


def test_thai_national_ids_are_personal_by_their_values() -> None:
    rng = np.random.default_rng(4)
    people = _thai_national_ids(rng, 60)
    draft = _with("ข้อมูลเพิ่มเติม", [people[k] for k in rng.integers(0, 60, N)])
    assert "ข้อมูลเพิ่มเติม" not in _extras(draft)  # commented out
    assert "ข้อมูลเพิ่มเติม" in draft.personal
    # random 13-digit numbers fail the check digit nine times in ten: no person's by values
    (codes,) = profile(pd.DataFrame({"x": _ids(rng, 60)}))
    assert _personal_particular(codes) is None


def test_a_row_counter_is_no_extra() -> None:
    export = _thai_export()
    export.insert(0, "ลำดับ", [str(15_001 + i) for i in range(N)])
    draft = draft_mapping(export)
    assert "ลำดับ" not in _extras(draft)
    assert any(i.startswith("ลำดับ (the rows' numbers") for i in draft.ignored)


def test_numbers_rising_unevenly_are_no_row_counter() -> None:
    rng = np.random.default_rng(5)
    export = _thai_export()
    export["ระยะทาง"] = [str(v) for v in np.cumsum(rng.integers(1, 9, N))]  # rising, unevenly
    assert _extras(draft_mapping(export))["ระยะทาง"]["kind"] == "numeric"
