"""Watchlist family: the restricted-goods list matched against descriptions and HS codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.families.watchlist import (
    HS_CATEGORY,
    TERM,
    TERM_CATEGORY,
    TERM_COUNT,
    TERM_PROHIBITED,
    load_watchlist,
)
from features.intake.contract import DECLARATION_COLUMNS, Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.online import compute_online_features
from features.pipeline.snapshot import EntityState, build_entity_state
from serving.reasons import render_reason
from tests.test_features.family_frames import T0, declarations

LIST = """kind,pattern,category,severity,note
term,kratom,drugs,prohibited,
term,pepper spray,weapons,,
term,replica,counterfeit-prone,restricted,
term,replica gun,weapons,Prohibited,imitation firearm
term,1:1,counterfeit-prone,,replica grade wording
hs,85,hazardous,,
hs,850760,batteries,,"lithium-ion accumulators, listed apart"
hs,9302,weapons,prohibited,pistols
"""

WATCHED = [
    "KRATOM powder 100g",  # case
    "kratomite rock sample",  # inside a longer word: no match
    "Pepper  Spray keychain",  # a phrase across two spaces
    "replica gun toy",  # the longer term wins over "replica"
    "1:1 watch, replica strap and pepper spray",  # three terms; the first listed names it
    "cotton t-shirt",
    None,  # no description: HS only
]
HS = ["121190", "121190", "930200", "950300", "910211", "850760", "850440"]


def _params(tmp_path: Path, text: str = LIST) -> FeatureParams:
    path = tmp_path / "restricted.csv"
    path.write_text(text)
    return FeatureParams(watchlist=str(path))


def _history() -> pd.DataFrame:
    rows = [
        {"declared_at": T0 + pd.Timedelta(minutes=i), "description": d, "hs_code": hs}
        for i, (d, hs) in enumerate(zip(WATCHED, HS, strict=True))
    ]
    return declarations(*rows)


def _labels(frame: pd.DataFrame, manifest, name: str) -> list[str | None]:
    levels = manifest.spec(name).categories
    return [None if np.isnan(v) else levels[int(v)] for v in frame[name].to_numpy(np.float64)]


def test_terms_match_on_word_boundaries_whatever_the_case(tmp_path):
    built = build_features(_history(), Contract(), _params(tmp_path))
    assert _labels(built.frame, built.manifest, TERM) == [
        "kratom (drugs)",
        "none",
        "pepper spray (weapons)",
        "replica gun (weapons)",
        "pepper spray (weapons)",  # file order: pepper spray is listed before replica and 1:1
        "none",
        None,
    ]
    assert _labels(built.frame, built.manifest, TERM_CATEGORY)[:5] == [
        "drugs",
        "none",
        "weapons",
        "weapons",
        "weapons",
    ]
    assert built.frame[TERM_COUNT].tolist()[:6] == [1, 0, 1, 1, 3, 0]


@pytest.mark.parametrize(
    ("description", "term"),
    [
        ("kratoms for sale", "kratom"),  # a plural
        ("kratom_powder 50g", "kratom"),  # an underscore ends a word
        ("pepper-spray keychain", "pepper spray"),  # a hyphen between the words
        ("Replica_Guns", "replica gun"),
        ("kratompowder", None),  # no boundary at all: not read
        ("kratomite", None),
    ],
)
def test_a_listed_term_is_found_as_listings_write_it(tmp_path, description, term):
    """Probe 22: "magic-mushrooms", "kratom_powder" and "kratoms" were not matched."""
    from features.families.watchlist import load_watchlist, match_terms

    watchlist = load_watchlist(_params(tmp_path))
    first, _, _ = match_terms(np.array([description], dtype=object), watchlist)
    assert (watchlist.terms[first[0]] if first[0] >= 0 else None) == term


ARABIC_LIST = """kind,pattern,category,severity
term,كبتاجون,drugs,prohibited
term,حبوب منشطة,drugs,prohibited
term,سلاح ـ ابيض,weapons,prohibited
term,بن,coffee,restricted
term,سم,poison,restricted
term,мак,drugs,restricted
term,kratom,drugs,prohibited
"""


@pytest.mark.parametrize(
    ("description", "term"),
    [
        ("حبوب كبتاجون", "كبتاجون"),
        ("حبوب الكبتاجون", "كبتاجون"),  # the article (probe 40)
        ("بالكبتاجون", "كبتاجون"),
        ("والكبتاجون", "كبتاجون"),
        ("للكبتاجون", "كبتاجون"),
        ("كالكبتاجون", "كبتاجون"),
        ("فالكبتاجون", "كبتاجون"),
        ("وكبتاجون", "كبتاجون"),  # a lone letter
        ("بكبتاجون", "كبتاجون"),
        ("لكبتاجون", "كبتاجون"),
        ("فكبتاجون", "كبتاجون"),
        ("ككبتاجون", "كبتاجون"),
        ("الـكبتاجون", "كبتاجون"),  # a tatweel after the article
        ("الحبوب المنشطة", "حبوب منشطة"),  # a definite phrase: the article on every word
        ("والحبوب المنشطة", "حبوب منشطة"),
        ("حبوب المنشطة", "حبوب منشطة"),
        ("حبوب ومنشطة", None),  # later words take the article alone
        ("السلاح الابيض", "سلاح ـ ابيض"),  # a tatweel alone between the listed words
        ("البن المحمص", "بن"),  # the article before a two-letter term
        ("لبن طازج", None),  # milk, not "ل" + "بن" (coffee)
        ("بسم الله", None),  # not "ب" + "سم" (poison)
        ("اكبتاجون", None),  # an alef alone is no attached word
        ("كبتاجونات", None),  # Arabic endings are not read
        ("вмак", None),  # no attached words in another script
        ("وkratom", None),  # nor an Arabic one before a Latin term
        ("alkratom", None),
    ],
)
def test_an_arabic_term_is_found_after_its_attached_article_or_letter(tmp_path, description, term):
    from features.families.watchlist import load_watchlist, match_terms

    watchlist = load_watchlist(_params(tmp_path, ARABIC_LIST))
    first, _, _ = match_terms(np.array([description], dtype=object), watchlist)
    assert (watchlist.terms[first[0]] if first[0] >= 0 else None) == term


def test_arabic_attached_words_are_read_online_as_in_batch(tmp_path):
    params = _params(tmp_path, ARABIC_LIST)
    texts = ["حبوب الكبتاجون", "بالكبتاجون", "لبن طازج", "البن", "شاي"]
    history = declarations(
        *(
            {"declared_at": T0 + pd.Timedelta(minutes=i), "description": d, "hs_code": "300490"}
            for i, d in enumerate(texts)
        )
    )
    built = build_features(history, Contract(), params)
    assert _labels(built.frame, built.manifest, TERM) == [
        "كبتاجون (drugs)",
        "كبتاجون (drugs)",
        "none",
        "بن (coffee)",
        "none",
    ]
    state = build_entity_state(history, Contract(), params, cutoff=T0, manifest=built.manifest)
    state.save(tmp_path / "state")
    online = compute_online_features(
        history[list(DECLARATION_COLUMNS)], EntityState.load(tmp_path / "state")
    )
    names = [n for n in built.manifest.names if n.startswith("watchlist")]
    np.testing.assert_array_equal(
        online[names].to_numpy(np.float64), built.frame[names].to_numpy(np.float64)
    )


def test_prohibited_terms_are_flagged_whichever_category(tmp_path):
    frame = build_features(_history(), Contract(), _params(tmp_path)).frame
    assert frame[TERM_PROHIBITED].tolist()[:6] == [1, 0, 0, 1, 0, 0]


def test_hs_prefixes_the_longest_wins(tmp_path):
    built = build_features(_history(), Contract(), _params(tmp_path))
    assert _labels(built.frame, built.manifest, HS_CATEGORY) == [
        "none",
        "none",
        "weapons",
        "none",
        "none",
        "batteries",  # 850760 beats 85
        "hazardous",
    ]


def test_a_missing_description_matches_on_hs_only(tmp_path):
    frame = build_features(_history(), Contract(), _params(tmp_path)).frame
    last = frame.iloc[-1]
    assert np.isnan(last[TERM]) and np.isnan(last[TERM_CATEGORY]) and np.isnan(last[TERM_COUNT])
    assert not np.isnan(last[HS_CATEGORY])


def test_an_export_without_descriptions_gets_the_hs_feature_only(tmp_path):
    history = _history().assign(description=None)
    names = build_features(history, Contract(), _params(tmp_path)).manifest.names
    assert HS_CATEGORY in names
    assert not {TERM, TERM_CATEGORY, TERM_COUNT} & set(names)


def test_no_list_configured_no_features():
    names = build_features(_history(), Contract(), FeatureParams()).manifest.names
    assert not [n for n in names if n.startswith("watchlist")]


def test_online_equals_batch_through_the_snapshot(tmp_path):
    params = _params(tmp_path)
    history = _history()
    built = build_features(history, Contract(), params)
    state = build_entity_state(history, Contract(), params, cutoff=T0, manifest=built.manifest)
    state.save(tmp_path / "state")
    (tmp_path / "restricted.csv").unlink()  # the service matches the snapshot's copy
    online = compute_online_features(
        history[list(DECLARATION_COLUMNS)], EntityState.load(tmp_path / "state")
    )
    names = [n for n in built.manifest.names if n.startswith("watchlist")]
    assert len(names) == 10  # term, its category, 5 category flags, prohibited, count, HS
    np.testing.assert_array_equal(
        online[names].to_numpy(np.float64), built.frame[names].to_numpy(np.float64)
    )


def test_the_list_hash_is_in_the_manifest(tmp_path):
    first = build_features(_history(), Contract(), _params(tmp_path)).manifest
    changed = _params(tmp_path, LIST + "term,khat,drugs,\n")
    second = build_features(_history(), Contract(), changed).manifest
    assert first.params["watchlist_sha256"] != second.params["watchlist_sha256"]
    assert first.fingerprint != second.fingerprint


def test_a_list_changed_after_the_settings_were_read_is_refused(tmp_path):
    params = _params(tmp_path)
    (tmp_path / "restricted.csv").write_text(LIST + "term,khat,drugs,\n")
    with pytest.raises(ParcelriskError, match="changed since the settings were read"):
        build_features(_history(), Contract(), params)


def test_a_missing_list_file_is_one_line(tmp_path, monkeypatch):
    params = FeatureParams(watchlist=str(tmp_path / "absent.csv"))
    with pytest.raises(ParcelriskError, match=r"features.watchlist: .*absent.csv: file not found"):
        build_features(_history(), Contract(), params)
    # a relative path (a params.yaml copied elsewhere) names where it was looked for
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParcelriskError, match=f"a relative path is read from {tmp_path}"):
        build_features(_history(), Contract(), FeatureParams(watchlist="lists/absent.csv"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind,pattern\nterm,kratom\n", "header lacks column.s. category"),
        ("kind,pattern,category\nterm,kratom,drugs\nword,khat,drugs\n", "row 3: kind 'word'"),
        ("kind,pattern,category\nhs,93a2,weapons\n", "row 2: HS prefix '93a2' is not 2-10"),
        ("kind,pattern,category\nhs,9,weapons\n", "row 2: HS prefix '9' is not 2-10"),
        ("kind,pattern,category\nterm,,drugs\n", "row 2: empty pattern"),
        ("kind,pattern,category\nterm,khat,\n", "row 2: category missing"),
        ("kind,pattern,category,note\nterm,dnp,drugs,2,4-dinitrophenol,x\n", "row 2: more fields"),
        ("kind,pattern,category\nterm,Khat,drugs\nterm,khat,drugs\n", "row 3: term 'khat' repeats"),
        ("kind,pattern,category\n", "no rows"),
        ("kind,pattern,category,severity\nterm,khat,drugs,banned\n", "row 2: severity 'banned'"),
        ("kind,pattern,category\nterm,\u0640\u0640,drugs\n", "row 2: term '..' has no letter"),
        ("kind,pattern,category\nterm,\u064e,drugs\n", "row 2: term '.' has no letter"),
    ],
)
def test_a_malformed_list_names_the_file_and_row(tmp_path, text, message):
    params = _params(tmp_path, text)
    with pytest.raises(ParcelriskError, match=f"watchlist .*restricted.csv.*{message}") as exc:
        load_watchlist(params)
    assert "\n" not in str(exc.value)


def test_the_reason_names_the_term_and_the_list(tmp_path):
    built = build_features(_history(), Contract(), _params(tmp_path))
    spec = built.manifest.spec(TERM)
    value = built.frame[TERM].iloc[0]
    assert render_reason(spec, value, {}) == (
        "description names kratom (drugs), on the restricted list"
    )
    hs = built.manifest.spec(HS_CATEGORY)
    context = {"hs_code": "930200"}
    assert render_reason(hs, built.frame[HS_CATEGORY].iloc[2], context) == (
        "HS code 930200 is on the restricted list (weapons)"
    )


def test_the_demo_list_is_well_formed():
    path = Path(__file__).parents[2] / "data" / "watchlists" / "restricted_goods.csv"
    watchlist = load_watchlist(FeatureParams(watchlist=str(path)))
    assert 60 <= len(watchlist.terms) + len(watchlist.hs_prefixes) <= 160
