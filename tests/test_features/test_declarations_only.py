"""A history's mapping read for scoring: its outcome fields and their item rules left out."""

from __future__ import annotations

from features.intake.mapping import declarations_only, parse_mapping_text

HISTORY_MAPPING = """\
columns:
  declaration_id: ID
  declared_at: {column: AT, format: "%d/%m/%Y"}
  arrival_office: {value: FR01}
  channel: {value: postal}
  hs_code: HS
  declared_value: VALUE
  currency: {value: EUR}
  gross_weight_kg: WEIGHT
  origin_country: ORIGIN
  inspected: {column: CTRL, true_values: [O], false_values: [N]}
  inspected_at: {column: AT, format: "%d/%m/%Y", offset: "1 day"}
  illicit: {column: RESULT, true_values: [POS], false_values: [NEG]}
outcomes_only_if_inspected: true
items:
  declared_value: sum
  gross_weight_kg: agree
  illicit: any
"""


def test_outcome_fields_and_their_item_rules_are_left_out() -> None:
    scoring = declarations_only(parse_mapping_text(HISTORY_MAPPING, origin="test"))
    assert set(scoring.columns) == {
        "declaration_id", "declared_at", "arrival_office", "channel", "hs_code",
        "declared_value", "currency", "gross_weight_kg", "origin_country",
    }  # fmt: skip
    assert scoring.items == {"declared_value": "sum", "gross_weight_kg": "agree"}
    assert scoring.outcomes_only_if_inspected is False
    assert "CTRL" not in scoring.source_columns() and "RESULT" not in scoring.source_columns()
