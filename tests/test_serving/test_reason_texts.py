"""Reason texts sent to clearance systems speak of the parcel, never of a feature's definition.

A feature's description is documentation and may name configuration (the watchlist's file):
whatever the value, context or template, no reason may be, or carry, a description.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.families.watchlist import FAMILY as WATCHLIST
from features.intake.contract import Contract
from features.params import FeatureParams
from features.pipeline.family import SpecContext
from features.pipeline.manifest import FeatureManifest, FeatureSpec
from serving.reasons import explain_decisions, render_reason

RATIO = FeatureSpec(
    "unit_value_ratio_hs6",
    "valuation",
    "float",
    "Unit value / median unit value of past declarations of the HS6.",
    "declared unit value is {value:.0%} of the past median for HS {hs6}",
)
QUANTITY = FeatureSpec("quantity", "declaration", "float", "Number of items.", "{value:.0f} items")
SELLER = FeatureSpec(
    "seller_n_7d",
    "entity_history",
    "float",
    "Declarations by the same seller_id in the previous 7 days.",
    "seller {seller_id} lodged {value:.0f} declarations in the last 7 days",
)
ORIGIN = FeatureSpec(
    "cat_origin_country",
    "declaration",
    "category",
    "origin country (category code).",
    "origin country is {value}",
    categories=("CN", "US"),
)
BAD_FORMAT = FeatureSpec("vague_score", "text", "float", "A definition.", "score {value:d}")
LIST = "kind,pattern,category,severity,note\nterm,kratom,drugs,prohibited,\nhs,9302,weapons,,\n"


def _watchlist_specs(tmp_path: Path) -> list[FeatureSpec]:
    path = tmp_path / "lists" / "restricted_goods.csv"
    path.parent.mkdir()
    path.write_text(LIST)
    params = FeatureParams(watchlist=str(path.resolve()))
    return WATCHLIST.specs(SpecContext(params, Contract(), None, {}))


def test_a_filled_template_is_unchanged() -> None:
    assert render_reason(RATIO, 0.11, {"hs6": "640399"}) == (
        "declared unit value is 11% of the past median for HS 640399"
    )


def test_a_watchlist_reason_never_carries_the_lists_path(tmp_path: Path) -> None:
    specs = _watchlist_specs(tmp_path)
    assert any(str(tmp_path) in s.description for s in specs)  # the leak the probe found
    for spec in specs:  # no description: every term feature is NaN
        text = render_reason(spec, math.nan, {"hs_code": "640399"})
        assert str(tmp_path) not in text and "/" not in text, text
        assert text != spec.description


def test_a_missing_description_is_reported_as_not_computable(tmp_path: Path) -> None:
    (spec,) = [s for s in _watchlist_specs(tmp_path) if s.name == "watchlist_term_category"]
    assert render_reason(spec, math.nan, {}) == (
        "watchlist term category not computable: a field it needs is missing or new to the model"
    )


def test_a_missing_value_names_the_feature_not_its_definition() -> None:
    assert render_reason(RATIO, math.nan, {"hs6": "640399"}) == (
        "unit value ratio HS6 not computable: a field it needs is missing or new to the model"
    )


def test_a_missing_declared_field_is_named_as_not_declared() -> None:
    assert render_reason(QUANTITY, math.nan, {}) == "no quantity declared"


def test_an_empty_context_field_the_template_needs_is_named() -> None:
    assert render_reason(SELLER, 3.0, {"seller_id": None}) == "no seller declared"
    assert render_reason(RATIO, math.nan, {"hs6": None}) == "no HS6 declared"


def test_an_empty_context_field_the_template_does_not_need_is_ignored() -> None:
    assert render_reason(RATIO, 0.5, {"hs6": "640399", "seller_id": None}) == (
        "declared unit value is 50% of the past median for HS 640399"
    )


def test_an_unknown_category_code_is_not_computable() -> None:
    assert render_reason(ORIGIN, 7.0, {}).startswith("cat origin country not computable")


@pytest.mark.parametrize(
    ("spec", "value", "context", "expected"),
    [
        (BAD_FORMAT, 0.5, {}, "vague score: 0.5"),  # format spec the value cannot take
        (RATIO, 0.25, {}, "unit value ratio HS6: 0.25"),  # name the context does not hold
    ],
)
def test_a_template_that_cannot_fill_gives_the_feature_and_value(
    spec: FeatureSpec, value: float, context: dict, expected: str
) -> None:
    assert render_reason(spec, value, context) == expected


def test_explained_rows_never_send_a_description() -> None:
    manifest = FeatureManifest((RATIO, QUANTITY, SELLER, ORIGIN, BAD_FORMAT))
    rng = np.random.default_rng(7)
    n = 40
    X = rng.uniform(0, 2, size=(n, 5))
    X[:, 3] = rng.integers(0, 2, size=n)
    X[rng.random((n, 5)) < 0.4] = np.nan
    contributions = np.column_stack([rng.uniform(0.01, 1, size=(n, 5)), np.zeros(n)])
    context = pd.DataFrame(
        {
            "hs6": rng.choice(np.array(["640399", None], dtype=object), n),
            "seller_id": rng.choice(np.array(["S1", None], dtype=object), n),
        }
    )
    descriptions = {s.description for s in manifest.features}
    rows = explain_decisions(contributions, X, context, manifest, top_k=5)
    texts = [r.text for row in rows for r in row]
    assert len(texts) == 5 * n
    assert not descriptions & set(texts)


def test_online_context_arrays_name_the_empty_field() -> None:
    manifest = FeatureManifest((SELLER,))
    reasons = explain_decisions(
        np.array([[0.4, 0.0], [0.4, 0.0]]),
        np.array([[2.0], [2.0]]),
        {"seller_id": np.array(["S1", None], dtype=object)},
        manifest,
    )
    assert [r[0].text for r in reasons] == [
        "seller S1 lodged 2 declarations in the last 7 days",
        "no seller declared",
    ]
