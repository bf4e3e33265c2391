"""Tiny hand-made declaration histories for the feature-family tests."""

from __future__ import annotations

import pandas as pd

from features.intake.contract import coerce_declarations

T0 = pd.Timestamp("2026-03-02T10:00Z")  # a Monday; refit periods start on Mondays

_TEMPLATE = {
    "arrival_office": "DEFRA01",
    "channel": "express",
    "operator_id": "EXP-01",
    "platform_id": "PLT06",
    "seller_id": "S1",
    "seller_country": "CN",
    "consignee_id": "C1",
    "consignee_region": "CZ3",
    "origin_country": "CN",
    "hs_code": "610910",
    "description": "cotton t-shirt",
    "quantity": 1,
    "gross_weight_kg": 0.5,
    "declared_value": 10.0,
    "currency": "EUR",
    "category": "merchandise",
    "ioss_prepaid": False,
    "aeo_operator": False,
    "inspected": False,
    "inspected_at": pd.NaT,
    "illicit": None,
    "offence_type": None,
    "revenue_recovered": None,
    "selection_reason": None,
}


def declarations(*rows: dict) -> pd.DataFrame:
    """A canonical history: each row is the template with ``declared_at`` and overrides."""
    frame = pd.DataFrame(
        [{**_TEMPLATE, "declaration_id": f"D{i:03d}", **row} for i, row in enumerate(rows)]
    )
    return coerce_declarations(frame, with_outcomes=True)
