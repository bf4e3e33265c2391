"""Declaration family: raw fields of the declaration and simple facts about them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.pipeline.family import Family, Rows, SpecContext, Values
from features.pipeline.manifest import FeatureSpec
from features.pipeline.prepare import filled

# (spec, contract fields it needs): a feature whose inputs the history lacks is left out
_SPECS = (
    (
        FeatureSpec(
            "quantity", "declaration", "float", "Number of items.", "{value:.0f} items declared"
        ),
        ("quantity",),
    ),
    (
        FeatureSpec(
            "gross_weight_kg",
            "declaration",
            "float",
            "Gross weight, kg.",
            "gross weight {value:.2f} kg",
        ),
        (),
    ),
    (
        FeatureSpec(
            "ioss_prepaid",
            "declaration",
            "float",
            "VAT prepaid through IOSS.",
            "IOSS prepaid: {value:.0f}",
        ),
        ("ioss_prepaid",),
    ),
    (
        FeatureSpec(
            "aeo_operator",
            "declaration",
            "float",
            "Operator holds AEO status.",
            "operator AEO status: {value:.0f}",
        ),
        ("aeo_operator",),
    ),
    (
        FeatureSpec(
            "platform_missing",
            "declaration",
            "float",
            "No e-commerce platform declared.",
            "no platform declared",
        ),
        ("platform_id",),
    ),
    (
        FeatureSpec(
            "seller_country_differs",
            "declaration",
            "float",
            "Declared origin differs from the seller's country.",
            "origin {origin_country} differs from the seller's country",
        ),
        ("seller_country",),
    ),
    (
        FeatureSpec(
            "hs_code_digits",
            "declaration",
            "float",
            "Number of digits of the declared HS code.",
            "HS code given with {value:.0f} digits",
        ),
        (),
    ),
)


class Declaration(Family):
    name = "declaration"
    distribution = "rows"

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        return [spec for spec, needs in _SPECS if ctx.fed(*needs)]

    def compute(self, rows: Rows, part: None = None) -> Values:
        prep = rows.prep
        seller_country = prep["seller_country"]
        return {
            "quantity": prep["quantity"],
            "gross_weight_kg": prep["gross_weight_kg"],
            "ioss_prepaid": prep["ioss_prepaid"],
            "aeo_operator": prep["aeo_operator"],
            "platform_missing": pd.isna(prep["platform_id"]).astype(np.float64),
            "seller_country_differs": np.where(
                pd.isna(seller_country),
                np.nan,
                (filled(seller_country, "") != filled(prep["origin_country"], "")).astype(
                    np.float64
                ),
            ),
            "hs_code_digits": np.fromiter(
                (0 if v is None else len(v) for v in prep["hs_code"].tolist()),
                np.float64,
                prep.n_rows,
            ),
        }


FAMILY = Declaration()
