import math

import numpy as np
import pandas as pd

from features.pipeline.manifest import FeatureManifest, FeatureSpec
from serving.reasons import contribution_table, display_value, explain_decisions, render_reason

VALUE = FeatureSpec(
    "unit_value_ratio",
    "valuation",
    "float",
    "Unit value unusual",
    "unit value {value:.0%} of the median for HS {hs6} from {origin_country}",
)
ORIGIN = FeatureSpec(
    "origin", "route", "category", "Origin risk", "origin {value}", categories=("CN", "US")
)
BROKEN = FeatureSpec("broken", "x", "float", "Broken template", "value {value:.2f} {nope}")
MANIFEST = FeatureManifest((VALUE, ORIGIN, BROKEN))
CONTEXT = {"hs6": "610910", "origin_country": "CN"}


def test_template_gets_value_and_context() -> None:
    assert (
        render_reason(VALUE, 0.18, CONTEXT) == "unit value 18% of the median for HS 610910 from CN"
    )


def test_category_shows_label() -> None:
    assert render_reason(ORIGIN, 1.0, {}) == "origin US"
    assert display_value(ORIGIN, 0.0) == "CN"


def test_a_template_that_cannot_fill_still_speaks_of_the_parcel() -> None:
    missing = "not computable: a field it needs is missing or new to the model"
    assert render_reason(VALUE, math.nan, CONTEXT) == f"unit value ratio {missing}"
    assert render_reason(ORIGIN, 7.0, {}) == f"origin {missing}"  # unknown code
    assert render_reason(BROKEN, 1.0, {}) == "broken: 1"  # missing placeholder
    assert render_reason(VALUE, 0.5, {}) == "unit value ratio: 0.5"  # context not given
    assert render_reason(VALUE, 0.5, {**CONTEXT, "hs6": None}) == "no HS6 declared"
    bad_spec = FeatureSpec("v", "x", "float", "desc", "{value:d}")
    assert render_reason(bad_spec, 0.5, {}) == "v: 0.5"  # format spec error


def test_a_flag_at_zero_is_no_reason_the_next_one_is() -> None:
    """ "no platform declared" is false of a parcel that declared one, whatever the sign."""
    flag = FeatureSpec("platform_missing", "x", "float", "Platform missing", "no platform declared")
    manifest = FeatureManifest((VALUE, flag, ORIGIN))
    contrib = np.array([[0.1, 0.5, 0.2, 0.0], [0.1, 0.5, 0.2, 0.0]])
    X = np.array([[0.18, 0.0, 1.0], [0.18, 1.0, 1.0]])
    reasons = explain_decisions(contrib, X, pd.DataFrame([CONTEXT, CONTEXT]), manifest, top_k=2)
    assert [r.feature for r in reasons[0]] == ["origin", "unit_value_ratio"]
    assert [r.text for r in reasons[1]] == ["no platform declared", "origin US"]


def test_top_positive_contributions_in_order() -> None:
    contrib = np.array([[0.2, -0.5, 0.9, -1.0], [-0.1, -0.2, -0.3, 0.5], [0.3, 0.1, 0.0, 0.0]])
    X = np.array([[0.18, 0.0, 2.0], [1.0, 1.0, 1.0], [0.5, 1.0, math.nan]])
    context = pd.DataFrame([CONTEXT, CONTEXT, {"hs6": None, "origin_country": "US"}])
    reasons = explain_decisions(contrib, X, context, MANIFEST, top_k=5)
    assert [r.feature for r in reasons[0]] == ["broken", "unit_value_ratio"]
    assert reasons[0][1].text.startswith("unit value 18%")
    assert reasons[1] == []
    assert [r.feature for r in reasons[2]] == ["unit_value_ratio", "origin"]
    assert reasons[2][0].text == "no HS6 declared"  # hs6 missing in context
    assert reasons[2][1].text == "origin US"


def test_top_k_limits_reasons() -> None:
    contrib = np.array([[0.3, 0.2, 0.1, 0.0]])
    reasons = explain_decisions(
        contrib, np.zeros((1, 3)), pd.DataFrame([CONTEXT]), MANIFEST, top_k=2
    )
    assert [r.contribution for r in reasons[0]] == [0.3, 0.2]


def test_contribution_table_is_the_full_vector() -> None:
    table = contribution_table(np.array([0.1, -0.2, 0.3]), np.array([0.5, 0.0, math.nan]), MANIFEST)
    assert [t["feature"] for t in table] == MANIFEST.names
    assert table[1]["value"] == "CN" and table[2]["value"] is None
    assert sum(t["contribution"] for t in table) == np.float64(0.1 - 0.2 + 0.3)


def test_the_detailed_reason_where_the_context_holds_what_it_names() -> None:
    """A spec's ``reason_detail`` (naming a value only the served path derives, the word a
    text reason is of) is used where the context holds it; elsewhere (a feature frame, a word
    unknown) the plain ``reason``, never a template left unfilled."""
    spec = FeatureSpec(
        "text_word_hit_rate_max",
        "text",
        "float",
        "d",
        "a word of the description was found in offences at rate {value:.0%}",
        reason_detail="the description's word '{description_word}' was found in offences at "
        "rate {value:.0%}",
    )
    named = render_reason(spec, 0.6, {"hs6": "640399", "description_word": "kratom"})
    assert named == "the description's word 'kratom' was found in offences at rate 60%"
    for context in ({"hs6": "640399"}, {"description_word": None}):
        plain = render_reason(spec, 0.6, context)
        assert plain == "a word of the description was found in offences at rate 60%"
    # a pair of characters read out of an unspaced run is no word a person reads (probe 38)
    for pair in ("コ本", "子烟", "ยาส"):
        said = render_reason(spec, 0.6, {"description_word": pair})
        expected = f"the characters '{pair}' of the description were found in offences at rate 60%"
        assert said == expected


def test_a_manifest_without_detailed_reasons_keeps_its_json_and_fingerprint() -> None:
    """``reason_detail`` is written only where a spec has one: a manifest from before it reads
    and writes back the same JSON, so its model's decisions keep their fingerprint."""
    plain = FeatureSpec("a", "g", "float", "d", "r {value}")
    manifest = FeatureManifest((plain,))
    assert "reason_detail" not in manifest.to_json()
    assert FeatureManifest.from_json(manifest.to_json()).fingerprint == manifest.fingerprint
    detailed = FeatureManifest((FeatureSpec("a", "g", "float", "d", "r", reason_detail="x"),))
    assert FeatureManifest.from_json(detailed.to_json()) == detailed


def test_money_features_carry_the_currency_their_values_are_in() -> None:
    """``value_eur`` of a model with base currency AED holds AED (its text says so), revenue
    features EUR: the auditor read "value_eur 125.9" for a parcel of about 31 EUR (probe 40)."""
    from features.families import build_manifest
    from features.intake.contract import Contract
    from features.params import FeatureParams
    from features.pipeline.family import SpecContext

    for base in ("AED", "EUR"):
        rates = {"AED": 1.0, "EUR": 3.99} if base == "AED" else {"EUR": 1.0}
        params = FeatureParams.from_dict({"base_currency": base, "fx_to_base": rates})
        manifest = build_manifest(SpecContext(params, Contract(), None, {}))
        n = len(manifest.features)
        table = contribution_table(np.zeros(n), np.ones(n), manifest)
        units = {row["feature"]: row.get("unit") for row in table}
        assert units["value_eur"] == base and units["reference_value_eur"] == base
        assert units["seller_revenue_recovered_eur"] == "EUR"
        assert units["seller_hit_rate"] is None  # not money: no unit


def test_a_word_count_of_pairs_of_characters_says_so() -> None:
    """A Thai or Chinese description's words are pairs of characters: "description has only 10
    word(s)" was said of one Thai word (probe 42)."""
    from features.intake.words import read_in_pairs

    spec = FeatureSpec(
        "description_n_tokens", "text", "float", "d", "description has only {value:.0f} word(s)"
    )
    assert render_reason(spec, 10.0, {"description_in_pairs": True}) == (
        "description has only 10 word(s), counting pairs of characters as words"
    )
    for context in ({"description_in_pairs": False}, {}):
        assert render_reason(spec, 2.0, context) == "description has only 2 word(s)"
    assert read_in_pairs("กระเป๋าถือสตรี") and read_in_pairs("nike 运动鞋")
    assert (
        not read_in_pairs("leather bag") and not read_in_pairs("حقيبة") and not read_in_pairs(None)
    )
