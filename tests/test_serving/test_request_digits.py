"""/score reads a declaration in Arabic-Indic digits as `score --mapping` reads its export
(probe 40: every batch holding an HS code ``"٦٤٠٣٩٩"`` was refused whole, 400)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.intake.columns import RecordColumns
from features.intake.contract import Declaration
from features.intake.ingest import ingest_file
from features.intake.io import read_declarations
from serving.schemas import OutcomeResult
from serving.scoring import score_frame
from tests.test_serving.conftest import auth, make_declarations

ARABIC_INDIC = str.maketrans("0123456789.", "٠١٢٣٤٥٦٧٨٩٫")
MAPPING = """\
columns:
  declaration_id: ID
  declared_at: AT
  arrival_office: OFFICE
  channel: CHANNEL
  seller_id: SELLER
  consignee_id: CONSIGNEE
  origin_country: ORIGIN
  hs_code: HS
  quantity: QTY
  gross_weight_kg: KG
  declared_value: VALUE
  currency: CURRENCY
"""
FIELDS = {
    "ID": "declaration_id",
    "AT": "declared_at",
    "OFFICE": "arrival_office",
    "CHANNEL": "channel",
    "SELLER": "seller_id",
    "CONSIGNEE": "consignee_id",
    "ORIGIN": "origin_country",
    "HS": "hs_code",
    "QTY": "quantity",
    "KG": "gross_weight_kg",
    "VALUE": "declared_value",
    "CURRENCY": "currency",
}
IN_DIGITS = ("declared_at", "hs_code", "quantity", "gross_weight_kg", "declared_value")


def _in_arabic_indic(declaration: dict) -> dict:
    """The declaration as a Gulf clearance system sends it: codes, numbers and times in
    Arabic-Indic digits, as text."""
    return {
        k: str(v).translate(ARABIC_INDIC) if k in IN_DIGITS else v for k, v in declaration.items()
    }


def test_the_api_and_a_mapped_file_score_the_same_arabic_indic_declarations(
    stub_runtime, tmp_path: Path
) -> None:
    declared = make_declarations(12, seed=40, prefix="AI")
    sent = [_in_arabic_indic({f: d[f] for f in FIELDS.values()}) for d in declared]
    rows = [",".join(FIELDS)] + [",".join(str(d[f]) for f in FIELDS.values()) for d in sent]
    (tmp_path / "export.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    ingest_file(
        source=tmp_path / "export.csv",
        mapping_path=tmp_path / "mapping.yaml",
        out=tmp_path / "out.parquet",
    )
    from_file, _ = read_declarations(tmp_path / "out.parquet", with_outcomes=False)
    from_api = [Declaration.model_validate(d) for d in sent]

    assert [m.hs_code for m in from_api] == from_file["hs_code"].tolist()
    by_file, by_api = (
        score_frame(from_file, stub_runtime),
        score_frame(RecordColumns(from_api, None), stub_runtime),
    )
    np.testing.assert_array_equal(by_api.X, by_file.X)
    np.testing.assert_array_equal(by_api.scores["risk"], by_file.scores["risk"])


def test_score_answers_a_batch_in_arabic_indic_digits_as_its_ascii_twin(client) -> None:
    ascii_batch = make_declarations(6, seed=41, prefix="TWIN")
    arabic_batch = [
        {**_in_arabic_indic(d), "declaration_id": f"AI-{d['declaration_id']}"} for d in ascii_batch
    ]
    answers = []
    for batch in (ascii_batch, arabic_batch):
        r = client.post("/score", json={"declarations": batch}, headers=auth())
        assert r.status_code == 200, r.text
        answers.append([d["risk"] for d in r.json()["decisions"]])
    assert answers[1] == pytest.approx(answers[0])


def test_score_still_refuses_a_code_of_five_arabic_indic_digits(client) -> None:
    [declaration] = make_declarations(1, seed=42, prefix="SHORT")
    declaration["hs_code"] = "٦١٠٩١"
    r = client.post("/score", json={"declarations": [declaration]}, headers=auth())
    assert r.status_code == 400 and r.json()["code"] == "contract.rules"
    assert "is not an HS code of 6 to 10 digits" in r.text


def test_a_result_in_arabic_indic_digits_reads_as_its_ascii_twin() -> None:
    sent = {"declaration_id": "D1", "illicit": True}
    arabic = OutcomeResult(**sent, revenue_recovered="١٢٫٥", inspected_at="٢٠٢٦-١١-٢١T٠٩:٠٠:٠٠Z")
    ascii_twin = OutcomeResult(**sent, revenue_recovered=12.5, inspected_at="2026-11-21T09:00:00Z")
    assert arabic == ascii_twin
