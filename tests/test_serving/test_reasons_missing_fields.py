"""A category feature missing because the declaration left its field empty says so in the
field's words ("no HS6 declared"), not as a feature that was "not computable" (probe 38); a
value new to the model still says what it said."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.families.categories import FAMILY as CATEGORIES
from features.intake.contract import DECLARATION_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.family import SpecContext
from features.pipeline.manifest import FeatureManifest, FeatureSpec
from features.pipeline.online import online_features
from features.pipeline.snapshot import build_entity_state
from features.synthetic import SyntheticParams, generate
from serving.reasons import explain_decisions, render_reason

NOT_COMPUTABLE = "not computable: a field it needs is missing or new to the model"
LEVELS = {
    "cat_hs_chapter": ("64", "61"),
    "cat_hs_heading": ("6403", "6109"),
    "cat_hs6": ("640399", "610910"),
    "cat_seller_country": ("CN", "TR"),
    "cat_origin_country": ("CN", "US"),
    "cat_category": ("shoes", "apparel"),
}
SPECS = {
    spec.name: spec
    for spec in CATEGORIES.specs(SpecContext(FeatureParams(), Contract(), None, LEVELS))
}
# a declaration without an HS code, as both reason contexts hold it (features.parquet, online)
NO_HS_CODE = {
    "hs_code": None,
    "hs6": None,
    "hs_chapter": None,
    "origin_country": "CN",
    "seller_country": "TR",
}


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ("cat_hs_chapter", "no HS chapter declared"),
        ("cat_hs_heading", "no HS heading declared"),  # not in the context: read from hs_code
        ("cat_hs6", "no HS6 declared"),
    ],
)
def test_a_declaration_without_an_hs_code_names_the_field(feature: str, expected: str) -> None:
    assert render_reason(SPECS[feature], math.nan, NO_HS_CODE) == expected


def test_a_missing_seller_country_names_the_field() -> None:
    context = {**NO_HS_CODE, "hs_code": "640399", "seller_country": None}
    assert render_reason(SPECS["cat_seller_country"], math.nan, context) == (
        "no seller country declared"
    )


@pytest.mark.parametrize(
    ("feature", "context", "named"),
    [
        ("cat_origin_country", {"origin_country": "ZZ"}, "cat origin country"),
        ("cat_hs6", {"hs_code": "999999", "hs6": "999999"}, "cat HS6"),
        # a declared code whose heading is new to the model (the context has no heading)
        ("cat_hs_heading", {"hs_code": "999999"}, "cat HS heading"),
        ("cat_category", {}, "cat category"),  # not in the context: cannot be told empty
        ("cat_origin_country", {}, "cat origin country"),
    ],
)
def test_a_value_new_to_the_model_still_says_what_it_said(
    feature: str, context: dict, named: str
) -> None:
    assert render_reason(SPECS[feature], math.nan, context) == f"{named} {NOT_COMPUTABLE}"


def test_a_filled_category_is_unchanged() -> None:
    assert render_reason(SPECS["cat_hs6"], 0.0, NO_HS_CODE) == "hs6 is 640399"


def test_a_number_named_like_a_category_codes_no_column() -> None:
    """Only category features of the categories family code a column: a number whose name
    starts like one (an extra's history feature) is not read as the column it seems to name."""
    spec = FeatureSpec("cat_owner_n_7d", "extras", "float", "d", "{value:.0f} parcels")
    context = {**NO_HS_CODE, "owner_n_7d": None}
    assert render_reason(spec, math.nan, context) == f"cat owner n 7d {NOT_COMPUTABLE}"


@pytest.fixture(scope="module")
def scored_without_fields():
    """Online features of a few declarations of a small synthetic history, some fields
    emptied: row 0 no HS code, row 1 no seller country, row 2 an origin new to the model."""
    history, _ = generate(SyntheticParams(seed=5, parcels=2_000, days=20))
    params = FeatureParams()
    built = build_features(history, Contract(), params)
    cutoff = history["declared_at"].max() + pd.Timedelta(seconds=1)
    state = build_entity_state(history, Contract(), params, cutoff=cutoff, manifest=built.manifest)
    request = history[list(DECLARATION_COLUMNS)].tail(3).reset_index(drop=True)
    request["hs_code"] = request["hs_code"].astype(object)
    request.loc[0, "hs_code"] = None
    request.loc[1, "seller_country"] = None
    request.loc[2, "origin_country"] = "ZZ"
    return online_features(request, state), built.manifest


def _every_reason(features, manifest: FeatureManifest, context) -> list[dict[str, str]]:
    """Each row's reason for every feature (all contributions positive, every one shown)."""
    X = features.matrix()
    n, k = X.shape
    contributions = np.column_stack([np.full((n, k), 0.1), np.zeros(n)])
    rows = explain_decisions(contributions, X, context, manifest, top_k=k)
    return [{r.feature: r.text for r in row} for row in rows]


def test_batch_and_online_contexts_give_the_same_reasons(scored_without_fields) -> None:
    features, manifest = scored_without_fields
    online = _every_reason(features, manifest, features.context)
    batch = _every_reason(features, manifest, features.frame())
    # the online context also names the description's word (reason_detail): compare the rest
    detailed = {s.name for s in manifest.features if s.reason_detail is not None}
    for o, b in zip(online, batch, strict=True):
        assert {f: t for f, t in o.items() if f not in detailed} == {
            f: t for f, t in b.items() if f not in detailed
        }
    no_code, no_seller_country, new_origin = online
    assert no_code["cat_hs_chapter"] == "no HS chapter declared"
    assert no_code["cat_hs_heading"] == "no HS heading declared"
    assert no_code["cat_hs6"] == "no HS6 declared"
    assert no_seller_country["cat_seller_country"] == "no seller country declared"
    assert new_origin["cat_origin_country"] == f"cat origin country {NOT_COMPUTABLE}"


@pytest.fixture(scope="module")
def scored_without_text():
    """Online features of a served model (its state knows each feature's fields): row 0 has
    no description, row 1 no quantity, row 2 a description of words new to the model."""
    history, _ = generate(SyntheticParams(seed=6, parcels=2_000, days=20))
    params = FeatureParams()
    built = build_features(history, Contract(), params)
    cutoff = history["declared_at"].max() + pd.Timedelta(seconds=1)
    state = build_entity_state(history, Contract(), params, cutoff=cutoff, manifest=built.manifest)
    state.features_inputs = state.inputs_of(built.manifest.names)
    request = history[list(DECLARATION_COLUMNS)].tail(3).reset_index(drop=True)
    request["description"] = request["description"].astype(object)
    request.loc[0, "description"] = None
    request["quantity"] = request["quantity"].astype("Int64")
    request.loc[1, "quantity"] = None
    request.loc[2, "description"] = "zzqx wwqv"
    return online_features(request, state), built.manifest, state.features_inputs


def test_a_feature_without_a_value_names_the_field_the_parcel_left_empty(
    scored_without_text,
) -> None:
    """A parcel without a description: its text features said "text p illicit not
    computable: a field it needs is missing or new to the model" (probe 38 leftover); words
    the model never saw still say so."""
    features, manifest, inputs_of = scored_without_text
    assert inputs_of["text_p_illicit"] == ("description",)
    X = features.matrix()
    n, k = X.shape
    contributions = np.column_stack([np.full((n, k), 0.1), np.zeros(n)])
    rows = explain_decisions(
        contributions, X, features.context, manifest, top_k=k, inputs_of=inputs_of
    )
    no_text, no_quantity, new_words = ({r.feature: r.text for r in row} for row in rows)
    text = [
        s.name
        for s in manifest.features
        if s.group == "text" and np.isnan(X[0, manifest.names.index(s.name)])
    ]
    assert text, "the text features of a parcel without a description have no value"
    for name in text:
        assert no_text[name] == "no description declared", name
    per_item = [n for n in inputs_of if "quantity" in inputs_of[n]]
    for name in per_item:
        if np.isnan(X[1, manifest.names.index(name)]):
            assert no_quantity[name] == "no quantity declared", name
    unknown = [n for n in text if np.isnan(X[2, manifest.names.index(n)])]
    assert unknown, "words the model never saw give some text features no value"
    for name in unknown:
        assert new_words[name].endswith(NOT_COMPUTABLE), name
    # without the fields (a feature frame, a state from before): as before
    plain = explain_decisions(contributions, X, features.context, manifest, top_k=k)
    assert {r.feature: r.text for r in plain[0]}[text[0]].endswith(NOT_COMPUTABLE)
